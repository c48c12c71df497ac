# -*- test-case-name: tests.test_workers -*-
"""
A bounded thread pool for blocking plugin code.
"""

from __future__ import annotations

import threading
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
        self._busyLock = threading.Lock()

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
        """
        @return: how many workers are running a job now; jobs waiting in
            the queue are not counted, so this is never more than C{size}.
        """
        return self._busy

    def run(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        def job() -> T:
            # Counted in the worker thread, while the job really runs.
            with self._busyLock:
                self._busy += 1
            try:
                return f(*args, **kwargs)
            finally:
                with self._busyLock:
                    self._busy -= 1

        return deferToThreadPool(self._reactor, self._pool, job)


__all__ = ["WorkerPool"]
