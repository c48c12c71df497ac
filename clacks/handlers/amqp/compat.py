# -*- test-case-name: tests.test_amqp_compat -*-
"""
The one place that knows txAMQP 0.8.2's defects.

txAMQP is unmaintained (last release 2018) and several of its parts do not
work on Python 3 against RabbitMQ.  Everything in this project that speaks
AMQP goes through this module, which contains the defects by subclassing
(no global monkeypatch):

  - it ships the AMQP 0-9-1 definition txAMQP needs (L{loadSpec});
  - L{AMQPConnection} (an C{AMQClient}) encodes and decodes every frame
    itself: bodies are raw bytes, field tables use pamqp's codec for every
    0-9-1 field type, short strings are measured in bytes;
  - L{AMQPChannel} honours C{no-wait}, knows when it is closed, tracks
    publisher confirms and consumers;
  - L{AMQPDelegate} handles what the broker sends that txAMQP ignores:
    C{basic.ack}/C{basic.nack} (confirms), C{basic.cancel},
    C{connection.blocked}/C{unblocked};
  - L{AMQPClientFactory} builds connections (usable by
    C{twisted.application.internet.ClientService}).

Every txAMQP method's first positional argument may be a reserved slot
(C{reserved_1}): call them with keyword arguments only.  Message properties
use the specification's hyphenated names (C{correlation-id}); use
L{mapProperties} to accept Python-style names.
"""

from __future__ import annotations

import datetime
import functools
import importlib.resources
import platform
import struct
import uuid
from collections.abc import Generator, Mapping
from io import BytesIO
from typing import Any

import pamqp.decode
import pamqp.encode
from twisted.copyright import version as twistedVersion
from twisted.internet import defer, error
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    inlineCallbacks,
    succeed,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from txamqp import spec as txspec
from txamqp.client import ChannelClosed, Closed, TwistedDelegate
from txamqp.codec import Codec
from txamqp.connection import Body, Frame, Header, Heartbeat, Method
from txamqp.content import Content
from txamqp.message import Message
from txamqp.protocol import AMQChannel, AMQClient, GarbageException
from txamqp.queue import Closed as QueueClosed
from txamqp.queue import TimeoutDeferredQueue

from clacks import __version__

log = Logger()

#: File name of the AMQP definition, in this package's C{spec} directory.
SPEC_RESOURCE = "amqp0-9-1.xml"

#: The protocol header of AMQP 0-9-1.  txAMQP sends C{AMQP 1 1 0 9}, the
#: 0-9 header, which RabbitMQ only tolerates.
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

#: Capabilities announced in the client properties.
CLIENT_CAPABILITIES: dict[str, bool] = {
    "publisher_confirms": True,
    "consumer_cancel_notify": True,
    "basic.nack": True,
    "exchange_exchange_bindings": True,
    "connection.blocked": True,
    "authentication_failure_close": True,
}

_FRAME_METHOD = 1
_FRAME_HEADER = 2
_FRAME_BODY = 3
_FRAME_HEARTBEAT = 8
_FRAME_END = 206
_FRAME_OVERHEAD = 8  # type (1) + channel (2) + size (4) + frame-end (1)
_DEFAULT_FRAME_MAX = 131072
_REPLY_SUCCESS = 200
_ACCESS_REFUSED = 403
_NOT_ALLOWED = 530


# ---------------------------------------------------------------------------
# Errors


class AMQPError(Exception):
    """
    Base class of the errors raised by this module.
    """


class ChannelClosedError(AMQPError, ChannelClosed):
    """
    The channel is closed: by the broker (a channel error such as
    C{404 NOT_FOUND}) or by the client.  Also a txAMQP C{ChannelClosed}.

    @ivar replyCode: the broker's reply code, or C{None} if the client
        closed the channel.
    @ivar replyText: the broker's explanation, or C{""}.
    """

    def __init__(self, message: str, replyCode: int | None = None, replyText: str = "") -> None:
        super().__init__(message)
        self.replyCode = replyCode
        self.replyText = replyText


class ConnectionLostError(AMQPError, Closed):
    """
    The connection is gone: the broker closed it (C{connection.close}, e.g.
    C{320 CONNECTION_FORCED}), the client closed it, or the TCP connection
    was lost.  Also a txAMQP C{Closed}.

    @ivar replyCode: the broker's reply code if the broker closed the
        connection, else C{None}.
    """

    def __init__(self, message: str, replyCode: int | None = None, replyText: str = "") -> None:
        super().__init__(message)
        self.replyCode = replyCode
        self.replyText = replyText


class AuthenticationError(AMQPError):
    """
    The broker refused the login (C{403 ACCESS_REFUSED}) or the access to
    the virtual host (C{530 NOT_ALLOWED}), or offers no usable mechanism.
    """


class PublishNacked(AMQPError):
    """
    The broker refused responsibility for a published message
    (C{basic.nack} on a confirm channel).
    """


class ConsumerCancelled(AMQPError):
    """
    The broker cancelled a consumer (C{basic.cancel}), for instance because
    its queue was deleted.  Given as the result of L{Consumer.cancelled}.
    """


class UnknownPropertyError(AMQPError, ValueError):
    """
    A message property name that AMQP 0-9-1 does not define.
    """


# ---------------------------------------------------------------------------
# The protocol definition


@functools.cache
def loadSpec() -> Any:
    """
    Load the AMQP 0-9-1 definition (with RabbitMQ's extensions) shipped as
    package data.  The result is cached: every call returns the same
    object.

    @return: a C{txamqp.spec.Spec}.
    """
    resource = importlib.resources.files(__name__.rpartition(".")[0])
    data = (resource / "spec" / SPEC_RESOURCE).read_bytes()
    return txspec.load_string(data, specfilename=SPEC_RESOURCE)


def _propertyNames() -> dict[str, str]:
    """
    @return: every accepted message property name mapped to the name the
        specification gives it.
    """
    return _propertyNameMap(loadSpec())


