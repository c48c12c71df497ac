# -*- test-case-name: tests.test_jsonrpc -*-
"""
JSON-RPC 2.0 messages: parsing requests within limits, encoding responses,
and the error codes clacks uses.

Nothing here raises on bad input: L{parseRequests} turns every problem into
an L{RPCError} with the code JSON-RPC prescribes and a message that says
what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: The command raised; C{data} has the exception type (and the traceback
#: when the agent runs with C{[core] debug}).
COMMAND_ERROR = -32000
#: The call's deadline passed, before it started or while it ran.
TIMEOUT = -32001
#: The caller may not call this command (ACL).
PERMISSION_DENIED = -32002
#: The node asked for is not (or no longer) in the domain.
NODE_UNAVAILABLE = -32003

ERROR_NAMES = {
    PARSE_ERROR: "parse error",
    INVALID_REQUEST: "invalid request",
    METHOD_NOT_FOUND: "method not found",
    INVALID_PARAMS: "invalid params",
    INTERNAL_ERROR: "internal error",
    COMMAND_ERROR: "command error",
    TIMEOUT: "timeout",
    PERMISSION_DENIED: "permission denied",
    NODE_UNAVAILABLE: "node unavailable",
}

JSON_CONTENT_TYPE = "application/json"

Id = str | int | None


class RPCError(Exception):
    """
    A JSON-RPC error: raise it from anywhere in the call path to answer the
    caller with it.

    @ivar code: the JSON-RPC error code.
    @ivar message: one line for the caller.
    @ivar data: optional JSON-ready details.
    @ivar id: the request id, when known.
    """

    def __init__(self, code: int, message: str, data: Any = None, id: Id = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.id = id

    def toJSON(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def __repr__(self) -> str:
        return f"RPCError({self.code}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RPCError):
            return NotImplemented
        return (self.code, self.message, self.data) == (other.code, other.message, other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.message))


@attrs.frozen
class Limits:
    """
    What a request may be.

    @ivar maxBytes: body size.
    @ivar maxDepth: nesting of arrays and objects.
    @ivar maxParams: number of parameters of one call.
    @ivar maxBatch: number of calls in one batch.
    """

    maxBytes: int = 1024 * 1024
    maxDepth: int = 32
    maxParams: int = 64
    maxBatch: int = 100


DEFAULT_LIMITS = Limits()


@attrs.frozen
class Request:
    """
    One call.

    @ivar method: the command name.
    @ivar params: positional (list) or named (dict) arguments.
    @ivar id: the request id; C{None} for a notification (no answer).
    @ivar notification: whether it had no C{id} member at all.
    """

    method: str
    params: list[Any] | dict[str, Any] = attrs.field(factory=list)
    id: Id = None
    notification: bool = False

    def toJSON(self) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": self.method, "params": self.params}
        if not self.notification:
            body["id"] = self.id
        return body


@attrs.frozen
class Parsed:
    """
    What L{parseRequests} found: the calls (or the error for each bad one)
    and whether they came as a batch.
    """

    items: list[Request | RPCError]
    batch: bool = False


def _depth(value: Any, limit: int) -> bool:
    """
    @return: whether C{value} nests deeper than C{limit} (iterative, so a
        deep value cannot exhaust the stack here).
    """
    # Only containers go on the stack: scalars cannot nest (this runs on
    # every request and every reply).
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def loadJSON(body: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """
    Decode C{body} within C{limits}.

    @raise RPCError: L{PARSE_ERROR} or L{INVALID_REQUEST}, saying why.
    """
    if len(body) > limits.maxBytes:
        raise RPCError(
            INVALID_REQUEST,
            f"request is {len(body)} bytes; the limit is {limits.maxBytes}",
            {"limit": "maxBytes", "value": limits.maxBytes},
        )
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        value = json.loads(text)
    except UnicodeDecodeError as e:
        raise RPCError(
            PARSE_ERROR, f"request is not UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    except RecursionError:
        raise RPCError(
            INVALID_REQUEST,
            f"request nests deeper than {limits.maxDepth} levels",
            {"limit": "maxDepth", "value": limits.maxDepth},
        ) from None
    except ValueError as e:
        raise RPCError(PARSE_ERROR, f"request is not valid JSON: {e}") from None
    if _depth(value, limits.maxDepth + 1):
        raise RPCError(
            INVALID_REQUEST,
            f"request nests deeper than {limits.maxDepth} levels",
            {"limit": "maxDepth", "value": limits.maxDepth},
        )
    return value


def _validId(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


def requestFromJSON(value: Any, limits: Limits = DEFAULT_LIMITS) -> Request:
    """
    @raise RPCError: L{INVALID_REQUEST} saying what is wrong, with the id
        when it could be read.
    """
    if not isinstance(value, dict):
        raise RPCError(INVALID_REQUEST, f"a request is a JSON object, not {_kind(value)}")
    id = value.get("id")
    if not _validId(id):
        kind = "a number with a fraction" if isinstance(id, float) else _kind(id)
        raise RPCError(INVALID_REQUEST, f"'id' must be a string, an integer or null, not {kind}")
    if value.get("jsonrpc") != "2.0":
        raise RPCError(INVALID_REQUEST, "'jsonrpc' must be \"2.0\"", id=id)
    method = value.get("method")
    if not isinstance(method, str) or not method:
        raise RPCError(INVALID_REQUEST, "'method' must be a non-empty string", id=id)
    params = value.get("params", [])
    if not isinstance(params, list | dict):
        raise RPCError(
            INVALID_REQUEST, f"'params' must be an array or an object, not {_kind(params)}", id=id
        )
    if len(params) > limits.maxParams:
        raise RPCError(
            INVALID_REQUEST,
            f"{len(params)} parameters; the limit is {limits.maxParams}",
            {"limit": "maxParams", "value": limits.maxParams},
            id=id,
        )
    unknown = set(value) - {"jsonrpc", "method", "params", "id"}
    if unknown:
        raise RPCError(INVALID_REQUEST, f"unknown members: {', '.join(sorted(unknown))}", id=id)
    return Request(method=method, params=params, id=id, notification="id" not in value)


def parseRequests(body: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    """
    Parse a request or a batch.  Never raises: what is wrong becomes an
    L{RPCError} item (a single one for a body that is not JSON at all).
    """
    try:
        value = loadJSON(body, limits)
    except RPCError as e:
        return Parsed([e])
    if isinstance(value, list):
        if not value:
            return Parsed([RPCError(INVALID_REQUEST, "an empty batch has no calls")])
        if len(value) > limits.maxBatch:
            return Parsed(
                [
                    RPCError(
                        INVALID_REQUEST,
                        f"batch of {len(value)} calls; the limit is {limits.maxBatch}",
                        {"limit": "maxBatch", "value": limits.maxBatch},
                    )
                ]
            )
        return Parsed([_item(v, limits) for v in value], batch=True)
    return Parsed([_item(value, limits)])


def _item(value: Any, limits: Limits) -> Request | RPCError:
    try:
        return requestFromJSON(value, limits)
    except RPCError as e:
        return e


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def dumps(value: Any) -> bytes:
    """
    @return: C{value} as compact UTF-8 JSON.
    @raise TypeError: if it has no JSON form (a set, an object).
    @raise ValueError: if it holds NaN or an infinity.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows "\ud800", so a request can carry one)
        # has no UTF-8 form: write it, like every non-ASCII character, as an
        # escape instead.
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def resultResponse(id: Id, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "result": result}


