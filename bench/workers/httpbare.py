"""
The HTTP baseline: a bare twisted.web resource that answers a JSON-RPC
echo request with the same JSON the agent's C{/rpc} returns (no
authentication, no dispatcher).

    python -m bench.workers.httpbare PORT
"""

from __future__ import annotations

import json
import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        call = json.loads(request.content.read())
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {"jsonrpc": "2.0", "id": call.get("id"), "result": call["params"][0]}
        return json.dumps(body, separators=(",", ":")).encode()


class QuietSite(Site):
    noisy = False

    def log(self, request: Request) -> None:
        pass


def main(argv: list[str]) -> None:
    root = Resource()
    root.putChild(b"rpc", Echo())
    reactor.listenTCP(int(argv[0]), QuietSite(root), interface="127.0.0.1")
    reactor.callWhenRunning(print, "READY", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
