# -*- test-case-name: tests.test_service -*-
"""
A fake reactor for in-process tests: a L{Clock} that also takes calls "from
threads" and records being stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyClass


@implementer(IReactorTime, IReactorFromThreads)
class FakeReactor(Clock):
    """
    A L{Clock} with the few other reactor methods the agent uses.

    Calls "from a thread" and "in a thread" run at once, in the calling
    thread, so everything stays synchronous and deterministic.

    @ivar stops: how many times L{stop} was called.
    @ivar threadCalls: the functions handed to L{callInThread}, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stops = 0
        self.threadCalls: list[Callable[..., Any]] = []

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        callable(*args, **kwargs)

    def callInThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.threadCalls.append(f)
        f(*args, **kwargs)

    def stop(self) -> None:
        self.stops += 1

    @property
    def stopped(self) -> bool:
        """
        Whether L{stop} was called at least once.
        """
        return self.stops > 0


verifyClass(IReactorTime, FakeReactor)
verifyClass(IReactorFromThreads, FakeReactor)

__all__ = ["FakeReactor"]