def errorResponse(id: Id, error: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "error": error.toJSON()}


def encodeResponses(responses: list[dict[str, Any]], batch: bool) -> bytes:
    """
    @return: the reply body; a response that has no JSON form (a plugin's
        error with odd C{data}, say) becomes an internal error instead of
        failing the whole reply.
    """
    encoded = []
    for response in responses:
        try:
            dumps(response)
        except (TypeError, ValueError) as e:
            error = RPCError(INTERNAL_ERROR, f"the answer has no JSON form: {e}")
            response = errorResponse(response.get("id"), error)
        encoded.append(response)
    return dumps(encoded if batch else encoded[0])


@attrs.frozen
class Response:
    """
    A parsed response: C{error} is set, or C{result} is the answer.
    """

    id: Id
    result: Any = None
    error: RPCError | None = None


#: What a response may be: bigger and deeper than a request (made once, not
#: per reply).
RESPONSE_LIMITS = Limits(maxBytes=256 * 1024 * 1024, maxDepth=512)


def parseResponse(body: bytes | str) -> Response:
    """
    @raise RPCError: L{PARSE_ERROR} or L{INVALID_REQUEST} if C{body} is not
        a JSON-RPC 2.0 response.
    """
    value = loadJSON(body, RESPONSE_LIMITS)
    if not isinstance(value, dict) or value.get("jsonrpc") != "2.0" or "id" not in value:
        raise RPCError(INVALID_REQUEST, "not a JSON-RPC 2.0 response")
    error = value.get("error")
    if error is not None:
        if not isinstance(error, Mapping) or not isinstance(error.get("code"), int):
            raise RPCError(INVALID_REQUEST, "malformed 'error' member in response")
        return Response(
            value["id"],
            error=RPCError(error["code"], str(error.get("message", "")), error.get("data")),
        )
    if "result" not in value:
        raise RPCError(INVALID_REQUEST, "response has neither 'result' nor 'error'")
    return Response(value["id"], result=value["result"])


__all__ = [
    "COMMAND_ERROR",
    "DEFAULT_LIMITS",
    "ERROR_NAMES",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "JSON_CONTENT_TYPE",
    "Limits",
    "METHOD_NOT_FOUND",
    "NODE_UNAVAILABLE",
    "PARSE_ERROR",
    "PERMISSION_DENIED",
    "Parsed",
    "RPCError",
    "Request",
    "Response",
    "TIMEOUT",
    "dumps",
    "encodeResponses",
    "errorResponse",
    "loadJSON",
    "parseRequests",
    "parseResponse",
    "requestFromJSON",
    "resultResponse",
]
