# -*- test-case-name: tests.test_workers -*-
"""
A bounded thread pool for blocking plugin code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from clacks.interfaces import IWorkerPool

T = TypeVar("T")


@implementer(IWorkerPool)
class WorkerPool:
    """
    C{size} threads that run blocking jobs handed in with L{run}; jobs
    beyond C{size} wait in the pool's queue, not in new threads.

    The agent starts the pool with itself and stops it last, after its
    handlers have finished their in-flight work.
    """

    def __init__(self, reactor: IReactorFromThreads, size: int, name: str = "clacks") -> None:
        self.size = size
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=size, name=name)
        self._busy = 0

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        """
        Stop the threads.  Jobs still running are waited for: the agent
        calls this after draining, when none should be left.
        """
        if self._pool.started:
            self._pool.stop()

    def busy(self) -> int:
        return self._busy

    def run(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        self._busy += 1

        def done(result: Any) -> Any:
            self._busy -= 1
            return result

        d = deferToThreadPool(self._reactor, self._pool, f, *args, **kwargs)
        return d.addBoth(done)


__all__ = ["WorkerPool"]
