"""
An interface handler: a plugin that also provides
L{clacks.common.handler.IInterfaceHandler}.  The agent calls its C{serve()}
when it starts and its C{stop()} when it stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import implementer

from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler

if TYPE_CHECKING:
    from clacks.interfaces import IAgentContext


@implementer(IInterfaceHandler)
class HelloHandler(Plugin):
    """
    Logs a line when it starts and when it stops.  A real handler would
    listen on a port or connect to a bus in L{serve} and release it in
    L{stop}; either may return a Deferred that fires when done.

    Registered as C{hello-handler} on the C{agent.module} entry-point group,
    with priority 10.

    @ivar serving: whether L{serve} was called and L{stop} was not.
    """

    _priority_ = 10
    _target_ = "hello"

    def __init__(self, context: IAgentContext) -> None:
        super().__init__(context)
        self.serving = False

    def serve(self) -> None:
        """
        Start: log the node, the object classes the agent knows and a
        greeting from the C{hello} plugin, if it is loaded.
        """
        self.serving = True
        plugins = self.context.plugins
        greeting = plugins.get("hello").greet("world") if "hello" in plugins else "-"
        self.log.info(
            "hello handler serving on node {node} (objects: {oids}; greeting: {greeting})",
            node=self.context.config.core.id,
            oids=", ".join(self.context.objects.oids()) or "none",
            greeting=greeting,
        )

    def stop(self) -> None:
        """
        Stop: nothing to release here but the log line.
        """
        self.serving = False
        self.log.info("hello handler stopped")


__all__ = ["HelloHandler"]
