"""
Reading what the code under test logs.
"""

from __future__ import annotations

from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider


def captureLogs(testCase: SynchronousTestCase) -> list[LogEvent]:
    """
    Collect every event logged from now until the end of C{testCase}.

    @return: the list the events are appended to.
    """
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return events


def messages(events: list[LogEvent]) -> list[str]:
    """
    @return: the formatted text of C{events}.
    """
    return [formatEvent(e) for e in events]


def handlerCalls(events: list[LogEvent]) -> list[tuple[str, str]]:
    """
    @return: C{(handler, stage)} of the calls logged by the handlers of
        L{tests.util.plugins}, in order.
    """
    return [(e["handler"], e["stage"]) for e in events if "handler" in e and "stage" in e]


__all__ = ["captureLogs", "handlerCalls", "messages"]
