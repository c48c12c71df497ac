"""
An ordinary plugin: no C{serve()}/C{stop()}, only state and methods that
other plugins (and, later, remote callers) use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clacks.common.components.plugin import Plugin

if TYPE_CHECKING:
    from clacks.interfaces import IAgentContext


class HelloPlugin(Plugin):
    """
    Greets people, in the C{hello} command namespace.

    Registered as C{hello} on the C{agent.module} entry-point group.  With
    priority 20 it is created after L{clacks_hello.handler.HelloHandler}
    (priority 10), although its name sorts first: priority decides, the
    name only breaks ties.
    """

    _priority_ = 20
    _target_ = "hello"

    def __init__(self, context: IAgentContext) -> None:
        super().__init__(context)
        self.greeted = 0

    def greet(self, name: str) -> str:
        """
        @return: a greeting for C{name}, from this agent's node.
        """
        self.greeted += 1
        return f"Hello, {name}, from {self.context.config.core.id}!"


__all__ = ["HelloPlugin"]
