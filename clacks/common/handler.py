# -*- test-case-name: tests.test_service -*-
"""
The interface of interface handlers: plugins that serve the outside world.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Interface


class IInterfaceHandler(Interface):
    """
    A plugin that exposes the agent to the outside world (AMQP, HTTP, ...).

    The agent turns every interface handler into a child service of its
    C{MultiService}: C{serve} is called when the agent starts, in priority
    order, and C{stop} when it stops, in reverse priority order.  Either may
    return a L{twisted.internet.defer.Deferred}; the agent waits for C{stop}
    before it stops the handler started before this one.
    """

    def serve() -> Any:
        """
        Start serving.

        @return: C{None} or a Deferred that fires once the handler is up.  An
            exception (or a failing Deferred) marks the plugin as failed; the
            agent keeps running the other plugins unless it runs with
            C{core.strict-plugins}.
        """

    def stop() -> Any:
        """
        Stop serving and release every resource: ports, connections, timers.

        @return: C{None} or a Deferred that fires once everything is released.
        """
