"""A STAND-IN for the kube-apiserver that answers SubjectAccessReviews only.

`python -m bench._kube_api_stand_in PORT_FILE`

Not Kubernetes and not RBAC: POST /apis/authorization.k8s.io/v1/subjectaccessreviews allows a read of
external.metrics.k8s.io by the expected user (the HPA controller's service account) and denies anything else, so
a misconfigured benchmark shows up as errors instead of passing unnoticed. It counts the reviews it answered:
GET /stand-in/stats gives {"subjectaccessreviews": n, "distinct": distinct specs}. It listens on loopback over
plain HTTP and writes its port to PORT_FILE once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
STATS_PATH = "/stand-in/stats"
EXPECTED_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
EXPECTED_GROUP = "external.metrics.k8s.io"


class StandIn:
    def __init__(self) -> None:
        self.reviews = 0
        self.specs: set[str] = set()

    async def subject_access_review(self, request: web.Request) -> web.Response:
        review: dict[str, Any] = await request.json()
        spec = review.get("spec") or {}
        self.reviews += 1
        self.specs.add(json.dumps(spec, sort_keys=True))
        attributes = spec.get("resourceAttributes") or {}
        allowed = (
            spec.get("user") == EXPECTED_USER
            and attributes.get("group") == EXPECTED_GROUP
            and attributes.get("verb") in ("get", "list")
        )
        reason = "bench stand-in: allowed" if allowed else "bench stand-in: not the expected user and request"
        return web.json_response({**review, "status": {"allowed": allowed, "reason": reason}}, status=201)

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"subjectaccessreviews": self.reviews, "distinct": len(self.specs)})


async def serve(port_file: str) -> None:
    stand_in = StandIn()
    app = web.Application()
    app.router.add_post(SAR_PATH, stand_in.subject_access_review)
    app.router.add_get(STATS_PATH, stand_in.stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    Path(port_file).write_text(f"{port}\n")  # noqa: ASYNC240 - once, before serving
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1]))
