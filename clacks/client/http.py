# -*- test-case-name: tests.test_client_http -*-
"""
Calling a clacks domain over HTTP: JSON-RPC 2.0 C{POST}s to an agent's
C{[http]} endpoint, with the same surface as the AMQP proxy.

    proxy = JSONServiceProxy("http://127.0.0.1:8080/rpc", ("alice", "secret"))
    yield proxy.greet("Ada")                     # any node that has it
    yield proxy.greet(name="Ada")                # parameters by name
    yield proxy.greet.on("web1")("Ada")          # that node (forwarded by the agent)
    yield proxy.ping.everywhere()()              # every node: AllNodesResult
    yield proxy.nap.within(5)(1)                 # answer within 5 s
    yield proxy.close()

The agent must have a users file (C{[core] users}): every call is
authenticated, with HTTP Basic (C{credentials=(user, password)}, or
C{http://user:password@host/...}) or a bearer token (C{token=}) made with
C{clacks-agent-user}.  The agent runs the call as that user: the ACL
applies, also on the nodes it forwards the call to.

Every call returns a L{Deferred} that fires with the command's result or
fails with:

  - L{CallError}: the domain answered with a JSON-RPC error (its C{code}),
    or no answer came within the call's timeout (L{TIMEOUT});
  - L{AuthenticationFailed} (a L{ConnectionFailed}): the agent refused the
    credentials (HTTP 401);
  - L{ConnectionFailed}: the agent could not be reached, the connection
    was lost before the answer, or the URL is not a clacks endpoint.

Calls travel on a persistent connection pool (treq); L{close} closes its
idle connections and cancels the calls still waiting.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import attrs
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, inlineCallbacks
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from zope.interface import implementer

from clacks import __version__
from clacks._reactor import maybeGlobalReactor
from clacks.client.proxy import (
    Call,
    CallError,
    CallOptions,
    ConnectionFailed,
    ICommandCaller,
    ServiceProxy,
    allNodesResult,
)
from clacks.common.components._discovery import describeException
from clacks.common.jsonrpc import (
    INTERNAL_ERROR,
    JSON_CONTENT_TYPE,
    TIMEOUT,
    Request,
    RPCError,
    dumps,
    parseResponse,
)
from clacks.handlers.amqp.topology import ANY_NODE_KEY, nodeKey

#: The header that tells the agent how many seconds the call may take.
TIMEOUT_HEADER = "x-clacks-timeout"

#: The path of the endpoint when the URL gives none (C{[http] path}).
DEFAULT_PATH = "/rpc"

#: Seconds a call to every node waits beyond its timeout for the agent's
#: answer: the agent gathers the nodes' answers until the timeout, counted
#: from when it received the call, then answers with the missing nodes.
EVERYWHERE_GRACE = 2.0

#: Idle connections kept open per host, by default.
MAX_PERSISTENT_PER_HOST = 8


class AuthenticationFailed(ConnectionFailed):
    """
    The agent refused the credentials (HTTP 401): wrong user or password,
    unknown token, none given, or no users file on the agent.  C{str()} is
    one line naming the endpoint, who tried, and the agent's reason.
    """


@attrs.frozen
class Endpoint:
    """
    An agent's JSON-RPC endpoint, parsed from an C{http(s)://} URL.

    @ivar url: the URL without user and password (for requests and
        messages).
    @ivar username: the user given in the URL, if any.
    @ivar password: the password given in the URL, if any.
    """

    url: str
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)


def parseEndpoint(url: str) -> Endpoint:
    """
    Parse C{http://[user:password@]host[:port][/path][?query]}; without a
    path (or with C{/}), the path is C{/rpc}.

    @raise ValueError: if it is not an C{http} or C{https} URL with a host.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{url!r} is not a URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an HTTP URL (http://host:port/rpc), not {url!r}")
    if parts.fragment:
        raise ValueError(f"{url!r}: an endpoint URL has no #fragment")
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    clean = urlunsplit(SplitResult(parts.scheme, netloc, path, parts.query, ""))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return Endpoint(clean, username, password)


def basicAuthorization(user: str, password: str) -> str:
    """
    @return: the C{Authorization} value for HTTP Basic (UTF-8, RFC 7617).
    """
    pair = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _reasons(error: BaseException) -> list[BaseException]:
    """
    @return: the exceptions a Twisted web client error wraps
        (C{ResponseFailed}, C{ResponseNeverReceived}, ...), else C{[error]}.
    """
    reasons = getattr(error, "reasons", None)
    found: list[BaseException] = []
    for reason in reasons if isinstance(reasons, list) else []:
        value = reason.value if isinstance(reason, Failure) else reason
        if isinstance(value, BaseException):
            found.append(value)
    return found or [error]


def _why(error: BaseException) -> str:
    return describeException(_reasons(error)[0])


def _where(options: CallOptions) -> str:
    """
    @return: where a call goes, as the AMQP client names it in its timeout
        errors: C{any}, C{node.ID} or C{all}.
    """
    if options.node is not None:
        return nodeKey(options.node)
    return "all" if options.everywhere else ANY_NODE_KEY


@implementer(ICommandCaller)
class JSONServiceProxy(ServiceProxy):
    """
    A domain's commands over HTTP, as methods returning Deferreds; see the
    module's documentation.

    @param url: the agent's endpoint, C{http(s)://host:port/rpc} (user and
        password may be in it: C{http://alice:secret@host:8080/rpc}).
    @param credentials: C{(user, password)} for HTTP Basic; they win over
        those in C{url}.
    @param token: a bearer token instead (not with C{credentials}).
    @param timeout: default seconds a call may take.
    @param reactor: the reactor; the global one by default.
    @param pool: the connection pool; by default one of its own, keeping
        L{MAX_PERSISTENT_PER_HOST} idle connections.
    @raise ValueError: if C{url} is not an HTTP URL, or both C{credentials}
        and C{token} are given.

    @ivar url: the endpoint, without user or password.
    @ivar user: the user calls authenticate as (C{None} with a token or
        without credentials).
    @ivar pool: the connection pool.
    @ivar closed: whether L{close} was called.
    """

    #: The domain is not known over HTTP (an agent does not say).
    domain: str | None = None

    def __init__(
        self,
        url: str,
        credentials: tuple[str, str] | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        reactor: Any = None,
        pool: HTTPConnectionPool | None = None,
    ) -> None:
        from treq.client import HTTPClient
        from twisted.web.client import Agent

        reactor = maybeGlobalReactor(reactor)
        if not timeout > 0:
            raise ValueError(f"the timeout must be a positive number of seconds, not {timeout!r}")
        endpoint = parseEndpoint(url)
        if credentials is None and endpoint.username is not None:
            credentials = (endpoint.username, endpoint.password or "")
        if credentials is not None and token is not None:
            raise ValueError("give credentials (user, password) or a token, not both")
        self._reactor = reactor
        self.url: str = endpoint.url
        self.timeout = float(timeout)
        self.user: str | None = None
        self._authorization: str | None = None
        if credentials is not None:
            user, password = credentials
            self.user = user
            self._authorization = basicAuthorization(user, password)
        elif token is not None:
            self._authorization = f"Bearer {token.strip()}"
        self._token = token is not None
        if pool is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            pool.maxPersistentPerHost = MAX_PERSISTENT_PER_HOST
            # POSTs are not retried anyway; say so.
            pool.retryAutomatically = False
        self.pool = pool
        self._client = HTTPClient(Agent(reactor, pool=pool))
        self._ids = itertools.count(1)
        self._inflight: set[Deferred[Any]] = set()
        self.closed = False

    @property
    def identity(self) -> str:
        """
        Who the calls authenticate as, for messages: C{alice}, C{a bearer
        token} or C{no credentials}.
        """
        if self.user is not None:
            return self.user
        return "a bearer token" if self._token else "no credentials"

    def __repr__(self) -> str:
        return f"<JSONServiceProxy {self.url} as {self.identity}>"

    # Lifecycle

    @inlineCallbacks
    def connect(self, timeout: float | None = None) -> Any:
        """
        Check that the agent answers and accepts the credentials, with a
        call of C{ping} (an error from C{ping} itself, such as an ACL
        denial, still proves both).  Calls work without it; it makes a
        wrong URL or password fail early.

        @param timeout: seconds it may take; by default the proxy's timeout.
        @return: a Deferred firing with the proxy.
        @raise ConnectionFailed: if the agent cannot be reached or does not
            answer in time.
        @raise AuthenticationFailed: if it refused the credentials.
        """
        timeout = timeout or self.timeout
        try:
            yield self["ping"].within(timeout)()
        except CallError as e:
            if e.code == TIMEOUT:
                raise ConnectionFailed(
                    f"cannot connect to {self.url}: no answer within {timeout:g} s"
                ) from None
        return self

    def close(self) -> Deferred[None]:
        """
        Cancel the calls still waiting (they fail with C{CancelledError})
        and close the pool's idle connections (those of a pool given to
        the proxy too); later calls fail with C{RuntimeError}.

        @return: a Deferred firing when the connections are closed.
        """
        self.closed = True
        for d in list(self._inflight):
            d.cancel()
        closed: Deferred[None] = self.pool.closeCachedConnections()
        return closed

    # Commands

    def invoke(self, call: Call) -> Deferred[Any]:
        """
        Run C{call} with a C{POST} to the endpoint: C{?node=ID} for a call
        on one node, C{?all=1} for every node; its timeout goes in the
        C{x-clacks-timeout} header and is enforced here too.

        @return: a Deferred firing with the result (an L{AllNodesResult}
            for a call to every node), or failing as the module says.
        """
        if self.closed:
            return fail(RuntimeError("the proxy is closed"))
        options = call.options
        timeout = options.timeout or self.timeout
        # A call to every node is answered by the agent at the timeout,
        # with the nodes that did not answer: leave time for that answer.
        limit = timeout + EVERYWHERE_GRACE if options.everywhere else timeout
        d: Deferred[Any] = ensureDeferred(self._post(call, timeout))
        self._inflight.add(d)
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self._reactor.callLater(limit, expire)

        def settle(result: Any) -> Any:
            self._inflight.discard(d)
            if timer.active():
                timer.cancel()
            if expired and isinstance(result, Failure):
                return Failure(
                    CallError(
                        TIMEOUT,
                        f"no answer to {call.method!r} ({_where(options)}) within {timeout:g} s",
                        {"timeout": timeout},
                    )
                )
            return result

        d.addBoth(settle)
        if options.everywhere:
            d.addCallback(allNodesResult)
        return d

    def _headers(self, timeout: float) -> Headers:
        headers: dict[str, list[str]] = {
            "Content-Type": [JSON_CONTENT_TYPE],
            "Accept": [JSON_CONTENT_TYPE],
            "User-Agent": [f"clacks-client/{__version__}"],
            TIMEOUT_HEADER: [f"{timeout:g}"],
        }
        if self._authorization is not None:
            headers["Authorization"] = [self._authorization]
        return Headers(headers)

    async def _post(self, call: Call, timeout: float) -> Any:
        request = Request(method=call.method, params=call.params, id=next(self._ids))
        body = dumps(request.toJSON())
        params: dict[str, str] = {}
        if call.options.node is not None:
            params["node"] = call.options.node
        elif call.options.everywhere:
            params["all"] = "1"
        try:
            response = await self._client.post(
                self.url,
                data=body,
                headers=self._headers(timeout),
                params=params,
                allow_redirects=False,
            )
            content = await response.content()
        except Exception as e:
            if any(isinstance(r, CancelledError) for r in _reasons(e)):
                raise CancelledError() from None
            if isinstance(e, ConnectError | DNSLookupError):
                raise ConnectionFailed(f"cannot connect to {self.url}: {_why(e)}") from e
            raise ConnectionFailed(
                f"connection to {self.url} lost before the answer: {_why(e)}"
            ) from e
        return self._answer(request, response.code, response.phrase, content)

    def _answer(self, request: Request, code: int, phrase: bytes, content: bytes) -> Any:
        status = f"HTTP {code} {phrase.decode('latin-1', 'replace')}".strip()
        try:
            response = parseResponse(content)
        except RPCError:
            response = None
        if code == 401:
            reason = response.error.message if response and response.error else status
            raise AuthenticationFailed(
                f"authentication refused by {self.url} for {self.identity}: {reason}"
            )
        if response is None:
            if code == 200:
                raise CallError(INTERNAL_ERROR, f"{self.url} answered with no JSON-RPC response")
            raise ConnectionFailed(f"{self.url} answered {status}: not a clacks JSON-RPC endpoint")
        if response.error is not None:
            # 200, and 413, 415 or 500 with the reason as a JSON-RPC error.
            raise response.error
        if code != 200 or response.id != request.id:
            raise CallError(
                INTERNAL_ERROR,
                f"{self.url} answered {status} with the result of request {response.id!r}",
            )
        return response.result


__all__ = [
    "AuthenticationFailed",
    "DEFAULT_PATH",
    "EVERYWHERE_GRACE",
    "Endpoint",
    "JSONServiceProxy",
    "TIMEOUT_HEADER",
    "basicAuthorization",
    "parseEndpoint",
]
