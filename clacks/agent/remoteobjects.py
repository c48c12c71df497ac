# -*- test-case-name: tests.test_remoteobjects -*-
"""
Remote objects: instances of the object registry's classes, opened by a
caller and used through commands.

A reference (C{"<node>/<id>"}) belongs to the caller that opened it; the
node that holds it serves every call on it, wherever the call arrives.
References idle for C{[agent] object-timeout} seconds are closed.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from zope.interface import implementer

from clacks.agent.commands import CallContext
from clacks.agent.dispatch import onNode
from clacks.common.components.command import Command
from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler
from clacks.common.jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    NODE_UNAVAILABLE,
    PERMISSION_DENIED,
    Request,
    RPCError,
)
from clacks.interfaces import IAgentContext


@attrs.define(eq=False)
class _Reference:
    ref: str
    oid: str
    owner: str | None
    instance: Any
    expiry: IDelayedCall | None = None


def _public(instance: Any) -> tuple[list[str], list[str]]:
    properties: list[str] = []
    methods: list[str] = []
    for name in dir(instance):
        # close() belongs to the manager (closeObject), not to callers.
        if name.startswith("_") or name == "close":
            continue
        try:
            value = getattr(instance, name)
        except Exception:
            continue
        (methods if callable(value) else properties).append(name)
    return properties, methods


@implementer(IInterfaceHandler)
class ObjectManager(Plugin):
    """
    The remote-object commands: C{listObjectOIDs}, C{openObject},
    C{getObjectProperty}, C{setObjectProperty}, C{dispatchObjectMethod},
    C{closeObject}.
    """

    _priority_ = 5
    _target_ = "objects"

    def __init__(self, context: IAgentContext) -> None:
        super().__init__(context)
        self._refs: dict[str, _Reference] = {}
        self.timeout = context.config.agent.objectTimeout

    @property
    def node(self) -> str:
        return str(self.context.config.core.id)

    def serve(self) -> None:
        pass

    def stop(self) -> None:
        for ref in list(self._refs):
            self._close(ref, "the agent stops")

    # Routing

    def _directory(self) -> Any:
        plugins = self.context.plugins
        return plugins.get("NodeDirectory").directory if "NodeDirectory" in plugins else None

    def _forward(
        self, node: str, method: str, params: list[Any], user: str | None
    ) -> Deferred[Any]:
        plugins = self.context.plugins
        dispatcher = plugins.get("AMQPHandler").dispatcher if "AMQPHandler" in plugins else None
        if dispatcher is None:
            raise RPCError(NODE_UNAVAILABLE, f"node {node!r} cannot be reached from here")
        request = Request(method=method, params=params, id=1)
        result: Deferred[Any] = dispatcher.dispatch(request, CallContext(user=user), onNode(node))
        return result

    def _holder(self, ref: str) -> str:
        if not isinstance(ref, str) or "/" not in ref:
            raise RPCError(INVALID_PARAMS, f"{ref!r} is not an object reference (node/id)")
        return ref.rsplit("/", 1)[0]

    def _local(self, ref: str, user: str | None) -> _Reference:
        entry = self._refs.get(ref)
        if entry is None:
            raise RPCError(
                INVALID_PARAMS, f"no open object {ref!r} (closed, expired, or never opened)"
            )
        if entry.owner != user:
            self.log.warn(
                "Denied: user {user} used object {ref} of user {owner} on node {node}",
                user=user,
                ref=ref,
                owner=entry.owner,
                node=self.node,
            )
            raise RPCError(PERMISSION_DENIED, f"object {ref!r} belongs to another user")
        self._touch(entry)
        return entry

    def _touch(self, entry: _Reference) -> None:
        if entry.expiry is not None and entry.expiry.active():
            entry.expiry.reset(self.timeout)
        else:
            entry.expiry = self.context.reactor.callLater(
                self.timeout, self._close, entry.ref, "idle for too long"
            )

    def _close(self, ref: str, why: str) -> None:
        entry = self._refs.pop(ref, None)
        if entry is None:
            return
        if entry.expiry is not None and entry.expiry.active():
            entry.expiry.cancel()
        self.log.info("Closed object {ref} ({oid}): {why}", ref=ref, oid=entry.oid, why=why)
        close = getattr(entry.instance, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                self.log.failure("Closing object {ref} failed", ref=ref)

    @property
    def openCount(self) -> int:
        return len(self._refs)

    # Commands

    @Command(__help__="List the OIDs of the object classes the domain provides.")
    def listObjectOIDs(self) -> list[str]:
        oids = set(self.context.objects.oids())
        directory = self._directory()
        if directory is not None:
            for info in directory.reachable():
                oids.update(info.objects)
        return sorted(oids)

    @Command(
        __help__="Open an object of class OID with ARGS on a node that provides it; "
        "returns a reference (only you can use it) with its properties and methods.",
        needsUser=True,
    )
    def openObject(self, oid: str, *args: Any, user: str | None = None) -> Any:
        if user is None:
            # An anonymous reference could be used by every anonymous caller.
            raise RPCError(
                PERMISSION_DENIED, "remote objects need an authenticated caller (AMQP user_id)"
            )
        if oid not in self.context.objects:
            directory = self._directory()
            providers = [
                i.node for i in (directory.reachable() if directory else []) if oid in i.objects
            ]
            if not providers:
                raise RPCError(METHOD_NOT_FOUND, f"no node of the domain provides object {oid!r}")
            return self._forward(providers[0], "openObject", [oid, *args], user)
        cls = self.context.objects.get(oid)
        try:
            instance = cls(*args)
        except TypeError as e:
            raise RPCError(INVALID_PARAMS, f"{oid}: {e}") from None
        ref = f"{self.node}/{uuid.uuid4().hex}"
        entry = _Reference(ref, oid, user, instance)
        self._refs[ref] = entry
        self._touch(entry)
        properties, methods = _public(instance)
        return {
            "ref": ref,
            "oid": oid,
            "node": self.node,
            "properties": properties,
            "methods": methods,
        }

    @Command(__help__="Read property NAME of the object REF.", needsUser=True)
    def getObjectProperty(self, ref: str, name: str, user: str | None = None) -> Any:
        holder = self._holder(ref)
        if holder != self.node:
            return self._forward(holder, "getObjectProperty", [ref, name], user)
        entry = self._local(ref, user)
        properties, _ = _public(entry.instance)
        if name not in properties:
            raise RPCError(INVALID_PARAMS, f"{entry.oid} has no property {name!r}")
        return getattr(entry.instance, name)

    @Command(__help__="Set property NAME of the object REF to VALUE.", needsUser=True)
    def setObjectProperty(self, ref: str, name: str, value: Any, user: str | None = None) -> Any:
        holder = self._holder(ref)
        if holder != self.node:
            return self._forward(holder, "setObjectProperty", [ref, name, value], user)
        entry = self._local(ref, user)
        properties, _ = _public(entry.instance)
        if name not in properties:
            raise RPCError(INVALID_PARAMS, f"{entry.oid} has no property {name!r}")
        setattr(entry.instance, name, value)
        return None

    @Command(__help__="Call METHOD of the object REF with ARGS.", needsUser=True)
    def dispatchObjectMethod(
        self, ref: str, method: str, *args: Any, user: str | None = None
    ) -> Any:
        holder = self._holder(ref)
        if holder != self.node:
            return self._forward(holder, "dispatchObjectMethod", [ref, method, *args], user)
        entry = self._local(ref, user)
        _, methods = _public(entry.instance)
        if method not in methods:
            raise RPCError(METHOD_NOT_FOUND, f"{entry.oid} has no method {method!r}")
        return maybeDeferred(getattr(entry.instance, method), *args)

    @Command(__help__="Close the object REF.", needsUser=True)
    def closeObject(self, ref: str, user: str | None = None) -> Any:
        holder = self._holder(ref)
        if holder != self.node:
            return self._forward(holder, "closeObject", [ref], user)
        self._local(ref, user)
        self._close(ref, "closed by its owner")
        return None


__all__ = ["ObjectManager"]
