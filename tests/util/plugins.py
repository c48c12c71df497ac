"""
Plugin classes for in-process tests, named by entry points built with
L{entryPoint}.

The interface handlers here log each C{serve()}/C{stop()} as an event with
the fields C{handler} and C{stage}, so a test can read the order of calls
across handlers from the log (see L{tests.util.logs.handlerCalls}).  Their
C{serveResult}/C{stopResult} let a test make a call return a Deferred it
fires itself.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from clacks.common.components.plugin import Plugin
from clacks.common.components.registry import ENTRY_POINT_GROUP
from clacks.common.handler import IInterfaceHandler
from clacks.interfaces import IAgentContext


def entryPoint(name: str, attribute: str, group: str = ENTRY_POINT_GROUP) -> EntryPoint:
    """
    @return: an entry point C{name} on C{group} for C{attribute} of this
        module.
    """
    return EntryPoint(name, f"{__name__}:{attribute}", group)


class Plain(Plugin):
    """
    An ordinary plugin with the default priority (50).
    """


class Early(Plugin):
    """
    An ordinary plugin with a low priority (10): created early.
    """

    _priority_ = 10


class Late(Plugin):
    """
    An ordinary plugin with a high priority (90): created late.
    """

    _priority_ = 90


@implementer(IInterfaceHandler)
class RecordingHandler(Plugin):
    """
    An interface handler that logs its calls.

    @cvar label: what its log events say in their C{handler} field.
    @ivar serveResult: what L{serve} returns.
    @ivar stopResult: what L{stop} returns.
    """

    label = "recording"

    def __init__(self, context: IAgentContext) -> None:
        super().__init__(context)
        self.serveResult: Deferred[None] | None = None
        self.stopResult: Deferred[None] | None = None

    def serve(self) -> Any:
        self.log.info("{handler} serve", handler=self.label, stage="serve")
        return self.serveResult

    def stop(self) -> Any:
        self.log.info("{handler} stop", handler=self.label, stage="stop")
        return self.stopResult


class FirstHandler(RecordingHandler):
    """
    A handler with priority 10.
    """

    label = "first"
    _priority_ = 10


class SecondHandler(RecordingHandler):
    """
    A handler with priority 20.
    """

    label = "second"
    _priority_ = 20


class ThirdHandler(RecordingHandler):
    """
    A handler with priority 30.
    """

    label = "third"
    _priority_ = 30


class BrokenInit(Plugin):
    """
    A plugin (priority 15) whose constructor raises.
    """

    _priority_ = 15

    def __init__(self, context: IAgentContext) -> None:
        raise RuntimeError("broken on purpose in __init__")


class BrokenServe(RecordingHandler):
    """
    A handler (priority 15) whose C{serve()} raises.
    """

    label = "broken-serve"
    _priority_ = 15

    def serve(self) -> Any:
        super().serve()
        raise RuntimeError("broken on purpose in serve()")


class BrokenStop(RecordingHandler):
    """
    A handler (priority 15) whose C{stop()} raises.
    """

    label = "broken-stop"
    _priority_ = 15

    def stop(self) -> Any:
        super().stop()
        raise RuntimeError("broken on purpose in stop()")


class NotAPlugin:
    """
    A class that does not subclass L{Plugin}.
    """


__all__ = [
    "BrokenInit",
    "BrokenServe",
    "BrokenStop",
    "Early",
    "FirstHandler",
    "Late",
    "NotAPlugin",
    "Plain",
    "RecordingHandler",
    "SecondHandler",
    "ThirdHandler",
    "entryPoint",
]
