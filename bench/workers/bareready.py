"""
The start-up baseline: a bare Twisted process that connects to the broker
(the project's txAMQP layer) and then answers C{/health/ready} with 200.

    python -m bench.workers.bareready PORT
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

state = {"ready": False}


class Ready(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(200 if state["ready"] else 503)
        return b'{"ready": true}\n' if state["ready"] else b'{"ready": false}\n'


@inlineCallbacks
def connectBus() -> Any:
    from bench.workers.rawamqp import connect

    connection = yield connect("bench-bare-ready")
    yield connection.newChannel()
    state["ready"] = True
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: connection.closeConnection(within=1)
    )


def main(argv: list[str]) -> None:
    root = Resource()
    health = Resource()
    root.putChild(b"health", health)
    health.putChild(b"ready", Ready())
    site = Site(root)
    site.noisy = False
    reactor.listenTCP(int(argv[0]), site, interface="127.0.0.1")
    reactor.callWhenRunning(connectBus)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
