"""
Tests for L{clacks.handlers.amqp.topology}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from clacks.handlers.amqp.topology import DomainTopology, nodeKey, topicMatches


class NamesTests(SynchronousTestCase):
    """
    Names derive from the domain and the node id, as docs/protocol.md says.
    """

    def test_names(self) -> None:
        """
        Exchanges, queues and keys for domain C{org.clacks}, node C{web1}.
        """
        t = DomainTopology("org.clacks", "web1", "quorum")
        self.assertEqual(t.eventsExchange, "org.clacks.events")
        self.assertEqual(t.commandsExchange, "org.clacks.commands")
        self.assertEqual(t.sharedQueue, "org.clacks.commands.any")
        self.assertEqual(t.nodeQueue, "org.clacks.commands.node.web1")
        self.assertEqual(t.eventQueue("abc.1"), "org.clacks.events.web1.abc.1")
        self.assertEqual(
            t.sharedQueueArguments(),
            {
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": "org.clacks.dead",
                "x-delivery-limit": 5,
            },
        )
        self.assertEqual(t.deadQueue, "org.clacks.dead")
        classic = DomainTopology("org.clacks", "web1")
        self.assertNotIn("x-delivery-limit", classic.sharedQueueArguments())
        self.assertEqual(nodeKey("web1.example.com"), "node.web1.example.com")


class TopicMatchTests(SynchronousTestCase):
    """
    Local matching agrees with RabbitMQ's topic exchange rules.
    """

    def test_examples(self) -> None:
        """
        C{*} is exactly one word, C{#} zero or more.
        """
        cases = [
            ("a.#", "a", True),
            ("a.#", "a.b.c", True),
            ("#", "anything.at.all", True),
            ("*.b", "a.b", True),
            ("*.b", "a.c.b", False),
            ("a.*", "a", False),
            ("#.b", "b", True),
            ("a.#.c", "a.c", True),
            ("a.#.c", "a.x.y.c", True),
            ("a.#.c", "a.x.y.d", False),
            ("NodeStatus.#", "NodeStatus.host.example.com", True),
            ("NodeStatus.*", "NodeStatus.host.example.com", False),
            ("*", "a.b", False),
            ("a.b", "a.b", True),
            ("a.b", "a.bc", False),
        ]
        for pattern, key, expected in cases:
            self.assertEqual(topicMatches(pattern, key), expected, (pattern, key))

    @given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6))
    def test_hashMatchesAll(self, words: list[str]) -> None:
        """
        C{#} matches every key, and a key matches itself.
        """
        key = ".".join(words)
        self.assertTrue(topicMatches("#", key))
        self.assertTrue(topicMatches(key, key))
        self.assertTrue(topicMatches(f"{words[0]}.#", key))
