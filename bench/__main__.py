"""`python -m bench`: every benchmark in turn, one line each; results in bench/results/<name>.json."""

from __future__ import annotations

import sys

from bench import (
    activation,
    decisions,
    fleet,
    http,
    http_endpoints,
    http_kube,
    loading,
    metrics_api,
    objects,
    predictive,
    scale_in,
)


def main() -> int:
    decisions.main()
    loading.main([])
    activation.main([])
    objects.main([])
    metrics_api.main([])
    metrics_api.main(["--auth"])
    http.main([])
    http_kube.main([])
    http_endpoints.main([])
    fleet.main([])
    predictive.main(["--jobs", "2"])
    scale_in.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
