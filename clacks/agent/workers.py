# -*- test-case-name: tests.test_workers -*-
"""
A bounded thread pool for blocking plugin code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
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

    log = Logger()

    def __init__(self, reactor: Any, size: int, name: str = "clacks") -> None:
        """
        @param reactor: provides C{IReactorFromThreads} and C{IReactorTime}.
        """
        self.size = size
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=size, name=name)
        # Daemon threads: a job that never returns must not keep the process
        # alive after the agent gave up waiting for it (see stop()).
        self._pool.threadFactory = _daemonThread  # type: ignore[assignment]
        self._busy = 0
        self._busyLock = threading.Lock()

    def start(self) -> None:
        self._pool.start()

    def stop(self, timeout: float | None = None) -> Deferred[None]:
        """
        Stop the threads, without blocking the reactor.

        The agent calls this after draining, when no job should be left.  A
        job still running is waited for up to C{timeout} seconds, then
        abandoned (its thread is a daemon thread, so the process can exit).

        @return: a Deferred that fires when the threads are gone or given up.
        """
        if not self._pool.started:
            return succeed(None)
        if not self._pool.threads:
            self._pool.stop()
            return succeed(None)
        done: Deferred[None] = Deferred()

        def join() -> None:
            self._pool.stop()
            self._reactor.callFromThread(finished)

        def finished() -> None:
            if not done.called:
                done.callback(None)

        threading.Thread(target=join, name="clacks-workers-stop", daemon=True).start()
        if timeout is not None:

            def abandoned(failure: Any) -> None:
                failure.trap(TimeoutError)
                self.log.warn(
                    "{count} blocking job(s) still running after {timeout} s; abandoning them",
                    count=self._busy,
                    timeout=timeout,
                )

            done.addTimeout(timeout, self._reactor).addErrback(abandoned)
        return done

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


def _daemonThread(*args: Any, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(*args, **kwargs)
    thread.daemon = True
    return thread


__all__ = ["WorkerPool"]
