# -*- test-case-name: tests.test_http_health -*-
"""
C{/health/live} and C{/health/ready}, for supervisors and load balancers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request


def _json(request: Request, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode("utf-8") + b"\n"


class LiveResource(Resource):
    """
    200 as long as the reactor answers.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return _json(request, 200, {"live": True})


class ReadyResource(Resource):
    """
    200 when the agent can serve (bus connected and topology declared, or
    standalone), 503 otherwise; the body says why.

    @param readiness: returns C{(ready, details)}.
    """

    isLeaf = True

    def __init__(self, readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        super().__init__()
        self._readiness = readiness

    def render_GET(self, request: Request) -> bytes:
        ready, details = self._readiness()
        return _json(request, 200 if ready else 503, {"ready": ready, **details})


def healthResource(readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> Resource:
    """
    @return: the C{/health} resource with its C{live} and C{ready} children.
    """
    health = Resource()
    health.putChild(b"live", LiveResource())
    health.putChild(b"ready", ReadyResource(readiness))
    return health


__all__ = ["LiveResource", "ReadyResource", "healthResource"]
