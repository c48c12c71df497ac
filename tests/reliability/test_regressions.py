"""
Unit tests (no broker) for what the reliability suite found and fixed:

  - the reply cache was bounded by its number of replies only, so big
    replies could take any amount of memory;
  - requests refused by the HTTP JSON-RPC endpoint were not counted in
    C{NodeStatus.refused}.

(The third finding, a consumer the broker cancels, needs the broker: see
L{tests.reliability.test_fuzz.BrokerCancelsConsumer}.)
"""

from __future__ import annotations

import io
import os
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from clacks.agent.context import AgentStats
from clacks.agent.users import UserStore, addToken, addUser
from clacks.handlers.amqp.rpc import ReplyCache
from clacks.handlers.http.rpc import JSONRPCResource


class ReplyCacheBytes(SynchronousTestCase):
    """
    L{ReplyCache} keeps at most C{maxBytes} of replies, dropping the oldest.
    """

    def test_boundedByBytes(self) -> None:
        """
        Replies beyond C{maxBytes} push the oldest out; what stays is the
        newest that fit, and the byte count follows puts and expiries.
        """
        clock = Clock()
        cache = ReplyCache(clock, ttl=60.0, size=100, maxBytes=1000)
        for i in range(10):
            cache.put(f"k{i}", bytes(300))
        self.assertEqual(len(cache), 3)
        self.assertEqual(cache.totalBytes, 900)
        self.assertIsNone(cache.get("k6"))
        self.assertEqual(cache.get("k9"), bytes(300))
        cache.put("k9", bytes(10))
        self.assertEqual(cache.totalBytes, 610)
        clock.advance(61)
        self.assertIsNone(cache.get("k8"))
        self.assertEqual(cache.totalBytes, 310)

    def test_tooBigForTheCache(self) -> None:
        """
        A reply bigger than the whole cache is not kept (nor does it stay
        counted).
        """
        cache = ReplyCache(Clock(), maxBytes=100)
        cache.put("small", bytes(50))
        cache.put("big", bytes(101))
        self.assertIsNone(cache.get("big"))
        self.assertEqual((len(cache), cache.totalBytes), (0, 0))

    def test_defaultBound(self) -> None:
        """
        By default a cache holds at most 16 MiB, however many replies.
        """
        cache = ReplyCache(Clock())
        for i in range(40):
            cache.put(str(i), bytes(1024 * 1024))
        self.assertLessEqual(cache.totalBytes, 16 * 1024 * 1024)
        self.assertEqual(len(cache), 16)


class _Request(DummyRequest):
    _disconnected = False


class HTTPRefusedCounted(SynchronousTestCase):
    """
    The HTTP endpoint counts the requests it refuses as malformed or over a
    limit in the agent's C{refused}, as the AMQP command server does.
    """

    def setUp(self) -> None:
        path = os.path.join(self.mktemp())
        addUser(path, "alice", "secret", rounds=4)
        self.token = addToken(path, "alice", "t")
        self.stats = AgentStats()
        users = UserStore(path, Clock(), lambda f, *a: maybeDeferred(f, *a))
        self.resource = JSONRPCResource(lambda: None, users, Clock(), stats=self.stats)

    def post(self, body: bytes, **headers: str) -> Any:
        request = _Request([b""])
        request.method = b"POST"
        request.content = io.BytesIO(body)
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {self.token}".encode()])
        request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
        for name, value in headers.items():
            request.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
        self.resource.render(request)
        return request

    def test_counted(self) -> None:
        """
        Not JSON, over the size limit, another content type, a bad call in a
        batch: each refusal counts once.
        """
        self.post(b"{nope")
        self.post(b"[]")
        self.post(b"x", **{"content-length": str(2 * 1024 * 1024)})
        self.post(b"{}", **{"content-type": "text/plain"})
        self.post(b'[{"jsonrpc": "2.0", "method": "ping", "id": 1}, 5]')
        self.assertEqual(self.stats.refused, 5)

    def test_unauthenticatedNotCounted(self) -> None:
        """
        A request without valid credentials is refused (401) but is not an
        input refusal: not counted.
        """
        request = _Request([b""])
        request.method = b"POST"
        request.content = io.BytesIO(b"{nope")
        self.resource.render(request)
        self.assertEqual(request.responseCode, 401)
        self.assertEqual(self.stats.refused, 0)
