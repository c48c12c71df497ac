"""
Tests for L{clacks.common.events}.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from clacks.common.events import (
    MAX_EVENT_BYTES,
    Event,
    EventError,
    EventTypes,
    GenericEvent,
    NodeAnnounce,
    NodeLeave,
    NodeStatus,
    schemaOf,
)


@attrs.frozen
class DiskFull(Event):
    """
    A plugin's own event type.
    """

    path: str
    free: int
    tags: list[str] = attrs.field(factory=list)
    detail: dict[str, Any] | None = None


def status(**kw: Any) -> NodeStatus:
    fields: dict[str, Any] = {"node": "n1", "incarnation": "i1", "sequence": 1, "interval": 10.0}
    fields.update(kw)
    return NodeStatus(**fields)


class EncodingTests(SynchronousTestCase):
    """
    Events travel as JSON objects named by their C{event} field.
    """

    def setUp(self) -> None:
        self.types = EventTypes()

    def test_roundTrip(self) -> None:
        """
        Each lifecycle event decodes back to an equal event.
        """
        events = [
            NodeAnnounce(node="n1", incarnation="i", version="1", commands=["a"], objects=["o"]),
            status(load=0.5, rss=1 << 40, failedPlugins=["bad"]),
            NodeLeave(node="n1", incarnation="i", reason="bye", served=3, requeued=1),
        ]
        for event in events:
            self.assertEqual(self.types.decode(self.types.encode(event)), event)

    def test_wireForm(self) -> None:
        """
        The wire form is UTF-8 JSON with the event name and every field; the
        routing key is C{<event>.<node>}.
        """
        event = NodeLeave(node="hôte.example", incarnation="i")
        body = json.loads(self.types.encode(event).decode("utf-8"))
        self.assertEqual(body["event"], "NodeLeave")
        self.assertEqual(body["node"], "hôte.example")
        self.assertEqual(event.routingKey, "NodeLeave.hôte.example")

    def test_encodeValidates(self) -> None:
        """
        An event whose field has the wrong type is refused before it is sent,
        naming the field.
        """
        with self.assertRaises(EventError) as caught:
            self.types.encode(status(sequence="seven"))
        self.assertIn("sequence", str(caught.exception))

    def test_pluginEventType(self) -> None:
        """
        A registered plugin event type round-trips and has a schema derived
        from its fields, optional ones included.
        """
        self.types.register(DiskFull)
        event = DiskFull(node="n", path="/", free=0, detail={"x": [1]})
        self.assertEqual(self.types.decode(self.types.encode(event)), event)
        schema = schemaOf(DiskFull)
        self.assertEqual(schema["required"], ["event", "node", "path", "free"])
        self.assertEqual(
            schema["properties"]["tags"], {"type": "array", "items": {"type": "string"}}
        )

    def test_registerConflict(self) -> None:
        """
        Two classes cannot claim the same event name.
        """

        @attrs.frozen
        class NodeStatus(Event):  # noqa: F811 - the clash is the point
            pass

        with self.assertRaises(ValueError):
            self.types.register(NodeStatus)

    def test_unknownTypeIsGeneric(self) -> None:
        """
        An event of a type this node does not know arrives as a
        L{GenericEvent} with its fields.
        """
        event = self.types.decode(b'{"event": "Other", "node": "n2", "x": 1}')
        self.assertEqual(event, GenericEvent("Other", "n2", {"x": 1}))
        self.assertEqual(event.routingKey, "Other.n2")

    def test_unknownFieldsIgnored(self) -> None:
        """
        Fields a newer node added are ignored, so versions can mix.
        """
        body = status().toJSON()
        body["future"] = "thing"
        self.assertEqual(self.types.decode(json.dumps(body).encode()), status())


class MalformedTests(SynchronousTestCase):
    """
    Anything that is not a valid event is refused with a message saying why.
    """

    def assertRefused(self, data: bytes, why: str) -> None:
        with self.assertRaises(EventError) as caught:
            EventTypes().decode(data)
        self.assertIn(why, str(caught.exception))

    def test_notUTF8(self) -> None:
        """Bytes that are not UTF-8."""
        self.assertRefused(b"\xff\xfe", "not UTF-8")

    def test_notJSON(self) -> None:
        """Text that is not JSON."""
        self.assertRefused(b"{nope", "not JSON")

    def test_notObject(self) -> None:
        """JSON that is not an object."""
        self.assertRefused(b"[1, 2]", "JSON object")

    def test_noName(self) -> None:
        """An object without C{event} and C{node}."""
        self.assertRefused(b'{"node": "x"}', "'event' and 'node'")

    def test_missingField(self) -> None:
        """A known event without a required field."""
        self.assertRefused(b'{"event": "NodeLeave", "node": "x"}', "incarnation")

    def test_tooDeep(self) -> None:
        """Nesting deep enough to exhaust the parser."""
        self.assertRefused(b"[" * 100000 + b"]" * 100000, "nested too deeply")

    def test_tooBig(self) -> None:
        """A body over the size limit, both ways."""
        self.assertRefused(b" " * (MAX_EVENT_BYTES + 1), "limit")
        with self.assertRaises(EventError):
            EventTypes().encode(NodeLeave(node="n", incarnation="i", reason="x" * MAX_EVENT_BYTES))
