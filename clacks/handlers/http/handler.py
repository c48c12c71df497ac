# -*- test-case-name: tests.test_http_handler -*-
"""
The HTTP interface handler: a twisted.web site on C{[http] listen}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from zope.interface import implementer

from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler
from clacks.handlers.http.health import healthResource
from clacks.handlers.http.rpc import JSONRPCResource
from clacks.interfaces import IAgentContext


class _Site(Site):
    """
    A site that does not write an access-log line per request: health
    probes every few seconds would drown the agent's log.
    """

    noisy = False

    def log(self, request: Any) -> None:
        pass


@implementer(IInterfaceHandler)
class HTTPHandler(Plugin):
    """
    Serves C{/health/live}, C{/health/ready} and what other plugins add
    with L{putChild}.  C{[http] listen = none} turns it off.

    @ivar port: the listening port once serving (tests read its number).
    """

    _priority_ = 30

    def __init__(self, context: IAgentContext) -> None:
        super().__init__(context)
        self.root = Resource()
        self.root.putChild(b"health", healthResource(self.readiness))
        self.port: IListeningPort | None = None

    def putChild(self, path: bytes, resource: IResource) -> None:
        """
        Serve C{resource} at C{/path}.
        """
        self.root.putChild(path, resource)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """
        @return: whether the agent can serve, and the details behind it.
        """
        plugins = self.context.plugins
        details: dict[str, Any] = {"node": self.context.config.core.id}
        if self.context.config.standalone:
            ready, details["bus"] = True, "standalone"
        elif "AMQPHandler" in plugins:
            ready = bool(plugins.get("AMQPHandler").ready)
            details["bus"] = "connected" if ready else "disconnected"
        else:
            ready, details["bus"] = False, "AMQPHandler failed to load"
        details["failedPlugins"] = sorted({f.name for f in plugins.failures})
        return ready, details

    def _dispatcher(self) -> Any:
        plugins = self.context.plugins
        return plugins.get("AMQPHandler").dispatcher if "AMQPHandler" in plugins else None

    @inlineCallbacks
    def serve(self) -> Any:
        plugins = self.context.plugins
        users = (
            plugins.get("CommandRegistry").security.users if "CommandRegistry" in plugins else None
        )
        path = self.context.config.http.path.strip("/").encode("utf-8")
        resource = JSONRPCResource(
            self._dispatcher, users, self.context.reactor, stats=self.context.stats
        )
        self.putChild(path, resource)
        listen = self.context.config.http.listen
        if listen is None:
            self.log.info("HTTP is off ([http] listen = none)")
            return
        endpoint = serverFromString(self.context.reactor, listen)
        self.port = yield endpoint.listen(_Site(self.root))
        self.log.info("HTTP listening on {address}", address=self.port.getHost())

    @inlineCallbacks
    def stop(self) -> Any:
        port, self.port = self.port, None
        if port is not None:
            yield port.stopListening()


__all__ = ["HTTPHandler"]
