"""
Tests for L{clacks.agent.workers}: the bounded pool for blocking code.

These use real threads and the real reactor, so they are asynchronous
L{TestCase}s; each test releases its jobs and stops its pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadable import isInIOThread
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from clacks.agent.workers import WorkerPool
from clacks.interfaces import IWorkerPool

reactor = cast(IReactorFromThreads, globalReactor)


class WorkerPoolTests(TestCase):
    """
    Tests for L{WorkerPool}.
    """

    timeout = 30

    def startPool(self, size: int) -> WorkerPool:
        """
        @return: a started pool of C{size} threads on the global reactor,
            stopped at the end of the test.
        """
        pool = WorkerPool(reactor, size, name="clacks-test")
        pool.start()
        self.addCleanup(pool.stop)
        return pool

    def blockingJob(self, started: Deferred[int]) -> tuple[Callable[[], int], threading.Event]:
        """
        @return: a job that reports its thread's id through C{started} (in
            the reactor thread) and then blocks until the returned event is
            set, and that event; the event is set at the end of the test.
        """
        release = threading.Event()
        self.addCleanup(release.set)

        def job() -> int:
            ident = threading.get_ident()
            reactor.callFromThread(started.callback, ident)
            if not release.wait(self.timeout):
                raise RuntimeError("job was never released")
            return ident

        return job, release

    def test_interface(self) -> None:
        """
        L{WorkerPool} provides L{IWorkerPool} and has the size it was given.
        """
        pool = WorkerPool(reactor, 3)
        self.assertTrue(verifyObject(IWorkerPool, pool))
        self.assertEqual((pool.size, pool.busy()), (3, 0))

    @inlineCallbacks
    def test_runsOffReactorThread(self) -> Any:
        """
        L{WorkerPool.run} runs the function in another thread than the
        reactor's and fires its Deferred with the result in the reactor
        thread.
        """
        pool = self.startPool(2)
        delivered: list[bool] = []
        d = pool.run(lambda a, b=0: (threading.get_ident(), isInIOThread(), a + b), 1, b=2)

        def deliver(result: Any) -> Any:
            delivered.append(isInIOThread())
            return result

        d.addCallback(deliver)
        ident, inIOThread, total = yield d
        self.assertNotEqual(ident, threading.get_ident())
        self.assertFalse(inIOThread)
        self.assertEqual(total, 3)
        self.assertEqual(delivered, [True])
        self.assertEqual(pool.busy(), 0)

    @inlineCallbacks
    def test_exception(self) -> Any:
        """
        An exception raised by the function fails the Deferred with it, and
        the worker is free again.
        """
        pool = self.startPool(1)

        def fail() -> None:
            raise ValueError("blocking code failed")

        error = yield self.assertFailure(pool.run(fail), ValueError)
        self.assertEqual(str(error), "blocking code failed")
        self.assertEqual(pool.busy(), 0)
        self.assertEqual((yield pool.run(lambda: "next")), "next")

    @inlineCallbacks
    def test_bounded(self) -> Any:
        """
        With two workers busy, a third job waits: C{busy()} stays 2 and the
        job starts only when a worker is free, in the thread that worker
        ran in.  Every job's result is delivered.
        """
        pool = self.startPool(2)
        started: list[Deferred[int]] = [Deferred() for _ in range(3)]
        jobs = [self.blockingJob(d) for d in started]
        results = [pool.run(job) for job, _ in jobs[:2]]
        firstThread, secondThread = yield gatherResults(started[:2])
        self.assertNotEqual(firstThread, secondThread)
        self.assertEqual(pool.busy(), 2)

        results.append(pool.run(jobs[2][0]))
        self.assertNoResult(started[2])
        self.assertEqual(pool.busy(), 2)

        jobs[0][1].set()
        self.assertEqual((yield results[0]), firstThread)
        thirdThread = yield started[2]
        self.assertEqual(thirdThread, firstThread)
        self.assertEqual(pool.busy(), 2)

        jobs[1][1].set()
        jobs[2][1].set()
        self.assertEqual((yield gatherResults(results[1:])), [secondThread, firstThread])
        self.assertEqual(pool.busy(), 0)

    @inlineCallbacks
    def test_busyCountsRunningJobs(self) -> Any:
        """
        C{busy()} is the number of jobs running now: one while one job
        runs, none once it is done.
        """
        pool = self.startPool(4)
        self.assertEqual(pool.busy(), 0)
        started: Deferred[int] = Deferred()
        job, release = self.blockingJob(started)
        result = pool.run(job)
        yield started
        self.assertEqual(pool.busy(), 1)
        release.set()
        yield result
        self.assertEqual(pool.busy(), 0)

    def test_stopUnstarted(self) -> None:
        """
        Stopping a pool that was never started does nothing.
        """
        WorkerPool(reactor, 2).stop()


class StopTests(TestCase):
    """
    Stopping the pool never blocks the reactor, and a job that does not
    finish is abandoned after the timeout instead of holding up shutdown.
    """

    @inlineCallbacks
    def test_stuckJobAbandoned(self) -> Any:
        """
        With a job blocked on an event, C{stop(timeout)} fires after the
        timeout, logs that it gave up, and the worker thread is a daemon
        thread (so the process can still exit).
        """
        pool = WorkerPool(cast(IReactorFromThreads, globalReactor), size=1)
        pool.start()
        release = threading.Event()
        self.addCleanup(release.set)
        threads: list[threading.Thread] = []

        def stuck() -> None:
            threads.append(threading.current_thread())
            release.wait(30)

        job = pool.run(stuck)
        while not threads:
            yield _tick()
        stopping = pool.stop(timeout=0.2)
        self.assertFalse(stopping.called)
        yield stopping
        self.assertTrue(threads[0].daemon)
        self.assertFalse(job.called)
        release.set()
        yield job

    @inlineCallbacks
    def test_idleStopsAtOnce(self) -> Any:
        """
        An idle started pool stops at once; stopping twice is harmless.
        """
        pool = WorkerPool(cast(IReactorFromThreads, globalReactor), size=2)
        pool.start()
        yield pool.run(lambda: None)
        yield pool.stop(timeout=5)
        yield pool.stop(timeout=5)


def _tick() -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(globalReactor, 0.01, lambda: None)
