# -*- test-case-name: tests.test_http_rpc -*-
"""
JSON-RPC 2.0 over HTTP: C{POST [http] path} (default C{/rpc}).

Callers authenticate with HTTP Basic (a user of the users file) or a bearer
token from the same file.  C{?node=ID} runs the call on that node,
C{?all=1} on every node; otherwise any node that provides the command runs
it.  Calls for other nodes travel over the bus with the caller's identity.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from clacks.agent.commands import CallContext
from clacks.agent.dispatch import ALL, ANY, DEFAULT_TIMEOUT, Target, onNode
from clacks.agent.users import Principal, UserStore
from clacks.common.components._discovery import describeException
from clacks.common.jsonrpc import (
    DEFAULT_LIMITS,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    JSON_CONTENT_TYPE,
    Limits,
    RPCError,
    dumps,
    encodeResponses,
    errorResponse,
    parseRequests,
    resultResponse,
)

CHALLENGE = b'Basic realm="clacks", charset="UTF-8", Bearer realm="clacks"'
TIMEOUT_HEADER = b"x-clacks-timeout"


def _credentials(header: bytes | None) -> tuple[str, str, str] | None:
    """
    @return: C{("basic", user, password)} or C{("bearer", token, "")}.
    """
    if not header:
        return None
    scheme, _, value = header.partition(b" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == b"bearer" and value:
        return ("bearer", value.decode("ascii", "replace"), "")
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if sep:
            return ("basic", user, password)
    return None


class JSONRPCResource(Resource):
    """
    @param dispatcher: returns the agent's L{Dispatcher} (it exists once the
        AMQP handler serves).
    @param users: the users file; C{None} closes the endpoint (every call
        gets 401) because HTTP calls must be authenticated.
    @param stats: the agent's counters: requests refused as malformed or
        over a limit are counted in its C{refused} (C{NodeStatus.refused}).
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        dispatcher: Any,
        users: UserStore | None,
        clock: Any,
        limits: Limits = DEFAULT_LIMITS,
        stats: Any = None,
    ) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._users = users
        self._clock = clock
        self._limits = limits
        self._stats = stats

    def _countRefused(self) -> None:
        if self._stats is not None:
            self._stats.refused += 1

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return self._json(request, errorResponse(None, RPCError(INVALID_REQUEST, "use POST")))

    def render_POST(self, request: Request) -> Any:
        self._handle(request)
        return NOT_DONE_YET

    def _json(self, request: Request, body: Any) -> bytes:
        request.setHeader(b"content-type", JSON_CONTENT_TYPE.encode())
        request.setHeader(b"cache-control", b"no-store")
        return dumps(body)

    def _finish(self, request: Request, code: int, body: Any) -> None:
        if request.finished or request._disconnected:
            return
        request.setResponseCode(code)
        if body is None:
            request.finish()
            return
        if isinstance(body, bytes):
            request.setHeader(b"content-type", JSON_CONTENT_TYPE.encode())
            request.setHeader(b"cache-control", b"no-store")
        else:
            body = self._json(request, body)
        # With its length known the response goes out in one write, not
        # chunked (the chunk framing cost as much as the call itself).
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()

    def _unauthorized(self, request: Request, why: str) -> None:
        request.setHeader(b"www-authenticate", CHALLENGE)
        self._finish(request, 401, errorResponse(None, RPCError(INVALID_REQUEST, why)))

    def _authenticate(self, request: Request) -> Any:
        """
        @return: the L{Principal} or C{None}, at once for a bearer token,
            or a Deferred of it for a password (bcrypt runs in a thread).
        """
        credentials = _credentials(request.getHeader(b"authorization"))
        if credentials is None or self._users is None:
            return None
        kind, who, secret = credentials
        if kind == "bearer":
            return self._users.authenticateToken(who)
        return self._users.authenticatePassword(who, secret)

    def _target(self, request: Request) -> Target:
        args = request.args or {}
        node = args.get(b"node", [b""])[0].decode("utf-8", "replace")
        if node:
            return onNode(node)
        if args.get(b"all", [b""])[0] in (b"1", b"true", b"yes"):
            return ALL
        return ANY

    def _deadline(self, request: Request) -> float:
        raw = request.getHeader(TIMEOUT_HEADER)
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            timeout = DEFAULT_TIMEOUT
        return float(self._clock.seconds()) + max(0.001, min(timeout, 3600.0))

    def _handle(self, request: Request) -> None:
        self._serve(request).addErrback(self._failed, request)

    def _failed(self, failure: Failure, request: Request) -> Failure | None:
        if not isinstance(failure.value, Exception):
            return failure
        self.log.failure("HTTP JSON-RPC request failed", failure)
        self._finish(
            request,
            500,
            errorResponse(None, RPCError(INTERNAL_ERROR, describeException(failure.value))),
        )
        return None

    @inlineCallbacks
    def _serve(self, request: Request) -> Any:
        if self._users is None:
            self.log.warn("HTTP JSON-RPC call refused: no users file ([core] users)")
            self._unauthorized(request, "HTTP JSON-RPC needs a users file on this agent")
            return
        principal: Principal | None = self._authenticate(request)
        if isinstance(principal, Deferred):
            principal = yield principal
        if principal is None:
            credentials = _credentials(request.getHeader(b"authorization"))
            if credentials is not None:
                self.log.warn(
                    "HTTP login refused for {who} from {peer}",
                    who=credentials[1] if credentials[0] == "basic" else "a bearer token",
                    peer=getattr(request.getClientAddress(), "host", "?"),
                )
            self._unauthorized(request, "authentication required: HTTP Basic or a bearer token")
            return
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.maxBytes:
            error = RPCError(
                INVALID_REQUEST,
                f"request is {int(length)} bytes; the limit is {self._limits.maxBytes}",
                {"limit": "maxBytes", "value": self._limits.maxBytes},
            )
            self._countRefused()
            self._finish(request, 413, errorResponse(None, error))
            return
        contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip()
        if contentType not in (b"", JSON_CONTENT_TYPE.encode()):
            error = RPCError(
                INVALID_REQUEST,
                f"content type {contentType.decode('latin-1')!r}: requests are {JSON_CONTENT_TYPE}",
            )
            self._countRefused()
            self._finish(request, 415, errorResponse(None, error))
            return
        assert request.content is not None
        body = request.content.read(self._limits.maxBytes + 1)
        parsed = parseRequests(body, self._limits)
        dispatcher = self._dispatcher()
        context = CallContext(user=principal.user, queue="http", deadline=self._deadline(request))
        target = self._target(request)
        responses = []
        for item in parsed.items:
            if isinstance(item, RPCError):
                self._countRefused()
                responses.append(errorResponse(item.id, item))
                continue
            if dispatcher is None:
                error = RPCError(INTERNAL_ERROR, "this agent serves no commands (no dispatcher)")
                responses.append(errorResponse(item.id, error))
                continue
            try:
                result = yield dispatcher.dispatch(item, context, target)
            except RPCError as e:
                if not item.notification:
                    responses.append(errorResponse(item.id, e))
                continue
            if not item.notification:
                responses.append(resultResponse(item.id, result))
        if not responses:
            self._finish(request, 204, None)
            return
        self._finish(request, 200, encodeResponses(responses, parsed.batch))


__all__ = ["JSONRPCResource"]