@functools.cache
def _propertyNameMap(spec: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for field in spec.classes.byname["basic"].fields:
        names[field.name] = field.name
        names[field.name.replace("-", "_")] = field.name
    names["message_type"] = "type"
    return names


def mapProperties(properties: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    Turn message properties given with Python-style names
    (C{correlation_id}, C{reply_to}, C{delivery_mode}, C{message_type} ...)
    or with the specification's names (C{correlation-id}) into the
    specification's names, which is what txAMQP's C{Content} wants.
    Properties whose value is C{None} are left out.

    @raise UnknownPropertyError: for a name AMQP 0-9-1 does not define
        (txAMQP would silently drop it).
    @raise ValueError: if one property is given under two names.
    """
    if not properties:
        return {}
    names = _propertyNames()
    result: dict[str, Any] = {}
    for key, value in properties.items():
        name = names.get(key)
        if name is None:
            valid = sorted({n.replace("-", "_") for n in names.values()})
            raise UnknownPropertyError(
                f"unknown AMQP message property {key!r}; the properties are: " + ", ".join(valid)
            )
        if name in result:
            raise ValueError(f"message property {name!r} is given twice")
        if value is not None:
            result[name] = value
    return result


def pythonProperties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """
    The reverse of L{mapProperties}: the properties of a received message
    (C{message.content.properties}) with Python-style names.
    """
    return {name.replace("-", "_"): value for name, value in properties.items()}


# ---------------------------------------------------------------------------
# Field tables: pamqp's codec, plus what it lacks


class UndecodableTable(dict[str, Any]):
    """
    The C{headers} of a received message that could not be decoded.  It is
    empty, but keeps the raw bytes, which are sent unchanged if the message
    is published again.

    @ivar raw: the table's bytes, without the length prefix.
    @ivar error: why decoding failed.
    """

    def __init__(self, raw: bytes, error: str) -> None:
        super().__init__()
        self.raw = raw
        self.error = error


def encodeTable(table: Mapping[str, Any] | None) -> bytes:
    """
    Encode an AMQP field table, length prefix included.

    Values may be: C{bool}; C{int} (signed or unsigned, up to 64 bits, sent
    in the smallest type); C{float} (sent as a double);
    C{decimal.Decimal}; C{str}; C{bytes}/C{bytearray} (sent as a byte
    array); C{datetime.datetime} (a timestamp; naive means UTC); C{None}
    (void); a mapping (nested table); a list or tuple (array).  Scalars are
    encoded by pamqp.

    @raise TypeError: for a value of another type; the message names the
        key.
    """
    if isinstance(table, UndecodableTable):
        return struct.pack(">I", len(table.raw)) + table.raw
    if not table:
        return b"\x00\x00\x00\x00"
    if not isinstance(table, Mapping):
        raise TypeError(f"a field table must be a mapping, not {type(table).__name__}")
    parts = []
    for key, value in table.items():
        if not isinstance(key, str):
            raise TypeError(f"field table keys must be str, not {key!r}")
        parts.append(pamqp.encode.short_string(key))
        try:
            parts.append(_encodeValue(value))
        except (TypeError, ValueError, struct.error) as e:
            raise TypeError(f"field table key {key!r}: {e}") from None
    data = b"".join(parts)
    return struct.pack(">I", len(data)) + data


def _encodeValue(value: Any) -> bytes:
    if isinstance(value, Mapping):
        return b"F" + encodeTable(value)
    if isinstance(value, (list, tuple)):
        data = b"".join(_encodeValue(item) for item in value)
        return b"A" + struct.pack(">I", len(data)) + data
    if isinstance(value, (bytes, bytearray, memoryview)):
        # pamqp only knows bytearray
        return b"x" + pamqp.encode.byte_array(bytearray(value))
    if isinstance(value, float):
        # pamqp sends floats as 32-bit 'f': precision lost
        return b"d" + pamqp.encode.double(value)
    result: bytes = pamqp.encode.encode_table_value(value)
    return result


def decodeTable(data: bytes) -> dict[str, Any]:
    """
    Decode an AMQP field table (length prefix included) with pamqp, which
    knows every type code of AMQP 0-9-1 and RabbitMQ's errata: signed and
    unsigned integers of 8 to 64 bits, float, double, decimal, long
    string, byte array, array, timestamp, nested table, boolean, void.

    Long strings come back as C{str} (as C{bytes} if not UTF-8), byte
    arrays as C{bytes}, timestamps as aware UTC C{datetime}, void as
    C{None}.

    @raise ValueError: if C{data} is not a valid table.
    """
    _, table = pamqp.decode.field_table(data)
    result: dict[str, Any] = _normalise(table)
    return result


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, bytearray):
        return bytes(value)
    return value


class _Codec(Codec):
    """
    txAMQP's codec with its defects fixed: strings are measured after
    encoding to UTF-8, field tables use L{encodeTable}/L{decodeTable},
    timestamps accept C{datetime}, and bit groups do not leak into each
    other.

    @ivar lenient: if true, an undecodable table becomes an
        L{UndecodableTable} instead of an error (used for content headers,
        which come from any peer on the bus).
    """

    lenient = False

    def enc_str(self, fmt: str, s: Any) -> None:
        if isinstance(s, str):
            data = s.encode("utf-8")
        elif isinstance(s, (bytes, bytearray, memoryview)):
            data = bytes(s)
        else:
            raise TypeError(f"expected str or bytes, got {type(s).__name__} {s!r}")
        if fmt == "!B" and len(data) > 255:
            raise ValueError(f"short string longer than 255 bytes: {data[:32]!r}...")
        self.pack(fmt, len(data))
        self.write(data)

    def encode_table(self, tbl: Any) -> None:
        self.write(encodeTable(tbl))

    def decode_table(self) -> dict[str, Any]:
        size = self.decode_long()
        data = self.read(size)
        try:
            return decodeTable(struct.pack(">I", size) + data)
        except ValueError as e:
            if not self.lenient:
                raise
            log.warn("Undecodable field table ({error}): {raw!r}", error=e, raw=data)
            return UndecodableTable(data, str(e))

    def encode_timestamp(self, o: Any) -> None:
        if isinstance(o, datetime.datetime):
            if o.tzinfo is None:
                o = o.replace(tzinfo=datetime.UTC)
            o = int(o.timestamp())
        self.pack("!Q", o)

    def decode(self, field_type: str) -> Any:
        if field_type != "bit":
            del self.incoming_bits[:]
        return super().decode(field_type)


# ---------------------------------------------------------------------------
# Frames


class _PackedFrame(Frame):
    """
    A frame encoded when it was queued, so that encoding errors reach the
    caller instead of killing txAMQP's writer loop.
    """

    def __init__(self, channel: int, payload: Any, data: bytes) -> None:
        super().__init__(channel, payload)
        self.data = data


def _frame(frameType: int, channel: int, payload: bytes) -> bytes:
    return struct.pack("!BHI", frameType, channel, len(payload)) + payload + bytes([_FRAME_END])


def _encodeMethod(method: Any, args: tuple[Any, ...]) -> bytes:
    codec = _Codec(BytesIO())
    codec.encode_short(method.klass.id)
    codec.encode_short(method.id)
    for field, value in zip(method.fields, args, strict=True):
        try:
            codec.encode(field.type, value)
        except (TypeError, ValueError, struct.error) as e:
            raise _contextError(
                e, f"{method.klass.name}.{method.name} field {field.name!r}"
            ) from None
    codec.flush()
    data: bytes = codec.stream.getvalue()
    return data


def _encodeHeader(klass: Any, weight: int, size: int, properties: Mapping[str, Any]) -> bytes:
    fields = list(klass.fields)
    unknown = set(properties) - {field.name for field in fields}
    if unknown:
        raise UnknownPropertyError("unknown AMQP message properties: " + ", ".join(sorted(unknown)))
    codec = _Codec(BytesIO())
    codec.encode_short(klass.id)
    codec.encode_short(weight)
    codec.encode_longlong(size)
    present = [properties.get(field.name) is not None for field in fields]
    words = max(1, -(-len(fields) // 15))
    for word in range(words):
        flags = 0
        for bit in range(15):
            index = word * 15 + bit
            if index < len(fields) and present[index]:
                flags |= 1 << (15 - bit)
        if word < words - 1:
            flags |= 1
        codec.encode_short(flags)
    for field in fields:
        value = properties.get(field.name)
        if value is None:
            continue
        try:
            codec.encode(field.type, value)
        except (TypeError, ValueError, struct.error) as e:
            raise _contextError(e, f"message property {field.name!r}") from None
    codec.flush()
    data: bytes = codec.stream.getvalue()
    return data


def _contextError(error: Exception, context: str) -> Exception:
    kind = TypeError if isinstance(error, TypeError) else ValueError
    return kind(f"{context}: {error}")


def _packFrame(channel: int, payload: Any) -> bytes:
    if isinstance(payload, Method):
        return _frame(_FRAME_METHOD, channel, _encodeMethod(payload.method, payload.args))
    if isinstance(payload, Header):
        return _frame(
            _FRAME_HEADER,
            channel,
            _encodeHeader(payload.klass, payload.weight, payload.size, payload.properties),
        )
    if isinstance(payload, Body):
        if not isinstance(payload.content, bytes):
            raise TypeError(f"a message body must be bytes, not {type(payload.content).__name__}")
        return _frame(_FRAME_BODY, channel, payload.content)
    if isinstance(payload, Heartbeat):
        return _frame(_FRAME_HEARTBEAT, channel, b"")
    raise TypeError(f"cannot encode frame payload {payload!r}")


def _decodeMethod(spec: Any, data: bytes) -> Any:
    codec = _Codec(BytesIO(data))
    klass = spec.classes.byid[codec.decode_short()]
    method = klass.methods.byid[codec.decode_short()]
    args = tuple(codec.decode(field.type) for field in method.fields)
    return Method(method, *args)


def _decodeHeader(spec: Any, data: bytes) -> Any:
    codec = _Codec(BytesIO(data))
    codec.lenient = True
    klass = spec.classes.byid[codec.decode_short()]
    weight = codec.decode_short()
    size = codec.decode_longlong()
    present: list[bool] = []
    while True:
        flags = codec.decode_short()
        present.extend(bool(flags >> bit & 1) for bit in range(15, 0, -1))
        if not flags & 1:
            break
    properties = {}
    for isPresent, field in zip(present, klass.fields, strict=False):
        if isPresent:
            properties[field.name] = codec.decode(field.type)
    return Header(klass, weight, size, **properties)


def _unpackFrame(spec: Any, data: bytes) -> Any:
    frameType, channel, size = struct.unpack_from("!BHI", data)
    if data[-1] != _FRAME_END or len(data) != size + _FRAME_OVERHEAD:
        raise GarbageException(f"frame error: bad frame end or size in {data[:16]!r}")
    payload = data[7:-1]
    if frameType == _FRAME_METHOD:
        return Frame(channel, _decodeMethod(spec, payload))
    if frameType == _FRAME_HEADER:
        return Frame(channel, _decodeHeader(spec, payload))
    if frameType == _FRAME_BODY:
        return Frame(channel, Body(bytes(payload)))
    if frameType == _FRAME_HEARTBEAT:
        return Frame(channel, Heartbeat())
    raise GarbageException(f"unknown frame type {frameType}")


@inlineCallbacks
def _readContent(queue: Any) -> Generator[Deferred[Any], Any, Any]:
    """
    Read a content header and its body frames from C{queue}: bytes in,
    bytes counted, C{bytes} out (even when empty).
    """
    frame = yield queue.get()
    header = frame.payload
    if not isinstance(header, Header):
        raise GarbageException(f"expected a content header, got {frame}")
    children = []
    for _ in range(header.weight):
        children.append((yield _readContent(queue)))
    chunks = []
    received = 0
    while received < header.size:
        frame = yield queue.get()
        if not isinstance(frame.payload, Body):
            raise GarbageException(f"expected a body frame, got {frame}")
        chunks.append(frame.payload.content)
        received += len(frame.payload.content)
    return Content(b"".join(chunks), children, dict(header.properties))


def _arguments(method: Any, **kwargs: Any) -> tuple[Any, ...]:
    """
    @return: the argument tuple of C{method}, from Python-style keyword
        arguments, with txAMQP's defaults for the others.
    """
    args = []
    for name, default in _argumentDefaults(method):
        args.append(kwargs.pop(name) if name in kwargs else default)
    if kwargs:
        raise TypeError(f"{method.klass.name}.{method.name}: unknown arguments {kwargs}")
    return tuple(args)


@functools.cache
def _argumentDefaults(method: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (txspec.pythonize(field.name), txspec.Method.DEFAULTS[field.type])
        for field in method.fields
    )


def _errorFromReason(reason: Any, channelId: int, spec: Any) -> AMQPError:
    """
    Turn the reason txAMQP gives for a close (a C{channel.close} or
    C{connection.close} message, a L{Failure}, an exception) into one of
    this module's exceptions.
    """
    if isinstance(reason, AMQPError):
        return reason
    if isinstance(reason, Message):
        code = reason.reply_code
        text = reason.reply_text
        cause = ""
        try:
            if reason.class_id:
                klass = spec.classes.byid[reason.class_id]
                cause = f" (on {klass.name}.{klass.methods.byid[reason.method_id].name})"
        except KeyError:
            pass
        if reason.method.klass.name == "channel":
            return ChannelClosedError(
                f"channel {channelId} closed by the broker: {code} {text}{cause}",
                code,
                text,
            )
        return ConnectionLostError(
            f"connection closed by the broker: {code} {text}{cause}", code, text
        )
    if isinstance(reason, Failure):
        reason = reason.value
    if isinstance(reason, AMQPError):
        return reason
    if isinstance(reason, ConnectionDone):
        return ConnectionLostError("connection closed")
    return ConnectionLostError(f"connection lost: {reason}")


# ---------------------------------------------------------------------------
# Channel


class AMQPChannel(AMQChannel):
    """
    A txAMQP channel that honours C{no-wait}, is marked closed whoever
    closed it, tracks publisher confirms and its consumers, and only sends
    frames that encoded.

    All the specification's methods are available as
    C{channel.<class>_<method>(**kwargs)}, e.g.
    C{channel.queue_declare(queue="q", durable=True, arguments={...})};
    each returns a Deferred firing with the reply (a txAMQP C{Message}) or
    C{None}.

    @ivar confirming: whether C{confirm.select} was sent on this channel.
    """

    def __init__(self, id: int, outgoing: Any, client: Any) -> None:
        super().__init__(id, outgoing, client)
        self.closed: bool = False
        self.reason: Any = None
        self.confirming = False
        self._publishSeq = 0
        self._unconfirmed: dict[int, tuple[Deferred[None], str, str] | None] = {}
        self._consumerTags: set[str] = set()

    def closedError(self) -> AMQPError:
        """
        @return: why this channel is closed, as an exception.
        """
        if self.reason is None:
            return ChannelClosedError(f"channel {self.id} is closed")
        return _errorFromReason(self.reason, self.id, self.client.spec)

    def _isNoWait(self, method: Any, args: tuple[Any, ...]) -> bool:
        # txAMQP looks for a field named "nowait"; 0-9-1 calls it "no-wait"
        for name in ("no-wait", "nowait"):
            field = method.fields.byname.get(name)
            if field is not None:
                return bool(args[method.fields.index(field)])
        return False

    def _encodeInvocation(self, method: Any, args: tuple[Any, ...], content: Any) -> list[Any]:
        payload = Method(method, *args)
        frames = [_PackedFrame(self.id, payload, _packFrame(self.id, payload))]
        if method.content:
            if content is None:
                content = Content(b"")
            body = content.body
            if isinstance(body, (bytearray, memoryview)):
                body = bytes(body)
            if not isinstance(body, bytes):
                raise TypeError(
                    f"a message body must be bytes, not {type(body).__name__}; encode it first"
                )
            if content.children:
                raise ValueError("content with children is not supported")
            header = Header(method.klass, 0, len(body), **content.properties)
            frames.append(_PackedFrame(self.id, header, _packFrame(self.id, header)))
            chunkSize = self.client.frameMax - _FRAME_OVERHEAD
            for start in range(0, len(body), chunkSize):
                chunk = Body(body[start : start + chunkSize])
                frames.append(
                    _PackedFrame(self.id, chunk, _frame(_FRAME_BODY, self.id, chunk.content))
                )
        return frames

    def _send(self, frames: list[Any]) -> None:
        client = self.client
        transport = client.transport
        if self.outgoing.pending or transport is None:
            for frame in frames:
                self.outgoing.put(frame)
            return
        # The writer (AMQPConnection.writer) waits on the queue and sends
        # each frame at once; with nothing queued, sending the frames here
        # is the same, in the same order, without a Deferred per frame.
        client.reschedule_send_heartbeat()
        transport.write(b"".join([frame.data for frame in frames]))

    @inlineCallbacks
    def invoke(
        self, method: Any, args: tuple[Any, ...], content: Any = None
    ) -> Generator[Deferred[Any], Any, Any]:
        if self.closed:
            raise self.closedError()
        frames = self._encodeInvocation(method, args, content)
        if self.confirming and method.klass.name == "basic" and method.name == "publish":
            # a publish through the raw API: keep the sequence in step
            self._publishSeq += 1
            self._unconfirmed[self._publishSeq] = None
        self._send(frames)
        if self._isNoWait(method, args) or not method.responses:
            return None
        try:
            response = (yield self.responses.get()).payload
            content = None
            if response.method.content:
                content = yield _readContent(self.responses)
        except QueueClosed:
            raise self.closedError() from None
        if response.method not in method.responses:
            raise ValueError(f"unexpected reply to {method.klass.name}.{method.name}: {response}")
        return Message(response.method, response.args, content)

    def publish(
        self,
        exchange: str,
        routingKey: str,
        content: Any,
        mandatory: bool = False,
    ) -> Deferred[None]:
        """
        Publish C{content}; see L{AMQPConnection.publish}.
        """
        if self.closed:
            return fail(self.closedError())
        method = self.client.spec.classes.byname["basic"].methods.byname["publish"]
        args = _arguments(method, exchange=exchange, routing_key=routingKey, mandatory=mandatory)
        frames = self._encodeInvocation(method, args, content)
        if self.confirming:
            self._publishSeq += 1
            d: Deferred[None] = Deferred()
            self._unconfirmed[self._publishSeq] = (d, exchange, routingKey)
        else:
            d = succeed(None)
        self._send(frames)
        return d

    def _confirmed(self, deliveryTag: int, multiple: bool, nacked: bool) -> None:
        """
        The broker acked or nacked publishes up to C{deliveryTag}.
        """
        if multiple:
            tags = [tag for tag in self._unconfirmed if tag <= deliveryTag or deliveryTag == 0]
        else:
            tags = [deliveryTag] if deliveryTag in self._unconfirmed else []
        for tag in tags:
            pending = self._unconfirmed.pop(tag)
            if pending is None:
                if nacked:
                    log.warn("Broker nacked publish #{tag} on channel {id}", tag=tag, id=self.id)
                continue
            d, exchange, routingKey = pending
            if nacked:
                d.errback(
                    PublishNacked(
                        f"the broker nacked message #{tag} published on channel "
                        f"{self.id} to exchange {exchange!r} with routing key "
                        f"{routingKey!r}"
                    )
                )
            else:
                d.callback(None)

    @inlineCallbacks
    def channel_close(
        self,
        reply_code: int = _REPLY_SUCCESS,
        reply_text: str = "Normal shutdown",
        class_id: int = 0,
        method_id: int = 0,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Close the channel and mark it closed (txAMQP left it open locally).
        """
        if self.closed:
            return
        try:
            yield super().channel_close(
                reply_code=reply_code,
                reply_text=reply_text,
                class_id=class_id,
                method_id=method_id,
            )
        except (AMQPError, QueueClosed):
            pass
        self.close(ChannelClosedError(f"channel {self.id} was closed by the client"))

    @inlineCallbacks
    def basic_consume(self, *args: Any, **kwargs: Any) -> Generator[Deferred[Any], Any, Any]:
        """
        C{basic.consume}, remembering the consumer tag so that the consumer
        is dropped when the channel closes.
        """
        if "consumer_tag" in kwargs and kwargs["consumer_tag"]:
            self._consumerTags.add(kwargs["consumer_tag"])
        reply = yield super().basic_consume(*args, **kwargs)
        if reply is not None:
            self._consumerTags.add(reply.consumer_tag)
        return reply

    @inlineCallbacks
    def basic_cancel(
        self, consumer_tag: str = "", no_wait: bool = False
    ) -> Generator[Deferred[Any], Any, Any]:
        """
        C{basic.cancel}, then drop the consumer's local queue (txAMQP kept
        it forever).
        """
        reply = yield super().basic_cancel(consumer_tag=consumer_tag, no_wait=no_wait)
        self.client._consumerGone(consumer_tag, None)
        return reply

    def do_close(self, reason: Any) -> None:
        """
        Mark the channel closed, whoever closed it: fail pending calls and
        confirms, stop its consumers, forget its id.
        """
        if self.closed:
            return
        # Closing the queues and failing Deferreds runs callers' code at
        # once: the bookkeeping comes first.
        self.closed = True
        self.reason = reason
        error = self.closedError()
        if self.id != 0 and self.client.channels.get(self.id) is self:
            del self.client.channels[self.id]
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        tags, self._consumerTags = self._consumerTags, set()
        self.incoming.close()
        self.responses.close()
        for pending in unconfirmed.values():
            if pending is not None:
                pending[0].errback(error)
        for tag in tags:
            self.client._consumerGone(tag, error)
        if not self._closing:
            self.client.channel_failed(self, Failure(error))


# ---------------------------------------------------------------------------
# Consumers


class Consumer:
    """
    A consumer started by L{AMQPConnection.consume}.

    @ivar tag: the consumer tag.
    @ivar queueName: the name of the AMQP queue consumed from.
    @ivar channel: the L{AMQPChannel} it consumes on.
    @ivar queue: a C{txamqp.queue.TimeoutDeferredQueue} of the delivered
        messages (txAMQP C{Message}s with C{.content.body} as C{bytes}, and
        C{delivery_tag}, C{redelivered}, C{exchange}, C{routing_key}).
        Once the consumer stops, messages already delivered can still be
        read, then C{get()} fails with C{txamqp.queue.Closed}.
    @ivar cancelled: a Deferred that fires once when the consumer stops:
        with C{None} if the client cancelled it, with a L{ConsumerCancelled}
        if the broker cancelled it (e.g. its queue was deleted), with a
        L{ChannelClosedError} or L{ConnectionLostError} if its channel or
        connection went away.  It never errbacks.
    @ivar active: whether it still receives messages.
    """

    def __init__(self, channel: AMQPChannel, tag: str, queueName: str, queue: Any) -> None:
        self.channel = channel
        self.tag = tag
        self.queueName = queueName
        self.queue = queue
        self.cancelled: Deferred[Exception | None] = Deferred()
        self.active = True

    def cancel(self) -> Deferred[None]:
        """
        Cancel the consumer (C{basic.cancel}), and close its queue.

        @return: a Deferred firing when the broker confirmed.
        """
        if not self.active or self.channel.closed:
            return succeed(None)
        d = self.channel.basic_cancel(consumer_tag=self.tag)
        return d.addCallback(lambda _: None)

    def _stopped(self, reason: Exception | None) -> None:
        if self.active:
            self.active = False
            self.cancelled.callback(reason)

    def __repr__(self) -> str:
        return f"<Consumer {self.tag} on {self.queueName!r} channel {self.channel.id}>"


# ---------------------------------------------------------------------------
# Delegate


class AMQPDelegate(TwistedDelegate):
    """
    txAMQP's delegate, plus the methods RabbitMQ sends that it lacks.
    """

    def connection_start(self, ch: Any, msg: Any) -> None:
        self.client._gotConnectionStart(msg)

    def connection_tune(self, ch: Any, msg: Any) -> None:
        self.client._gotConnectionTune(ch, msg)

    def connection_blocked(self, ch: Any, msg: Any) -> None:
        log.warn("The broker blocked the connection: {reason}", reason=msg.reason)
        self.client.blocked = msg.reason or "blocked"

    def connection_unblocked(self, ch: Any, msg: Any) -> None:
        log.info("The broker unblocked the connection")
        self.client.blocked = None

    def basic_deliver(self, ch: Any, msg: Any) -> None:
        self.client._queueFor(msg.consumer_tag).put(msg)

    def basic_ack(self, ch: Any, msg: Any) -> None:
        ch._confirmed(msg.delivery_tag, msg.multiple, nacked=False)

    def basic_nack(self, ch: Any, msg: Any) -> None:
        ch._confirmed(msg.delivery_tag, msg.multiple, nacked=True)

    def basic_cancel(self, ch: Any, msg: Any) -> None:
        tag = msg.consumer_tag
        log.info("The broker cancelled consumer {tag}", tag=tag)
        if not msg.no_wait:
            ch.basic_cancel_ok(consumer_tag=tag).addErrback(lambda _: None)
        self.client._consumerGone(
            tag,
            ConsumerCancelled(
                f"the broker cancelled consumer {tag} on channel {ch.id} "
                "(its queue was deleted or is unavailable)"
            ),
        )


# ---------------------------------------------------------------------------
# Connection


class _Deadline:
    """
    Calls C{action} once C{period} seconds have passed since C{last()}
    without C{last()} moving on; with C{repeat}, again every C{period}
    after that.  Moving the deadline costs a timestamp, not a timer: the
    timer re-arms itself when it fires early.  It has the parts of
    C{LoopingCall} (C{running}, C{stop}) and C{IDelayedCall} (C{active},
    C{cancel}) that txAMQP uses on C{sendHB} and C{checkHB}.
    """

    def __init__(
        self,
        clock: Any,
        period: float,
        last: Any,
        action: Any,
        repeat: bool = False,
    ) -> None:
        self._clock = clock
        self._period = period
        self._last = last
        self._action = action
        self._repeat = repeat
        self._stopped = False
        self._call: Any = clock.callLater(period, self._fire)

    @property
    def running(self) -> bool:
        return self.active()

    def active(self) -> bool:
        return self._call is not None and self._call.active()

    def cancel(self) -> None:
        self._stopped = True
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    stop = cancel

    def _fire(self) -> None:
        self._call = None
        now = self._clock.seconds()
        due = self._last() + self._period
        if now < due:
            self._call = self._clock.callLater(due - now, self._fire)
            return
        self._action()
        if self._repeat and not self._stopped and self._call is None:
            self._call = self._clock.callLater(self._period, self._fire)


class AMQPConnection(AMQClient):
    """
    An AMQP 0-9-1 client connection: txAMQP's C{AMQClient} with its
    defects contained.

    Use it through L{AMQPClientFactory}, then L{start}.

    @ivar connectionName: the name shown by the broker.
    @ivar clientProperties: the client properties sent at connection start.
    @ivar serverProperties: the broker's properties, once received.
    @ivar opened: whether the virtual host is open.
    @ivar blocked: the reason the broker gave for blocking the connection
        (C{connection.blocked}), or C{None}.
    @ivar frameMax: the negotiated maximum frame size.
    @ivar channelMax: the negotiated highest channel id.
    """

    channelClass = AMQPChannel

    def __init__(
        self,
        delegate: Any = None,
        vhost: str = "/",
        spec: Any = None,
        heartbeat: int = 30,
        clock: Any = None,
        insist: bool = False,
        connectionName: str = "clacks-agent",
    ) -> None:
        if delegate is None:
            delegate = AMQPDelegate()
        if spec is None:
            spec = loadSpec()
        # heartbeats are set up once negotiated (txAMQP armed them at
        # construction time and never negotiated)
        super().__init__(delegate, vhost, spec, heartbeat=0, clock=clock, insist=insist)
        basic = self.spec.classes.byname["basic"].methods.byname
        self._confirmMethods = frozenset([basic["ack"], basic["nack"]])
        self.requestedHeartbeat = heartbeat
        self.connectionName = connectionName
        self.clientProperties: dict[str, Any] = {
            "connection_name": connectionName,
            "product": "clacks-agent",
            "version": __version__,
            "platform": (f"Python {platform.python_version()} / Twisted {twistedVersion}"),
            "information": "txAMQP with clacks.handlers.amqp.compat",
            "capabilities": dict(CLIENT_CAPABILITIES),
        }
        self.serverProperties: dict[str, Any] | None = None
        self.opened = False
        self.blocked: str | None = None
        self.frameMax = _DEFAULT_FRAME_MAX
        self.channelMax = 2047
        self._startMessage: Any = None
        self.response: Any = None
        self.mechanism = "PLAIN"
        self.locale = "en_US"
        self._credentialsSet = False
        self._handshakeError: AMQPError | None = None
        self._lastChannelId = 0
        self._consumers: dict[str, Consumer] = {}
        self._lostReason: BaseException | None = None
        self._disconnectWaiters: list[Deferred[BaseException]] = []
        self._closing = False
        self._abortCall: Any = None

    # -- frames ------------------------------------------------------------

    def send_init_string(self) -> None:
        self.transport.write(PROTOCOL_HEADER)

    def _pack_frame(self, frame: Any) -> bytes:
        if isinstance(frame, _PackedFrame):
            return frame.data
        return _packFrame(frame.channel, frame.payload)

    def _unpack_frame(self, data: bytes) -> Any:
        return _unpackFrame(self.spec, data)

    def frameLengthExceeded(self, data: bytes) -> None:
        log.error("Oversized AMQP frame ({size} bytes); disconnecting", size=len(data))
        self.transport.loseConnection()

    def writer(self, frame: Any) -> None:
        # txAMQP's writer stops for good at the first exception
        try:
            self.send_frame(frame)
        except Exception:
            log.failure("Cannot send AMQP frame {frame}", frame=frame)
        self.outgoing.get().addCallback(self.writer)

    def _channel(self, id: int) -> Any:
        channel = self.channels.get(id)
        if channel is None:
            channel = self.channels[id] = self.channelFactory(id, self.outgoing, self)
        return channel

    def channel(self, id: int) -> Deferred[Any]:
        """
        @return: a Deferred firing with the channel object of id C{id},
            created (not opened) if needed.  Prefer L{newChannel}.
        """
        return succeed(self._channel(id))

    def queue(self, key: str) -> Deferred[Any]:
        """
        @return: a Deferred firing with the local queue of consumer tag
            C{key} (txAMQP's API).
        """
        return succeed(self._queueFor(key))

    def _queueFor(self, tag: str) -> Any:
        queue = self.queues.get(tag)
        if queue is None:
            queue = self.queues[tag] = TimeoutDeferredQueue(clock=self.clock)
        return queue

    def process_frame(self, frame: Any) -> None:
        payload = frame.payload
        if payload.type == Frame.HEARTBEAT:
            pass
        elif frame.channel == 0 or frame.channel in self.channels:
            channel = self._channel(frame.channel)
            if (
                payload.type == Frame.METHOD
                and payload.method in self._confirmMethods
                and self.work.waiting
                and not self.work.pending
            ):
                # A publisher confirm (one per message published on a
                # confirm channel) while the worker is idle: the worker
                # would handle it at once; do what it does, without the
                # queues and generators in between.
                try:
                    self.delegate.dispatch(channel, Message(payload.method, payload.args, None))
                except Exception:
                    self._dispatchFailed(Failure())
            else:
                channel.dispatch(frame, self.work)
        else:
            log.debug("Dropping {frame} for closed channel", frame=frame)
        if self.heartbeatInterval > 0 and not self.closed:
            self.reschedule_check_heartbeat()

    def worker(self, queue: Any) -> None:
        d = self.dispatch(queue)
        d.addErrback(self._dispatchFailed)
        d.addBoth(self._nextWork)

    def _nextWork(self, ignored: object) -> None:
        self.work.get().addCallback(self.worker)

    def _dispatchFailed(self, failure: Failure) -> None:
        if failure.check(QueueClosed):
            # the channel closed while its messages were being read
            return
        log.failure("Cannot handle AMQP method; closing the connection", failure)
        self.close(failure)

    @inlineCallbacks
    def dispatch(self, queue: Any) -> Generator[Deferred[Any], Any, None]:
        frame = yield queue.get()
        payload = frame.payload
        content = None
        if payload.method.content:
            content = yield _readContent(queue)
        channel = self.channels.get(frame.channel)
        if channel is None:
            return
        self.delegate.dispatch(channel, Message(payload.method, payload.args, content))

    # -- handshake ---------------------------------------------------------

    @inlineCallbacks
    def start(
        self,
        username: str,
        password: str,
        mechanism: str = "PLAIN",
        locale: str = "en_US",
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Authenticate and open the virtual host.

        @param mechanism: C{"PLAIN"} or C{"AMQPLAIN"}.
        @return: a Deferred firing with C{None} once the virtual host is
            open.
        @raise AuthenticationError: if the broker refuses the login or the
            virtual host.
        @raise ConnectionLostError: if the connection is lost meanwhile.
        """
        if mechanism == "PLAIN":
            self.response = f"\0{username}\0{password}".encode()
        elif mechanism == "AMQPLAIN":
            self.response = {"LOGIN": username, "PASSWORD": password}
        else:
            raise ValueError(f"unsupported AMQP authentication mechanism {mechanism!r}")
        self.mechanism = mechanism
        self.locale = locale
        self._credentialsSet = True
        self._maybeSendStartOk()
        try:
            yield self.started.wait()
            yield self._channel(0).connection_open(virtual_host=self.vhost)
        except Closed as e:
            raise self._startError(e, username) from None
        self.opened = True

    def authenticate(
        self,
        username: str,
        password: str,
        mechanism: str = "AMQPLAIN",
        locale: str = "en_US",
    ) -> Deferred[None]:
        """
        txAMQP's name for L{start} (used by C{txamqp.endpoint.AMQEndpoint}).
        """
        return self.start(username, password, mechanism, locale)

    def _startError(self, failure: Exception, username: str) -> AMQPError:
        if self._handshakeError is not None:
            return self._handshakeError
        reason: Any = failure
        if not isinstance(failure, AMQPError) and failure.args:
            reason = failure.args[0]
        cause = _errorFromReason(reason, 0, self.spec)
        code = getattr(cause, "replyCode", None)
        text = getattr(cause, "replyText", "")
        if code == _ACCESS_REFUSED:
            return AuthenticationError(f"the broker refused the login of {username!r}: {text}")
        if code == _NOT_ALLOWED:
            return AuthenticationError(
                f"the broker refused access to virtual host {self.vhost!r} for {username!r}: {text}"
            )
        return ConnectionLostError(f"AMQP handshake failed: {cause}")

    def _gotConnectionStart(self, msg: Any) -> None:
        self.serverProperties = msg.server_properties
        self._startMessage = msg
        self._maybeSendStartOk()

    def _maybeSendStartOk(self) -> None:
        # connection.start may arrive before or after start() is called
        msg = self._startMessage
        if msg is None or not self._credentialsSet:
            return
        self._startMessage = None
        mechanisms = msg.mechanisms
        if isinstance(mechanisms, bytes):
            mechanisms = mechanisms.decode("utf-8", "replace")
        if self.mechanism not in mechanisms.split():
            self._handshakeError = AuthenticationError(
                f"the broker does not offer the {self.mechanism} mechanism (it offers {mechanisms})"
            )
            self.transport.loseConnection()
            return
        self._channel(0).connection_start_ok(
            client_properties=self.clientProperties,
            mechanism=self.mechanism,
            response=self.response,
            locale=self.locale,
        ).addErrback(lambda _: None)

    def _gotConnectionTune(self, channel: Any, msg: Any) -> None:
        self.channelMax = msg.channel_max or 65535
        self.frameMax = msg.frame_max or _DEFAULT_FRAME_MAX
        self.MAX_LENGTH = self.frameMax
        heartbeat = self.requestedHeartbeat
        if heartbeat and msg.heartbeat:
            heartbeat = min(heartbeat, msg.heartbeat)
        channel.connection_tune_ok(
            channel_max=self.channelMax, frame_max=self.frameMax, heartbeat=heartbeat
        ).addErrback(lambda _: None)
        if heartbeat > 0:
            self.heartbeatInterval = heartbeat
            self._lastSent = self._lastReceived = self.clock.seconds()
            self.sendHB = _Deadline(
                self.clock, heartbeat, lambda: self._lastSent, self._heartbeatDue, repeat=True
            )
            self.checkHB = _Deadline(
                self.clock,
                heartbeat * self.MAX_UNSEEN_HEARTBEAT,
                lambda: self._lastReceived,
                self.check_heartbeat,
            )
        self.started.fire()

    # txAMQP re-armed a timer for every frame sent (LoopingCall stop/start)
    # and received (cancel/callLater): two timers per frame, on every
    # message's path.  Here a frame only records the time; the one timer
    # of each kind (L{_Deadline}) fires at the same moment txAMQP's did.

    def reschedule_send_heartbeat(self) -> None:
        self._lastSent = self.clock.seconds()

    def reschedule_check_heartbeat(self) -> None:
        self._lastReceived = self.clock.seconds()

    def _heartbeatDue(self) -> None:
        self.send_heartbeat()
        self._lastSent = self.clock.seconds()

    def check_heartbeat(self) -> None:
        log.warn(
            "No AMQP traffic from the broker for {seconds} s; dropping the connection",
            seconds=self.heartbeatInterval * self.MAX_UNSEEN_HEARTBEAT,
        )
        super().check_heartbeat()

    # -- channels ----------------------------------------------------------

    def _allocateChannelId(self) -> int:
        for _ in range(self.channelMax):
            self._lastChannelId = self._lastChannelId % self.channelMax + 1
            if self._lastChannelId not in self.channels:
                return self._lastChannelId
        raise AMQPError(f"all {self.channelMax} channels are in use")

    def newChannel(self) -> Deferred[AMQPChannel]:
        """
        Open a channel with an id never used before on this connection
        (until the ids wrap around).

        @return: a Deferred firing with the opened L{AMQPChannel}.
        """
        if self.closed or not self.opened:
            return fail(ConnectionLostError("the connection is not open"))
        channelId = self._allocateChannelId()
        channel = self._channel(channelId)

        def failed(reason: Failure) -> Failure:
            if self.channels.get(channelId) is channel:
                del self.channels[channelId]
            return reason

        d = channel.channel_open()
        d.addCallbacks(lambda _: channel, failed)
        return d

    def enableConfirms(self, channel: AMQPChannel) -> Deferred[None]:
        """
        Put C{channel} in publisher-confirm mode (C{confirm.select}):
        afterwards L{publish} on it fires when the broker has taken
        responsibility for the message.
        """
        if channel.confirming:
            return succeed(None)
        channel.confirming = True
        channel._publishSeq = 0
        d = channel.confirm_select()
        return d.addCallback(lambda _: None)

    # -- publishing --------------------------------------------------------

    def publish(
        self,
        channel: AMQPChannel,
        exchange: str,
        routingKey: str,
        body: bytes,
        properties: Mapping[str, Any] | None = None,
        mandatory: bool = False,
    ) -> Deferred[None]:
        """
        Publish a message.

        @param body: the body; C{bytes} only: encode text yourself.
        @param properties: message properties, by Python-style or
            specification name (see L{mapProperties}); C{headers} may hold
            any field-table value (see L{encodeTable}).
        @return: on a confirm channel (L{enableConfirms}), a Deferred that
            fires when the broker acks the message, and fails with
            L{PublishNacked} if it nacks it, with L{ChannelClosedError} or
            L{ConnectionLostError} if the channel or connection closes
            first (e.g. C{404} when the exchange does not exist).  On
            another channel, a Deferred fired once the message is queued
            for sending.
        @raise TypeError: if C{body} is not bytes, or a property has a
            wrong type.
        @raise UnknownPropertyError: for an unknown property name.
        """
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"a message body must be bytes, not {type(body).__name__}; encode it first"
            )
        content = Content(bytes(body), properties=mapProperties(properties))
        return channel.publish(exchange, routingKey, content, mandatory)

    # -- consuming ---------------------------------------------------------

    @inlineCallbacks
    def consume(
        self,
        channel: AMQPChannel,
        queue: str,
        noAck: bool = False,
        exclusive: bool = False,
        prefetch: int | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Generator[Deferred[Any], Any, Consumer]:
        """
        Start consuming from C{queue}.

        @param prefetch: if not C{None}, set the channel's prefetch count
            (C{basic.qos}) first.
        @return: a Deferred firing with a L{Consumer}.
        """
        if prefetch is not None:
            yield channel.basic_qos(prefetch_size=0, prefetch_count=prefetch, global_=False)
        tag = f"clacks.{uuid.uuid4().hex}"
        consumer = Consumer(channel, tag, queue, self._queueFor(tag))
        self._consumers[tag] = consumer
        try:
            yield channel.basic_consume(
                queue=queue,
                consumer_tag=tag,
                no_ack=noAck,
                exclusive=exclusive,
                arguments=dict(arguments or {}),
            )
        except Exception:
            self._consumerGone(tag, None)
            raise
        return consumer

    def _consumerGone(self, tag: str, reason: Exception | None) -> None:
        """
        Consumer C{tag} stopped: close and forget its local queue.
        """
        queue = self.queues.pop(tag, None)
        consumer = self._consumers.pop(tag, None)
        if consumer is not None:
            consumer.channel._consumerTags.discard(tag)
        if queue is not None:
            queue.close()
        if consumer is not None:
            consumer._stopped(reason)

    # -- closing -----------------------------------------------------------

    def do_close(self, reason: Any) -> None:
        # txAMQP iterates over self.channels while channels remove themselves
        for channel in list(self.channels.values()):
            channel.close(reason)
        for queue in list(self.queues.values()):
            queue.close()
        self.delegate.close(reason)

    def whenDisconnected(self) -> Deferred[BaseException]:
        """
        @return: a new Deferred that fires when the TCP connection is gone,
            with the reason as an exception (e.g. C{ConnectionDone},
            C{ConnectionLost}); it never errbacks.
        """
        if self._lostReason is not None:
            return succeed(self._lostReason)
        d: Deferred[BaseException] = Deferred()
        self._disconnectWaiters.append(d)
        return d

    def closeConnection(self, within: float = 5) -> Deferred[None]:
        """
        Close the connection cleanly: send C{connection.close}, wait up to
        C{within} seconds for C{close-ok}, then close the socket; if it is
        still open a second later, abort it.  Pending calls fail with
        L{ConnectionLostError}, pending C{get()}s on consumer queues with
        C{txamqp.queue.Closed}.

        @return: a Deferred firing with C{None} once the socket is closed.
        """
        if self._lostReason is not None:
            return succeed(None)
        d = self.whenDisconnected().addCallback(lambda _: None)
        if not self._closing:
            self._closing = True
            self._abortCall = self.clock.callLater(within + 1, self._abort)
            self._sendClose(within)
        return d

    @inlineCallbacks
    def _sendClose(self, within: float) -> Generator[Deferred[Any], Any, None]:
        if self.opened and not self.closed:
            d = self._channel(0).connection_close(
                reply_code=_REPLY_SUCCESS,
                reply_text="Normal shutdown",
                class_id=0,
                method_id=0,
            )
            d.addTimeout(within, self.clock)
            try:
                yield d
            # addTimeout raises defer.TimeoutError, not error.TimeoutError
            except (Closed, QueueClosed, CancelledError, defer.TimeoutError, error.TimeoutError):
                pass
            except Exception:
                log.failure("Unexpected error while closing the AMQP connection")
        if not self.closed:
            self.do_close(ConnectionLostError("connection closed by the client"))

    def _abort(self) -> None:
        self._abortCall = None
        if self.transport is not None:
            log.warn("AMQP connection did not close in time; aborting it")
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        lost = reason.value if reason.value is not None else ConnectionDone()
        self._lostReason = lost
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        self._abortCall = None
        super().connectionLost(reason)
        waiters, self._disconnectWaiters = self._disconnectWaiters, []
        for waiter in waiters:
            waiter.callback(lost)


# ---------------------------------------------------------------------------
# Factory


class AMQPClientFactory(Factory):
    """
    Build L{AMQPConnection}s.  Suitable for C{endpoint.connect(factory)}
    and for C{twisted.application.internet.ClientService}; once connected,
    call L{AMQPConnection.start}.
    """

    protocol = AMQPConnection
    # no "Starting factory" line at every reconnection
    noisy = False

    def __init__(
        self,
        spec: Any = None,
        vhost: str = "/",
        heartbeat: int = 30,
        connectionName: str | None = None,
        clock: Any = None,
    ) -> None:
        """
        @param spec: a loaded txAMQP spec, or the path of a spec file, or
            C{None} for L{loadSpec}.
        @param vhost: the virtual host to open.
        @param heartbeat: the heartbeat interval wanted, in seconds (the
            broker's value wins if lower; C{0} disables heartbeats).
        @param connectionName: the name the broker shows for connections;
            required.
        @param clock: an C{IReactorTime}, by default the global reactor.
        """
        if not connectionName:
            raise TypeError("AMQPClientFactory needs a connectionName")
        if spec is None:
            spec = loadSpec()
        elif isinstance(spec, str):
            spec = txspec.load(spec)
        self.spec = spec
        self.vhost = vhost
        self.heartbeat = heartbeat
        self.connectionName = connectionName
        self.clock = clock

    def set_vhost(self, vhost: str) -> None:
        """txAMQP's API (used by C{AMQEndpoint})."""
        self.vhost = vhost

    def set_heartbeat(self, heartbeat: int) -> None:
        """txAMQP's API (used by C{AMQEndpoint})."""
        self.heartbeat = heartbeat

    def buildProtocol(self, addr: Any) -> AMQPConnection:
        protocol = AMQPConnection(
            AMQPDelegate(),
            vhost=self.vhost,
            spec=self.spec,
            heartbeat=self.heartbeat,
            clock=self.clock,
            connectionName=self.connectionName,
        )
        protocol.factory = self
        return protocol


__all__ = [
    "AMQPChannel",
    "AMQPClientFactory",
    "AMQPConnection",
    "AMQPDelegate",
    "AMQPError",
    "AuthenticationError",
    "ChannelClosedError",
    "ConnectionLostError",
    "Consumer",
    "ConsumerCancelled",
    "PublishNacked",
    "UndecodableTable",
    "UnknownPropertyError",
    "decodeTable",
    "encodeTable",
    "loadSpec",
    "mapProperties",
    "pythonProperties",
]
