"""
Generate C{amqp0-9-1.xml}, the AMQP 0-9-1 definition that txAMQP loads.

txAMQP 0.8.2 ships no protocol definition; it needs an XML file in the
format of the historical AMQP working-group specification.  This script
writes one from U{pamqp<https://pypi.org/project/pamqp/>}'s own
definitions: every C{pamqp.commands} method class carries its class and
method ids, its field names in wire order and their AMQP types, whether it
is synchronous and what its replies are.  pamqp is generated from
RabbitMQ's extended 0-9-1 specification, so the result includes RabbitMQ's
extensions (the C{confirm} class, C{basic.nack}, C{exchange.bind} and
C{unbind}, the C{auto-delete} and C{internal} bits of C{exchange.declare},
C{connection.blocked} and C{unblocked}, C{connection.update-secret}).

pamqp names fields the Python way and gives reserved fields their
historical names (C{ticket}, C{insist}, ...).  They are renamed here to the
0-9-1 names (C{reserved-1}, C{no-wait}, C{global}, C{type}, ...), which are
what txAMQP turns into keyword arguments (C{no_wait}, C{reserved_1}).  The
only deliberate deviation from RabbitMQ's file: its C{confirm.select} calls
its bit C{nowait}; it is C{no-wait} here, like every other method.

Run it from the repository root and commit the output::

    python -m clacks.handlers.amqp.spec.generate \\
        > clacks/handlers/amqp/spec/amqp0-9-1.xml
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO
from xml.sax.saxutils import quoteattr

from pamqp import commands, constants, exceptions

#: (class, method, pamqp attribute) -> 0-9-1 field name, for fields that
#: pamqp names differently from the specification.
FIELD_RENAMES: dict[tuple[str, str, str], str] = {
    ("connection", "open", "capabilities"): "reserved-1",
    ("connection", "open", "insist"): "reserved-2",
    ("connection", "open-ok", "known_hosts"): "reserved-1",
    ("channel", "open", "out_of_band"): "reserved-1",
    ("channel", "open-ok", "channel_id"): "reserved-1",
    ("basic", "get-empty", "cluster_id"): "reserved-1",
    ("exchange", "declare", "exchange_type"): "type",
}

#: pamqp attribute -> 0-9-1 field name, whatever the method.
GLOBAL_RENAMES: dict[str, str] = {
    "ticket": "reserved-1",
    "nowait": "no-wait",
    "global_": "global",
}

#: pamqp attribute of C{Basic.Properties} -> 0-9-1 property name.
PROPERTY_RENAMES: dict[str, str] = {"message_type": "type"}

#: Fields whose 0-9-1 definition uses a named domain rather than a type.
FIELD_DOMAINS: dict[str, str] = {
    "class-id": "class-id",
    "client-properties": "peer-properties",
    "consumer-tag": "consumer-tag",
    "delivery-tag": "delivery-tag",
    "destination": "exchange-name",
    "exchange": "exchange-name",
    "message-count": "message-count",
    "method-id": "method-id",
    "no-ack": "no-ack",
    "no-local": "no-local",
    "no-wait": "no-wait",
    "queue": "queue-name",
    "redelivered": "redelivered",
    "reply-code": "reply-code",
    "reply-text": "reply-text",
    "server-properties": "peer-properties",
    "source": "exchange-name",
    "virtual-host": "path",
}

#: Methods that carry content (a header frame and body frames).
CONTENT_METHODS = {
    ("basic", "publish"),
    ("basic", "return"),
    ("basic", "deliver"),
    ("basic", "get-ok"),
}

PRIMITIVE_TYPES = list(constants.DATA_TYPES)


def hyphenate(name: str) -> str:
    """
    Turn a pamqp name (C{StartOk}, C{consumer_tag}) into a 0-9-1 name
    (C{start-ok}, C{consumer-tag}).
    """
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)
    return name.replace("_", "-").lower()


def _firstLine(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _amqpClasses() -> Iterator[tuple[str, Any]]:
    for name, value in vars(commands).items():
        if (
            inspect.isclass(value)
            and value.__module__ == commands.__name__
            and isinstance(getattr(value, "frame_id", None), int)
        ):
            yield hyphenate(name), value


def _methods(amqpClass: Any) -> Iterator[tuple[str, Any]]:
    for name, value in vars(amqpClass).items():
        if inspect.isclass(value) and issubclass(
            value, (commands.base.Frame, commands.base.BasicProperties)
        ):
            yield hyphenate(name), value


def _fieldName(className: str, methodName: str, attribute: str) -> str:
    key = (className, methodName, attribute)
    if key in FIELD_RENAMES:
        return FIELD_RENAMES[key]
    if attribute in GLOBAL_RENAMES:
        return GLOBAL_RENAMES[attribute]
    return hyphenate(attribute)


def _domains() -> dict[str, str]:
    domains = {name: name for name in PRIMITIVE_TYPES}
    domains.update(constants.DOMAINS)
    domains["no-wait"] = "bit"
    return domains


def _fieldXML(name: str, amqpType: str, domains: dict[str, str]) -> str:
    domain = FIELD_DOMAINS.get(name)
    if name.startswith("reserved-"):
        return f'<field name="{name}" type="{amqpType}" reserved="1"/>'
    if domain is None:
        return f'<field name="{name}" domain="{amqpType}"/>'
    if domains[domain] != amqpType:
        raise ValueError(f"field {name}: domain {domain} is not {amqpType}")
    return f'<field name="{name}" domain="{domain}"/>'


def _constants() -> Iterator[tuple[str, int, str | None]]:
    yield "frame-method", constants.FRAME_METHOD, None
    yield "frame-header", constants.FRAME_HEADER, None
    yield "frame-body", constants.FRAME_BODY, None
    yield "frame-heartbeat", constants.FRAME_HEARTBEAT, None
    yield "frame-min-size", constants.FRAME_MIN_SIZE, None
    yield "frame-end", constants.FRAME_END, None
    yield "reply-success", constants.REPLY_SUCCESS, None
    errors = []
    for error in vars(exceptions).values():
        if not (inspect.isclass(error) and issubclass(error, exceptions.AMQPError)):
            continue
        attributes = vars(error)
        if isinstance(attributes.get("value"), int):
            kind = "hard-error" if issubclass(error, exceptions.AMQPHardError) else "soft-error"
            errors.append((str(attributes["name"]).lower(), attributes["value"], kind))
    yield from sorted(errors, key=lambda item: item[1])


def generate(out: TextIO) -> None:
    """
    Write the AMQP 0-9-1 XML definition to C{out}.

    @param out: A text stream.
    """
    major, minor, revision = constants.VERSION
    domains = _domains()
    w = out.write
    w('<?xml version="1.0" encoding="utf-8"?>\n')
    w("<!--\n")
    w("  AMQP 0-9-1 with RabbitMQ's extensions, in the XML format read by\n")
    w("  txamqp.spec.load().  GENERATED by clacks/handlers/amqp/spec/generate.py\n")
    w("  from pamqp's protocol definitions: do not edit by hand.\n")
    w("-->\n")
    w(
        f'<amqp major="{major}" minor="{minor}" revision="{revision}" '
        f'port="{constants.DEFAULT_PORT}">\n'
    )
    for name, value, kind in _constants():
        klass = f' class="{kind}"' if kind else ""
        w(f'  <constant name="{name}" value="{value}"{klass}/>\n')
    w("\n")
    for name, amqpType in sorted(domains.items()):
        w(f'  <domain name="{name}" type="{amqpType}"/>\n')
    for className, amqpClass in sorted(_amqpClasses(), key=lambda item: item[1].frame_id):
        handler = "connection" if className == "connection" else "channel"
        w("\n")
        w(
            f'  <class name="{className}" handler="{handler}" '
            f'index="{amqpClass.frame_id}" label={quoteattr(_firstLine(amqpClass))}>\n'
        )
        methods = list(_methods(amqpClass))
        for methodName, method in methods:
            if methodName != "properties":
                continue
            for attribute in method.__slots__:
                name = PROPERTY_RENAMES.get(attribute, hyphenate(attribute))
                amqpType = method.amqp_type(attribute)
                w(f'    <field name="{name}" domain="{amqpType}"/>\n')
        for methodName, method in methods:
            if methodName == "properties":
                continue
            attributes = [f' index="{method.frame_id}"']
            if method.synchronous:
                attributes.append(' synchronous="1"')
            if (className, methodName) in CONTENT_METHODS:
                attributes.append(' content="1"')
            label = quoteattr(_firstLine(method))
            w(f'    <method name="{methodName}"{"".join(attributes)} label={label}>\n')
            for response in method.valid_responses:
                responseName = hyphenate(response.split(".", 1)[1])
                w(f'      <response name="{responseName}"/>\n')
            for attribute in method.__slots__:
                name = _fieldName(className, methodName, attribute)
                field = _fieldXML(name, method.amqp_type(attribute), domains)
                w(f"      {field}\n")
            w("    </method>\n")
        w("  </class>\n")
    w("</amqp>\n")


if __name__ == "__main__":
    generate(sys.stdout)
