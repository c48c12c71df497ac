"""
Calling an agent's HTTP interface from tests: JSON-RPC POSTs and health
probes through treq, on a connection pool that is closed after the test
(both ends of every connection, so the reactor is left clean).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Generator, Mapping
from typing import Any

import attrs
from treq.client import HTTPClient as TreqClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.tcp import Connection
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from tests.util.agents import waitUntil


def basicAuth(user: str, password: str) -> str:
    """
    @return: the C{Authorization} header value for HTTP Basic.
    """
    pair = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def bearerAuth(token: str) -> str:
    """
    @return: the C{Authorization} header value for a bearer token.
    """
    return f"Bearer {token}"


def rpcRequest(method: str, *params: Any, id: Any = 1) -> dict[str, Any]:
    """
    @return: a JSON-RPC 2.0 request; a notification if C{id} is C{None}.
    """
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": list(params)}
    if id is not None:
        request["id"] = id
    return request


@attrs.frozen
class HTTPReply:
    """
    A response as it arrived: status, headers and the whole body.
    """

    code: int
    headers: Headers
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class HTTPClient:
    """
    A treq client on a persistent connection pool of its own.

    After the test, the pool's connections are closed and every connection
    to the ports it talked to is waited for, both ends, so that nothing is
    left in the reactor: use one client per test (raise
    C{pool.maxPersistentPerHost} for many calls at once).

    @ivar pool: the connection pool.
    """

    def __init__(self, testCase: TestCase, maxPersistentPerHost: int = 8) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = maxPersistentPerHost
        self.pool.retryAutomatically = False
        self._treq = TreqClient(Agent(reactor, pool=self.pool))
        self._ports: set[int] = set()
        testCase.addCleanup(self.close)

    @inlineCallbacks
    def request(
        self,
        method: str,
        port: int,
        path: str = "/rpc",
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float = 20.0,
    ) -> Generator[Deferred[Any], Any, HTTPReply]:
        """
        Send one request to C{http://127.0.0.1:PORT/PATH}.

        @return: the reply, whatever its status.
        """
        self._ports.add(port)
        response = yield self._treq.request(
            method,
            f"http://127.0.0.1:{port}{path}",
            data=body if body else None,
            headers=Headers({k: [v] for k, v in (headers or {}).items()}),
            params=dict(params or {}),
            timeout=timeout,
        )
        content = yield response.content()
        return HTTPReply(response.code, response.headers, content)

    def rpc(
        self,
        port: int,
        payload: Any,
        authorization: str | None = None,
        node: str | None = None,
        all: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Deferred[HTTPReply]:
        """
        POST a JSON-RPC request or batch (or raw C{bytes}) to C{/rpc}.

        @param authorization: the C{Authorization} header (L{basicAuth},
            L{bearerAuth}).
        @param node: add C{?node=NODE}.
        @param all: add C{?all=1}.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        allHeaders = {"Content-Type": "application/json"}
        if authorization is not None:
            allHeaders["Authorization"] = authorization
        allHeaders.update(headers or {})
        params = {}
        if node is not None:
            params["node"] = node
        if all:
            params["all"] = "1"
        d: Deferred[HTTPReply] = self.request(
            "POST", port, body=body, headers=allHeaders, params=params
        )
        return d

    @inlineCallbacks
    def call(
        self, port: int, method: str, *params: Any, **kwargs: Any
    ) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        """
        Call C{method} (see L{rpc} for C{kwargs}) and expect HTTP 200.

        @return: the JSON-RPC response object (C{result} or C{error}).
        """
        reply = yield self.rpc(port, rpcRequest(method, *params), **kwargs)
        if reply.code != 200:
            raise AssertionError(f"HTTP {reply.code} for {method}: {reply.body!r}")
        response: dict[str, Any] = reply.json
        return response

    def _openConnections(self) -> list[Any]:
        found = []
        for selectable in set(reactor.getReaders()) | set(reactor.getWriters()):
            if not isinstance(selectable, Connection):
                continue
            try:
                ends = {selectable.getHost().port, selectable.getPeer().port}
            except Exception:
                continue
            if ends & self._ports:
                found.append(selectable)
        return found

    @inlineCallbacks
    def close(self) -> Generator[Deferred[Any], Any, None]:
        """
        Close the pool's connections and wait until both ends are gone.
        """
        yield self.pool.closeCachedConnections()
        yield waitUntil(lambda: not self._openConnections(), 10, "HTTP connections to close")


__all__ = ["HTTPClient", "HTTPReply", "basicAuth", "bearerAuth", "rpcRequest"]
