"""
Tests for L{clacks.handlers.amqp.rpc}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clacks.handlers.amqp.rpc import ReplyCache


class ReplyCacheTests(SynchronousTestCase):
    """
    L{ReplyCache} keeps sent replies by request id for C{ttl} seconds, at
    most C{size} of them, the oldest going first.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cache = ReplyCache(self.clock, ttl=60.0, size=3)

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_getPut(self) -> None:
        """
        A reply put under a key is got back by it; other keys have none.
        """
        self.assertIsNone(self.cache.get("r1"))
        self.cache.put("r1", b"reply 1")
        self.cache.put("r2", b"reply 2")
        self.assertEqual(self.cache.get("r1"), b"reply 1")
        self.assertEqual(self.cache.get("r2"), b"reply 2")
        self.assertIsNone(self.cache.get("r3"))
        self.assertEqual(len(self.cache), 2)

    def test_putAgainReplaces(self) -> None:
        """
        Putting a key again replaces its reply and does not grow the cache.
        """
        self.cache.put("r1", b"old")
        self.cache.put("r1", b"new")
        self.assertEqual(self.cache.get("r1"), b"new")
        self.assertEqual(len(self.cache), 1)

    def test_expiry(self) -> None:
        """
        A reply is kept C{ttl} seconds and forgotten after; getting an
        expired reply drops it.
        """
        self.cache.put("r1", b"reply")
        self.clock.advance(60)
        self.assertEqual(self.cache.get("r1"), b"reply")
        self.clock.advance(0.001)
        self.assertIsNone(self.cache.get("r1"))
        self.assertEqual(len(self.cache), 0)

    def test_expiredDroppedOnPut(self) -> None:
        """
        Putting a reply drops the expired ones, even if never got again.
        """
        self.cache.put("r1", b"one")
        self.clock.advance(30)
        self.cache.put("r2", b"two")
        self.clock.advance(31)
        self.cache.put("r3", b"three")
        self.assertEqual(len(self.cache), 2)
        self.assertIsNone(self.cache.get("r1"))
        self.assertEqual(self.cache.get("r2"), b"two")

    def test_putAgainRefreshes(self) -> None:
        """
        Putting a key again starts its C{ttl} over.
        """
        self.cache.put("r1", b"reply")
        self.clock.advance(50)
        self.cache.put("r1", b"reply")
        self.clock.advance(50)
        self.assertEqual(self.cache.get("r1"), b"reply")

    def test_sizeBound(self) -> None:
        """
        Beyond C{size} replies the oldest put is evicted first; getting a
        reply does not make it younger.
        """
        for key in ("r1", "r2", "r3"):
            self.cache.put(key, key.encode())
        self.assertEqual(self.cache.get("r1"), b"r1")
        self.cache.put("r4", b"r4")
        self.assertEqual(len(self.cache), 3)
        self.assertIsNone(self.cache.get("r1"))
        self.assertEqual([self.cache.get(k) for k in ("r2", "r3", "r4")], [b"r2", b"r3", b"r4"])
        self.cache.put("r2", b"r2 again")
        self.cache.put("r5", b"r5")
        self.assertIsNone(self.cache.get("r3"))
        self.assertEqual(self.cache.get("r2"), b"r2 again")
