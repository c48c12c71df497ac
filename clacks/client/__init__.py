"""
Calling clacks agents from Python.

L{AMQPServiceProxy} (in L{clacks.client.proxy}) calls a domain's commands
as methods returning Deferreds: C{proxy.greet("Ada")},
C{proxy.greet.on("web1")("Ada")}, C{proxy.ping.everywhere()()},
C{proxy.nap.within(5)(1)}.  L{JSONServiceProxy} (in L{clacks.client.http})
does the same over an agent's HTTP endpoint, authenticated with a user and
password or a bearer token.  L{clacks.client.blocking} does both from code
that runs no reactor (C{connect(url, domain).greet("Ada")},
C{connectHTTP(url, credentials).greet("Ada")}), and C{clacks}
(L{clacks.client.cli}) from a shell.

L{AMQPClient} is the minimal Twisted caller underneath: it connects to the
broker, publishes JSON-RPC requests on the domain's commands exchange and
waits for the replies (RabbitMQ direct reply-to).
"""

from clacks.client.amqp import AMQPClient, CallError
from clacks.client.http import AuthenticationFailed, JSONServiceProxy
from clacks.client.proxy import (
    AllNodesResult,
    AMQPServiceProxy,
    Call,
    CallOptions,
    ConnectionFailed,
    ICommandCaller,
    Method,
    ServiceProxy,
)

__all__ = [
    "AMQPClient",
    "AMQPServiceProxy",
    "AllNodesResult",
    "AuthenticationFailed",
    "Call",
    "CallError",
    "CallOptions",
    "ConnectionFailed",
    "ICommandCaller",
    "JSONServiceProxy",
    "Method",
    "ServiceProxy",
]
