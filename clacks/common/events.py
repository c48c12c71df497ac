# -*- test-case-name: tests.test_events -*-
"""
Events on the bus: attrs types, their JSON form and their JSON Schema.

On the wire an event is a JSON object (UTF-8)::

    {"event": "NodeStatus", "node": "web1", ...the event's fields...}

published on the domain's event exchange with the routing key
C{<event>.<node>} (C{NodeStatus.web1}).  Every event type has a JSON Schema
derived from its fields; the bus validates an event before it sends it and
after it receives it.  Unknown fields are ignored on receipt, so that nodes
of different versions can share a domain.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar, Union

import attrs
from jsonschema import Draft202012Validator

EventT = TypeVar("EventT", bound="Event")

#: Event bodies bigger than this are refused, both ways.
MAX_EVENT_BYTES = 1024 * 1024


class EventError(ValueError):
    """
    An event could not be encoded or decoded; the message says why.
    """


@attrs.frozen
class Event:
    """
    Base class of event types.  Subclasses are C{attrs.frozen} classes whose
    first field is C{node}, the id of the node the event is about, and whose
    fields have JSON-friendly types: C{str}, C{int}, C{float}, C{bool},
    C{list[...]} of those, C{dict[str, Any]}, or any of those C{| None}.

    @cvar eventType: the name on the wire; by default the class name.
    """

    eventType: ClassVar[str] = ""

    node: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("eventType"):
            cls.eventType = cls.__name__

    @property
    def routingKey(self) -> str:
        return f"{self.eventType}.{self.node}"

    def toJSON(self) -> dict[str, Any]:
        """
        @return: the event as a JSON-ready dict, with its C{event} name.
        """
        body = {"event": self.eventType}
        body.update(attrs.asdict(self, recurse=False, value_serializer=_plain))
        return body


def _plain(instance: Any, field: Any, value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


@attrs.frozen
class GenericEvent:
    """
    An event of a type this node does not know: its name, node and fields
    as received.  Delivered to subscribers whose pattern matches it.
    """

    eventType: str
    node: str
    fields: Mapping[str, Any]

    @property
    def routingKey(self) -> str:
        return f"{self.eventType}.{self.node}"

    def toJSON(self) -> dict[str, Any]:
        return {**self.fields, "event": self.eventType, "node": self.node}


@attrs.frozen
class NodeAnnounce(Event):
    """
    A node is up: sent when its bus connection is first ready (and again
    after a reconnect, or when it meets a new node).

    @ivar incarnation: new at every start; tells a restart from a hiccup.
    @ivar version: the agent's version.
    @ivar commands: the names of the commands the node provides.
    @ivar methods: their descriptions (name, signature, help, type, ...).
    @ivar objects: the object OIDs the node provides.
    @ivar interval: seconds between the node's NodeStatus events.
    """

    incarnation: str
    version: str
    commands: list[str] = attrs.field(factory=list)
    objects: list[str] = attrs.field(factory=list)
    interval: float = 10.0
    methods: list[dict[str, Any]] = attrs.field(factory=list)


@attrs.frozen
class NodeStatus(Event):
    """
    A node's heartbeat, every C{agent.status-interval} seconds.

    @ivar sequence: counts up from 1 for each incarnation.
    @ivar load: the host's 1-minute load average.
    @ivar cpu: the process's CPU share since the last status, in percent.
    @ivar rss: the process's resident memory, in bytes.
    @ivar inflight: calls being served now.
    @ivar processed: calls served since start.
    @ivar lag: how late, in seconds, this status went out (reactor lag).
    @ivar connected: whether the bus was connected.
    @ivar draining: whether the node is stopping and takes no new calls.
    @ivar failedPlugins: names of plugins that failed.
    @ivar refused: requests refused since start (malformed, over a limit).
    """

    incarnation: str
    sequence: int
    interval: float
    load: float = 0.0
    cpu: float = 0.0
    rss: int = 0
    inflight: int = 0
    processed: int = 0
    lag: float = 0.0
    connected: bool = True
    draining: bool = False
    failedPlugins: list[str] = attrs.field(factory=list)
    refused: int = 0


@attrs.frozen
class NodeLeave(Event):
    """
    A node leaves the domain on purpose.

    @ivar reason: why, for humans.
    @ivar served: calls served in this incarnation.
    @ivar requeued: calls handed back to the broker for other nodes.
    """

    incarnation: str
    reason: str = "shutdown"
    served: int = 0
    requeued: int = 0


def _schemaFor(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schemaFor(a) for a in args]}
    if tp is type(None):
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is Any:
        return {}
    if origin in (list, tuple) or tp in (list, tuple):
        items = args[0] if args else Any
        return {"type": "array", "items": _schemaFor(items)}
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return {"type": "object"}
    raise TypeError(f"no JSON Schema for field type {tp!r}")


def schemaOf(eventClass: type[Event]) -> dict[str, Any]:
    """
    @return: the JSON Schema of C{eventClass}'s wire form.
    @raise TypeError: if a field has a type without a JSON form.
    """
    hints = typing.get_type_hints(eventClass)
    properties: dict[str, Any] = {"event": {"const": eventClass.eventType}}
    required = ["event"]
    for field in attrs.fields(eventClass):
        properties[field.name] = _schemaFor(hints[field.name])
        if field.default is attrs.NOTHING:
            required.append(field.name)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": eventClass.eventType,
        "type": "object",
        "properties": properties,
        "required": required,
    }


class EventTypes:
    """
    The event types one agent knows, by name.  Plugins add their own with
    L{register}.
    """

    def __init__(self, types: Iterable[type[Event]] = (NodeAnnounce, NodeStatus, NodeLeave)):
        self._types: dict[str, type[Event]] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for eventClass in types:
            self.register(eventClass)

    def register(self, eventClass: type[Event]) -> None:
        """
        @raise ValueError: if another class has the same name.
        @raise TypeError: if a field has no JSON form.
        """
        name = eventClass.eventType
        known = self._types.get(name)
        if known is not None and known is not eventClass:
            raise ValueError(f"event type {name!r} is already registered by {known!r}")
        schema = schemaOf(eventClass)
        Draft202012Validator.check_schema(schema)
        self._types[name] = eventClass
        self._validators[name] = Draft202012Validator(schema)

    def names(self) -> list[str]:
        return sorted(self._types)

    def schema(self, name: str) -> dict[str, Any]:
        schema = self._validators[name].schema
        assert isinstance(schema, dict)
        return dict(schema)

    def _check(self, name: str, body: Mapping[str, Any]) -> None:
        errors = sorted(self._validators[name].iter_errors(body), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = ".".join(str(p) for p in first.path) or "(top)"
            raise EventError(f"{name} event is invalid at {where}: {first.message}")

    def encode(self, event: Event | GenericEvent) -> bytes:
        """
        @return: the event's wire form, validated.
        @raise EventError: if it does not match its schema or is too big.
        """
        body = event.toJSON()
        if event.eventType in self._validators:
            self._check(event.eventType, body)
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(data) > MAX_EVENT_BYTES:
            raise EventError(
                f"{event.eventType} event is {len(data)} bytes; the limit is {MAX_EVENT_BYTES}"
            )
        return data

    def decode(self, data: bytes) -> Event | GenericEvent:
        """
        @return: the event; a L{GenericEvent} if its type is not registered.
        @raise EventError: saying what is wrong with C{data}.
        """
        if len(data) > MAX_EVENT_BYTES:
            raise EventError(f"event is {len(data)} bytes; the limit is {MAX_EVENT_BYTES}")
        try:
            body = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise EventError(f"event body is not UTF-8: {e}") from None
        except ValueError as e:
            raise EventError(f"event body is not JSON: {e}") from None
        except RecursionError:
            raise EventError("event body is nested too deeply") from None
        if not isinstance(body, dict):
            raise EventError(f"event body must be a JSON object, not {type(body).__name__}")
        name = body.get("event")
        node = body.get("node")
        if not isinstance(name, str) or not isinstance(node, str):
            raise EventError("event body needs string fields 'event' and 'node'")
        eventClass = self._types.get(name)
        if eventClass is None:
            rest = {k: v for k, v in body.items() if k not in ("event", "node")}
            return GenericEvent(name, node, rest)
        self._check(name, body)
        known = {f.name for f in attrs.fields(eventClass)}
        return eventClass(**{k: v for k, v in body.items() if k in known})


__all__ = [
    "Event",
    "EventError",
    "EventTypes",
    "GenericEvent",
    "MAX_EVENT_BYTES",
    "NodeAnnounce",
    "NodeLeave",
    "NodeStatus",
    "schemaOf",
]
