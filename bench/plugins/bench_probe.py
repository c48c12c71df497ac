"""
The bench's probe plugin, dropped into each bench agent: it counts the
C{BenchEvent} events the agent receives and reports the agent's counters.
"""

from __future__ import annotations

import os
import time
from typing import Any

from zope.interface import implementer

from clacks.common.components.command import Command
from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler


@implementer(IInterfaceHandler)
class BenchProbe(Plugin):
    """
    Subscribes to C{BenchEvent.#} once the AMQP handler is up.
    """

    _priority_ = 25
    _target_ = "bench"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.events = 0
        self.first: float | None = None
        self.last: float | None = None
        self._subscription: Any = None

    def serve(self) -> None:
        plugins = self.context.plugins
        if "AMQPHandler" in plugins:
            events = plugins.get("AMQPHandler").events
            self._subscription = events.subscribe("BenchEvent.#", self._received)

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.unsubscribe()

    def _received(self, event: Any) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        self.events += 1

    @Command(__help__="Bench: events received, first and last receipt times; then reset.")
    def benchEvents(self, reset: bool = False) -> dict[str, Any]:
        result = {"events": self.events, "first": self.first, "last": self.last}
        if reset:
            self.events, self.first, self.last = 0, None, None
        return result

    @Command(__help__="Bench: calls this node served, and its pid.")
    def benchStats(self) -> dict[str, Any]:
        return {
            "node": self.context.config.core.id,
            "processed": self.context.stats.processed,
            "pid": os.getpid(),
        }


__all__ = ["BenchProbe"]
