# -*- test-case-name: tests.test_client_blocking -*-
"""
Calling a clacks domain from plain, blocking Python: scripts, notebooks,
WSGI apps, anything that does not run a Twisted reactor.

    from clacks.client.blocking import CallError, connect

    with connect("amqp://guest:guest@127.0.0.1/", "org.clacks") as proxy:
        print(proxy.greet("Ada"))                    # the result itself
        print(proxy.greet.on("web1")(name="Ada"))    # that node, by name
        print(proxy.ping.everywhere()().results)     # every node
        try:
            proxy.fail("no")
        except CallError as e:
            print(e.code, e.message)

Over HTTP, to an agent's endpoint (it needs a users file), with a user and
password or a bearer token:

    from clacks.client.blocking import connectHTTP

    with connectHTTP("http://127.0.0.1:8080/rpc", ("alice", "secret")) as proxy:
        print(proxy.whoami())

The surface is L{clacks.client.proxy}'s (C{.on(node)}, C{.everywhere()},
C{.within(seconds)}, C{proxy["name"]}), but a call blocks until the answer
is there and returns it, or raises L{CallError}.

It uses U{crochet<https://crochet.readthedocs.io>}: the first L{connect}
starts the global reactor in a daemon thread (C{crochet.setup()}), and the
calls run there.  Do not use it in a process whose main thread runs the
reactor itself (use L{clacks.client.proxy.AMQPServiceProxy} or
L{clacks.client.http.JSONServiceProxy} there).
A proxy is safe to use from several threads at once.
"""

from __future__ import annotations

from typing import Any

import crochet
from zope.interface import implementer

from clacks.client.http import AuthenticationFailed, JSONServiceProxy
from clacks.client.proxy import (
    AMQPServiceProxy,
    Call,
    CallError,
    ConnectionFailed,
    ICommandCaller,
    ServiceProxy,
)
from clacks.common.jsonrpc import TIMEOUT

#: Seconds waited beyond a call's own timeout before giving up on it (the
#: call normally fails with a timeout error by itself first).
MARGIN = 5.0


@crochet.run_in_reactor
def _inReactor(f: Any, *args: Any, **kwargs: Any) -> Any:
    return f(*args, **kwargs)


def _wait(result: Any, timeout: float, what: str) -> Any:
    try:
        return result.wait(timeout)
    except crochet.TimeoutError:
        result.cancel()
        raise CallError(TIMEOUT, f"no answer to {what} within {timeout:g} s") from None


@implementer(ICommandCaller)
class BlockingProxy(ServiceProxy):
    """
    A domain's commands as methods that block and return their results.
    Made by L{connect} (AMQP) or L{connectHTTP} (HTTP).

    @ivar proxy: the L{AMQPServiceProxy} or L{JSONServiceProxy} that runs
        in the reactor thread.
    """

    def __init__(self, proxy: AMQPServiceProxy | JSONServiceProxy) -> None:
        self.proxy = proxy
        self.closed = False

    @property
    def domain(self) -> str | None:
        """
        The domain; C{None} over HTTP, where it is not known.
        """
        return self.proxy.domain

    def invoke(self, call: Call) -> Any:
        """
        Run C{call} in the reactor thread and wait for its answer.

        @return: the result (an L{AllNodesResult} for a call to every node).
        @raise CallError: if the call failed or no answer came in time.
        @raise RuntimeError: if the proxy is closed.
        """
        if self.closed:
            raise RuntimeError("the proxy is closed")
        timeout = call.options.timeout or self.proxy.timeout
        return _wait(_inReactor(self.proxy.invoke, call), timeout + MARGIN, repr(call.method))

    def close(self, timeout: float = 10.0) -> None:
        """
        Close the connection cleanly (the reactor thread keeps running
        until the process ends).  Closing twice does nothing.
        """
        if self.closed:
            return
        self.closed = True
        _inReactor(self.proxy.close).wait(timeout)

    def __enter__(self) -> BlockingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    url: str,
    domain: str,
    timeout: float = 30.0,
    connectTimeout: float = 10.0,
    connectionName: str | None = None,
) -> BlockingProxy:
    """
    Connect to the broker and return a proxy for the domain's commands.

    The connection gives up at the first failed attempt (refused,
    unreachable, login refused); once up, it comes back by itself when
    lost.

    @param url: the broker, C{amqp://user:password@host:port/vhost}.
    @param domain: the domain.
    @param timeout: default seconds a call may take.
    @param connectTimeout: seconds connecting may take.
    @param connectionName: the name the broker shows for the connection.
    @raise ConnectionFailed: if it could not connect, saying why.
    @raise ValueError: if C{url} is not an AMQP URL.
    """
    crochet.setup()
    proxy = _inReactor(
        AMQPServiceProxy, url, domain, timeout=timeout, connectionName=connectionName
    ).wait(connectTimeout)
    try:
        _inReactor(proxy.connect, timeout=connectTimeout, attempts=1).wait(connectTimeout + MARGIN)
    except crochet.TimeoutError:
        _inReactor(proxy.close).wait(connectTimeout)
        raise ConnectionFailed(
            f"cannot connect to {proxy.url.redacted()}: no connection within {connectTimeout:g} s"
        ) from None
    return BlockingProxy(proxy)


def connectHTTP(
    url: str,
    credentials: tuple[str, str] | None = None,
    token: str | None = None,
    timeout: float = 30.0,
    connectTimeout: float = 10.0,
    check: bool = True,
) -> BlockingProxy:
    """
    Return a proxy for the commands of the domain of the agent at C{url},
    called over HTTP (see L{clacks.client.http}).

    @param url: the agent's endpoint, C{http(s)://host:port/rpc} (user and
        password may be in it).
    @param credentials: C{(user, password)} for HTTP Basic.
    @param token: a bearer token instead.
    @param timeout: default seconds a call may take.
    @param connectTimeout: seconds the check may take.
    @param check: check at once that the agent answers and accepts the
        credentials (one call of C{ping}); otherwise the first call says.
    @raise ConnectionFailed: if the check could not reach the agent.
    @raise AuthenticationFailed: if the agent refused the credentials.
    @raise ValueError: if C{url} is not an HTTP URL, or both C{credentials}
        and C{token} are given.
    """
    crochet.setup()
    proxy = _inReactor(
        JSONServiceProxy, url, credentials=credentials, token=token, timeout=timeout
    ).wait(connectTimeout)
    if check:
        try:
            _inReactor(proxy.connect, timeout=connectTimeout).wait(connectTimeout + MARGIN)
        except crochet.TimeoutError:
            _inReactor(proxy.close).wait(connectTimeout)
            raise ConnectionFailed(
                f"cannot connect to {proxy.url}: no answer within {connectTimeout:g} s"
            ) from None
        except BaseException:
            _inReactor(proxy.close).wait(connectTimeout)
            raise
    return BlockingProxy(proxy)


__all__ = [
    "AuthenticationFailed",
    "BlockingProxy",
    "CallError",
    "ConnectionFailed",
    "connect",
    "connectHTTP",
]
