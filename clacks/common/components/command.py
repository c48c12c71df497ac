# -*- test-case-name: tests.test_commands -*-
"""
The C{@Command} decorator: marks a plugin method as a command clients can
call over AMQP or HTTP.

    class Greeter(Plugin):
        _target_ = "greeter"

        @Command(__help__="Say hello to NAME.")
        def hello(self, name):
            return f"hello {name}"

        @Command(__help__="Who is calling?", needsUser=True)
        def whoami(self, user):
            return user

        @Command(__help__="Compress a file (slow, blocking).", blocking=True)
        def compress(self, path):
            ...  # runs in the agent's bounded thread pool
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute @Command sets on the function.
COMMAND_ATTRIBUTE = "__clacks_command__"


class CommandType(enum.Enum):
    """
    How many nodes answer a call to the command.
    """

    #: One node that provides the command answers.
    NORMAL = "NORMAL"
    #: Every provider is asked; the first non-null answer is the result.
    FIRSTRESULT = "FIRSTRESULT"
    #: Every provider is asked; the answers are combined (see
    #: L{clacks.agent.dispatch.combine}).
    CUMULATIVE = "CUMULATIVE"


NORMAL = CommandType.NORMAL
FIRSTRESULT = CommandType.FIRSTRESULT
CUMULATIVE = CommandType.CUMULATIVE


@attrs.frozen
class CommandOptions:
    """
    What C{@Command} said about a method.

    @ivar help: the help text (required: a command without it is refused).
    @ivar needsUser: the method takes C{user}, the caller's verified login.
    @ivar needsQueue: the method takes C{queue}, where the call came from.
    @ivar type: NORMAL, FIRSTRESULT or CUMULATIVE.
    @ivar blocking: run the method in the agent's bounded thread pool.
    @ivar name: the command name; by default the method name.
    """

    help: str | None
    needsUser: bool = False
    needsQueue: bool = False
    type: CommandType = NORMAL
    blocking: bool = False
    name: str | None = None


def Command(
    __help__: str | None = None,
    needsUser: bool = False,
    needsQueue: bool = False,
    type: CommandType | str = NORMAL,
    blocking: bool = False,
    name: str | None = None,
) -> Callable[[F], F]:
    """
    Mark a plugin method as a command.

    The method may return a value or a Deferred; with C{blocking=True} it
    runs in the agent's thread pool instead of the reactor thread.  Its
    parameters are the command's parameters; callers pass them by position
    or by name.

    @param __help__: what the command does, for C{getMethods} (required).
    @param needsUser: pass the caller's identity as C{user=}.
    @param needsQueue: pass where the call came from as C{queue=}.
    @param type: L{NORMAL}, L{FIRSTRESULT} or L{CUMULATIVE}.
    @param blocking: run in the bounded thread pool.
    @param name: the command's name if not the method's.
    """
    kind = type if isinstance(type, CommandType) else CommandType(str(type).upper())
    options = CommandOptions(
        help=__help__,
        needsUser=needsUser,
        needsQueue=needsQueue,
        type=kind,
        blocking=blocking,
        name=name,
    )

    def decorate(f: F) -> F:
        setattr(f, COMMAND_ATTRIBUTE, options)
        return f

    return decorate


def commandOptions(f: Any) -> CommandOptions | None:
    """
    @return: the options C{@Command} put on C{f}, or C{None}.
    """
    options = getattr(f, COMMAND_ATTRIBUTE, None)
    return options if isinstance(options, CommandOptions) else None


__all__ = [
    "COMMAND_ATTRIBUTE",
    "CUMULATIVE",
    "Command",
    "CommandOptions",
    "CommandType",
    "FIRSTRESULT",
    "NORMAL",
    "commandOptions",
]
