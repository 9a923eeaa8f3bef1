"""Write the CRDs generated from src/ebb/spec/models.py to deploy/crds/ and the Helm chart's crds/.

Usage: python scripts/gen_crds.py [--check]   (--check: exit 1 when a checked-in file differs)
"""

from __future__ import annotations

import sys
from pathlib import Path

from ebb.kube.crds import all_crds, render

ROOT = Path(__file__).resolve().parent.parent
TARGETS = (ROOT / "deploy" / "crds", ROOT / "deploy" / "helm" / "ebb" / "crds")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale: list[Path] = []
    for directory in TARGETS:
        for name, manifest in all_crds().items():
            path = directory / name
            text = render(manifest)
            if path.exists() and path.read_text() == text:
                continue
            if check:
                stale.append(path)
            else:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        print(f"{path.relative_to(ROOT)} is out of date: run python scripts/gen_crds.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
