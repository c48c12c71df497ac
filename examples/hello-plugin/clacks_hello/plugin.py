"""
An ordinary plugin with commands of every kind.

An ordinary plugin has no C{serve()}/C{stop()}: it keeps state and offers
C{@Command} methods, which clients call over AMQP (and HTTP) on any node,
one node or all nodes of the domain.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from clacks.common.components.command import CUMULATIVE, FIRSTRESULT, Command
from clacks.common.components.plugin import Plugin

if TYPE_CHECKING:
    from clacks.interfaces import IAgentContext

#: The longest nap the C{nap} and C{slowEcho} commands take.
MAX_SLEEP = 60.0


class HelloPlugin(Plugin):
    """
    Greets people, in the C{hello} command namespace.

    Registered as C{hello} on the C{agent.module} entry-point group.  With
    priority 20 it is created after L{clacks_hello.handler.HelloHandler}
    (priority 10), although its name sorts first: priority decides, the
    name only breaks ties.

    Its configuration section, C{[hello]}, takes C{friends}: the names this
    node knows (comma-separated), for the FIRSTRESULT command
    C{findFriend}.
    """

    _priority_ = 20
    _target_ = "hello"

    def __init__(self, context: IAgentContext) -> None:
        super().__init__(context)
        self.greeted = 0
        section = context.config.section("hello")
        self.friends = {n.strip() for n in section.get("friends", "").split(",") if n.strip()}

    @property
    def node(self) -> str:
        return str(self.context.config.core.id)

    # NORMAL commands: one node answers.

    @Command(__help__="Greet NAME, from the node that answers.")
    def greet(self, name: str) -> str:
        self.greeted += 1
        return f"Hello, {name}, from {self.node}!"

    @Command(__help__="Return VALUE unchanged.")
    def echo(self, value: Any) -> Any:
        return value

    @Command(__help__="Tell the caller who the agent thinks they are.", needsUser=True)
    def whoami(self, user: str | None) -> dict[str, Any]:
        return {"user": user, "node": self.node}

    @Command(__help__="Fail with MESSAGE, to show how errors reach the caller.")
    def fail(self, message: str = "as asked") -> None:
        raise ValueError(message)

    @Command(
        __help__="Sleep SECONDS in a worker thread (blocking code belongs there), then "
        "return the node's id.",
        blocking=True,
    )
    def nap(self, seconds: float) -> str:
        time.sleep(min(float(seconds), MAX_SLEEP))
        return self.node

    @Command(__help__="Return VALUE after SECONDS, without blocking the reactor.")
    def slowEcho(self, value: Any, seconds: float) -> Deferred[Any]:
        return deferLater(self.context.reactor, min(float(seconds), MAX_SLEEP), lambda: value)

    # FIRSTRESULT: every provider is asked, the first non-null answer wins.

    @Command(
        __help__="Find which node knows NAME (see [hello] friends); null if none does.",
        type=FIRSTRESULT,
    )
    def findFriend(self, name: str) -> str | None:
        return self.node if name in self.friends else None

    # CUMULATIVE: every provider is asked, the answers are combined.

    @Command(__help__="List the nodes that run this plugin (lists are joined).", type=CUMULATIVE)
    def helloNodes(self) -> list[str]:
        return [self.node]

    @Command(__help__="Count greetings over the domain (numbers are added).", type=CUMULATIVE)
    def greetingCount(self) -> int:
        return self.greeted


__all__ = ["HelloPlugin"]
