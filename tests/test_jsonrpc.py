"""
Tests for L{clacks.common.jsonrpc}: parsing requests within limits, the
error code of every way a request can be wrong, responses, and encoding.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from clacks.common.jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Limits,
    Parsed,
    Request,
    Response,
    RPCError,
    dumps,
    errorResponse,
    parseRequests,
    parseResponse,
    resultResponse,
)


def call(method: str = "greet", **members: Any) -> dict[str, Any]:
    """
    @return: a valid request object for C{method}, with C{members} added or
        replaced.
    """
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": ["Ada"], "id": 1}
    body.update(members)
    return body


def nested(levels: int) -> Any:
    """
    @return: C{levels} arrays, one in the other, around a 1.
    """
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


class ParseErrorTests(SynchronousTestCase):
    """
    A body that cannot be read as JSON at all is one PARSE_ERROR.
    """

    def test_notJSON(self) -> None:
        """
        Text that is not JSON gives a single PARSE_ERROR saying so; it is not
        a batch, and no id could be read.
        """
        parsed = parseRequests(b'{"jsonrpc": "2.0", "method": ')
        [error] = parsed.items
        assert isinstance(error, RPCError)
        self.assertEqual(error.code, PARSE_ERROR)
        self.assertIn("not valid JSON", error.message)
        self.assertIsNone(error.id)
        self.assertFalse(parsed.batch)

    def test_notUTF8(self) -> None:
        """
        Bytes that are not UTF-8 give a PARSE_ERROR that says so and where.
        """
        [error] = parseRequests(b'{"method": "\xff"}').items
        assert isinstance(error, RPCError)
        self.assertEqual(error.code, PARSE_ERROR)
        self.assertIn("not UTF-8", error.message)
        self.assertIn("at byte 12", error.message)

    def test_emptyBody(self) -> None:
        """
        An empty body is not JSON: PARSE_ERROR.
        """
        [error] = parseRequests(b"").items
        assert isinstance(error, RPCError)
        self.assertEqual(error.code, PARSE_ERROR)

    def test_strBody(self) -> None:
        """
        A body already decoded to C{str} is parsed the same way as bytes.
        """
        self.assertEqual(
            parseRequests(json.dumps(call())),
            parseRequests(json.dumps(call()).encode("utf-8")),
        )


class InvalidRequestTests(SynchronousTestCase):
    """
    JSON that is not a valid request gives INVALID_REQUEST with a message
    saying what is wrong, keeping the id whenever it could be read.
    """

    def assertInvalid(self, value: Any, fragment: str, id: Any = None) -> RPCError:
        """
        Assert that C{value}, sent alone, gives one INVALID_REQUEST whose
        message contains C{fragment} and whose id is C{id}.

        @return: the error.
        """
        parsed = parseRequests(json.dumps(value).encode("utf-8"))
        self.assertFalse(parsed.batch)
        [error] = parsed.items
        assert isinstance(error, RPCError), error
        self.assertEqual(error.code, INVALID_REQUEST)
        self.assertIn(fragment, error.message)
        self.assertEqual(error.id, id)
        return error

    def test_notAnObject(self) -> None:
        """
        A request that is a string, number or null is refused, naming what
        it was instead of an object.
        """
        self.assertInvalid("greet", "not a string")
        self.assertInvalid(42, "not a number")
        self.assertInvalid(None, "not null")

    def test_badVersion(self) -> None:
        """
        A C{jsonrpc} member other than C{"2.0"} (or none) is refused, with
        the request's id.
        """
        self.assertInvalid(call(jsonrpc="1.0"), "'jsonrpc' must be \"2.0\"", id=1)
        self.assertInvalid(call(jsonrpc=2.0), "'jsonrpc'", id=1)
        body = call(id="a")
        del body["jsonrpc"]
        self.assertInvalid(body, "'jsonrpc'", id="a")

    def test_missingMethod(self) -> None:
        """
        A request without a C{method} is refused, with its id.
        """
        body = call(id=7)
        del body["method"]
        self.assertInvalid(body, "'method' must be a non-empty string", id=7)

    def test_emptyMethod(self) -> None:
        """
        An empty method name, or one that is not a string, is refused.
        """
        self.assertInvalid(call(method=""), "'method'", id=1)
        self.assertInvalid(call(method=3), "'method'", id=1)

    def test_badParamsType(self) -> None:
        """
        C{params} that are neither an array nor an object are refused,
        naming what they were.
        """
        error = self.assertInvalid(call(params="Ada"), "'params' must be an array or an object", 1)
        self.assertIn("not a string", error.message)
        self.assertInvalid(call(params=None), "not null", id=1)

    def test_noParams(self) -> None:
        """
        A request without C{params} is valid and has no parameters.
        """
        body = call()
        del body["params"]
        [request] = parseRequests(json.dumps(body)).items
        self.assertEqual(request, Request("greet", [], id=1))

    def test_boolId(self) -> None:
        """
        A boolean id is refused although Python counts C{True} as an int;
        the error carries no id, since the one given is not usable.
        """
        self.assertInvalid(call(id=True), "not a boolean", id=None)

    def test_badIdTypes(self) -> None:
        """
        An id that is an array, an object or a number with a fraction is
        refused, saying what it was.
        """
        self.assertInvalid(call(id=[1]), "not an array")
        self.assertInvalid(call(id={"a": 1}), "not an object")
        error = self.assertInvalid(call(id=1.5), "'id' must be a string, an integer or null")
        self.assertIn("not a number with a fraction", error.message)

    def test_unknownMembers(self) -> None:
        """
        Members that JSON-RPC does not define are refused, all named,
        sorted.
        """
        self.assertInvalid(call(zeta=1, alpha=2), "unknown members: alpha, zeta", id=1)

    def test_tooManyParams(self) -> None:
        """
        More parameters than C{maxParams}, by position or by name, are
        refused with the limit in C{data}; exactly C{maxParams} is fine.
        """
        limits = Limits(maxParams=3)
        for params in ([1, 2, 3, 4], {"a": 1, "b": 2, "c": 3, "d": 4}):
            [error] = parseRequests(json.dumps(call(params=params)), limits).items
            assert isinstance(error, RPCError)
            self.assertEqual(error.code, INVALID_REQUEST)
            self.assertEqual(error.message, "4 parameters; the limit is 3")
            self.assertEqual(error.data, {"limit": "maxParams", "value": 3})
            self.assertEqual(error.id, 1)
        [request] = parseRequests(json.dumps(call(params=[1, 2, 3])), limits).items
        self.assertIsInstance(request, Request)

    def test_tooDeep(self) -> None:
        """
        A request that nests deeper than C{maxDepth} is refused with the
        limit in C{data}; the request object itself does not count, so
        params nesting exactly C{maxDepth} levels are fine.
        """
        limits = Limits(maxDepth=4)
        [ok] = parseRequests(json.dumps(call(params=nested(4))), limits).items
        self.assertEqual(ok, Request("greet", nested(4), id=1))
        [error] = parseRequests(json.dumps(call(params=nested(5))), limits).items
        assert isinstance(error, RPCError)
        self.assertEqual(error.code, INVALID_REQUEST)
        self.assertEqual(error.message, "request nests deeper than 4 levels")
        self.assertEqual(error.data, {"limit": "maxDepth", "value": 4})

    def test_deeperThanTheStack(self) -> None:
        """
        Nesting far deeper than Python's recursion limit is refused as too
        deep, not as a crash.
        """
        body = b"[" * 200000 + b"]" * 200000
        [error] = parseRequests(body).items
        assert isinstance(error, RPCError)
        self.assertEqual(error.code, INVALID_REQUEST)
        self.assertEqual(error.data, {"limit": "maxDepth", "value": 32})

    def test_tooBig(self) -> None:
        """
        A body over C{maxBytes} is refused before it is parsed (it need not
        even be JSON), with the limit in C{data}.
        """
        limits = Limits(maxBytes=10)
        [error] = parseRequests(b"x" * 11, limits).items
        assert isinstance(error, RPCError)
        self.assertEqual(error.code, INVALID_REQUEST)
        self.assertEqual(error.message, "request is 11 bytes; the limit is 10")
        self.assertEqual(error.data, {"limit": "maxBytes", "value": 10})
        [notJSON] = parseRequests(b"x" * 10, limits).items
        assert isinstance(notJSON, RPCError)
        self.assertEqual(notJSON.code, PARSE_ERROR)

    def test_emptyBatch(self) -> None:
        """
        An empty array is an empty batch: one INVALID_REQUEST, not a batch
        answer.
        """
        parsed = parseRequests(b"[]")
        self.assertEqual(parsed, Parsed([RPCError(INVALID_REQUEST, "an empty batch has no calls")]))

    def test_batchTooBig(self) -> None:
        """
        A batch of more than C{maxBatch} calls is refused as a whole, with
        the limit in C{data}; C{maxBatch} calls are fine.
        """
        limits = Limits(maxBatch=2)
        parsed = parseRequests(json.dumps([call(id=i) for i in range(3)]), limits)
        [error] = parsed.items
        assert isinstance(error, RPCError)
        self.assertEqual(error.code, INVALID_REQUEST)
        self.assertEqual(error.message, "batch of 3 calls; the limit is 2")
        self.assertEqual(error.data, {"limit": "maxBatch", "value": 2})
        parsed = parseRequests(json.dumps([call(id=i) for i in range(2)]), limits)
        self.assertEqual([r.id for r in parsed.items], [0, 1])


class NotificationTests(SynchronousTestCase):
    """
    A request without an C{id} member is a notification; one with
    C{"id": null} is an ordinary call whose id is null.
    """

    def test_noIdMember(self) -> None:
        """
        Without an C{id} member the request is a notification, and its
        JSON form has no C{id} either.
        """
        body = call()
        del body["id"]
        [request] = parseRequests(json.dumps(body)).items
        assert isinstance(request, Request)
        self.assertTrue(request.notification)
        self.assertIsNone(request.id)
        self.assertNotIn("id", request.toJSON())

    def test_nullId(self) -> None:
        """
        With C{"id": null} the request is answered (not a notification),
        and its JSON form keeps the null id.
        """
        [request] = parseRequests(json.dumps(call(id=None))).items
        assert isinstance(request, Request)
        self.assertFalse(request.notification)
        self.assertIsNone(request.id)
        self.assertEqual(request.toJSON()["id"], None)

    def test_toJSONRoundTrip(self) -> None:
        """
        A request's JSON form parses back to the same request.
        """
        for request in (
            Request("greet", ["Ada"], id="x"),
            Request("greet", {"name": "Ada"}, id=3),
            Request("greet", [], notification=True),
        ):
            self.assertEqual(parseRequests(dumps(request.toJSON())).items, [request])


class BatchTests(SynchronousTestCase):
    """
    A batch gives one item per call, in order: a L{Request} for each good
    call and an L{RPCError} for each bad one.
    """

    def test_mixed(self) -> None:
        """
        Good and bad calls of one batch are judged one by one; the errors
        keep the ids they could read.
        """
        notification = call(method="tick")
        del notification["id"]
        parsed = parseRequests(
            json.dumps([call(id=1), 5, call(id=2, method=""), notification, call(id=True)])
        )
        self.assertTrue(parsed.batch)
        first, number, noMethod, tick, boolId = parsed.items
        self.assertEqual(first, Request("greet", ["Ada"], id=1))
        assert isinstance(number, RPCError)
        self.assertEqual((number.code, number.id), (INVALID_REQUEST, None))
        assert isinstance(noMethod, RPCError)
        self.assertEqual((noMethod.code, noMethod.id), (INVALID_REQUEST, 2))
        self.assertEqual(tick, Request("tick", ["Ada"], notification=True))
        assert isinstance(boolId, RPCError)
        self.assertEqual((boolId.code, boolId.id), (INVALID_REQUEST, None))

    def test_singleCallBatch(self) -> None:
        """
        A batch of one call is still a batch (so it is answered with an
        array).
        """
        parsed = parseRequests(json.dumps([call()]))
        self.assertEqual(parsed, Parsed([Request("greet", ["Ada"], id=1)], batch=True))

    def test_limitsPerCall(self) -> None:
        """
        In a batch, C{maxParams} applies to each call, not to the batch.
        """
        limits = Limits(maxParams=2)
        parsed = parseRequests(
            json.dumps([call(id=1, params=[1, 2]), call(id=2, params=[1, 2, 3])]), limits
        )
        ok, tooMany = parsed.items
        self.assertIsInstance(ok, Request)
        assert isinstance(tooMany, RPCError)
        self.assertEqual((tooMany.id, tooMany.data["limit"]), (2, "maxParams"))


class ResponseTests(SynchronousTestCase):
    """
    L{parseResponse} reads the result or the error of a response and
    refuses what is not a JSON-RPC 2.0 response.
    """

    def test_result(self) -> None:
        """
        A result response gives the id and the result, and no error; a
        null result is a result too.
        """
        self.assertEqual(
            parseResponse(dumps(resultResponse(4, {"a": [1]}))), Response(4, result={"a": [1]})
        )
        self.assertEqual(parseResponse(dumps(resultResponse("x", None))), Response("x"))

    def test_error(self) -> None:
        """
        An error response gives an L{RPCError} with code, message and data.
        """
        error = RPCError(-32000, "ValueError: no", {"type": "ValueError"})
        response = parseResponse(dumps(errorResponse(9, error)))
        self.assertEqual(response.id, 9)
        self.assertIsNone(response.result)
        self.assertEqual(response.error, error)
        assert response.error is not None
        self.assertEqual(response.error.code, -32000)

    def assertMalformed(self, body: bytes, code: int = INVALID_REQUEST) -> RPCError:
        """
        Assert that L{parseResponse} refuses C{body} with C{code}.
        """
        error = self.assertRaises(RPCError, parseResponse, body)
        self.assertEqual(error.code, code)
        return error

    def test_malformed(self) -> None:
        """
        Bodies that are not JSON, not an object, not version 2.0, have no
        id, no result and no error, or an error without an integer code are
        refused, each with the right code.
        """
        self.assertMalformed(b"{", PARSE_ERROR)
        self.assertMalformed(b"\xff", PARSE_ERROR)
        self.assertMalformed(b"[]")
        self.assertMalformed(b'{"jsonrpc": "1.0", "id": 1, "result": 1}')
        self.assertMalformed(b'{"jsonrpc": "2.0", "result": 1}')
        error = self.assertMalformed(b'{"jsonrpc": "2.0", "id": 1}')
        self.assertIn("neither", error.message)
        error = self.assertMalformed(b'{"jsonrpc": "2.0", "id": 1, "error": {"code": "x"}}')
        self.assertIn("'error'", error.message)
        self.assertMalformed(b'{"jsonrpc": "2.0", "id": 1, "error": "bad"}')


class DumpsTests(SynchronousTestCase):
    """
    L{dumps} writes compact UTF-8 JSON and refuses what has no JSON form.
    """

    def test_compactUTF8(self) -> None:
        """
        No spaces, and non-ASCII characters as UTF-8, not escapes.
        """
        self.assertEqual(dumps({"a": [1, "é"]}), '{"a":[1,"é"]}'.encode())

    def test_refusesNaN(self) -> None:
        """
        NaN and the infinities have no JSON form: ValueError.
        """
        for value in (float("nan"), float("inf"), [float("-inf")]):
            self.assertRaises(ValueError, dumps, value)

    def test_refusesNonJSON(self) -> None:
        """
        Objects JSON cannot represent raise TypeError.
        """
        self.assertRaises(TypeError, dumps, {1, 2})
        self.assertRaises(TypeError, dumps, object())
        self.assertRaises(TypeError, dumps, {"when": b"bytes"})

    def test_loneSurrogate(self) -> None:
        """
        A lone surrogate, which a request may carry as C{"\\ud800"}, is
        written as an escape, so an error echoing it can still be sent (and
        reads back the same).
        """
        [request] = parseRequests(b'{"jsonrpc": "2.0", "method": "m", "id": "\\ud800"}').items
        assert isinstance(request, Request)
        body = dumps(resultResponse(request.id, "é"))
        self.assertEqual(json.loads(body), {"jsonrpc": "2.0", "id": "\ud800", "result": "é"})
        [error] = parseRequests(b'{"jsonrpc": "2.0", "method": "m", "\\udfff": 1}').items
        assert isinstance(error, RPCError)
        self.assertIn(
            "\udfff", json.loads(dumps(errorResponse(error.id, error)))["error"]["message"]
        )


#: Characters including lone surrogates, which JSON text can escape.
anyCharacters = st.characters(exclude_categories=())

jsonValues = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(anyCharacters),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(anyCharacters), children, max_size=4)
    ),
    max_leaves=20,
)

#: Objects shaped like requests, so that the checks past "is an object" run.
requestLike = st.dictionaries(
    st.sampled_from(["jsonrpc", "method", "params", "id", "extra"]),
    st.sampled_from(["2.0", "greet", "", "\ud800", [], {}, None, True, 1, 1.5]) | jsonValues,
)


class NeverRaisesTests(SynchronousTestCase):
    """
    L{parseRequests} turns any input into items, never an exception.
    """

    def assertItems(self, parsed: Parsed) -> None:
        """
        Assert that every item of C{parsed} is a L{Request} or an
        L{RPCError}, with a valid id, whose answer can be sent back.
        """
        self.assertTrue(parsed.items)
        for item in parsed.items:
            if isinstance(item, RPCError):
                self.assertIsInstance(item.code, int)
                dumps(errorResponse(item.id, item))
            else:
                self.assertIsInstance(item, Request)
                self.assertIsInstance(item.params, list | dict)
                self.assertTrue(item.method)
                dumps(resultResponse(item.id, item.toJSON()))
            self.assertTrue(item.id is None or type(item.id) in (str, int))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=512))
    def test_arbitraryBytes(self, body: bytes) -> None:
        """
        Any bytes give a list of requests and errors.
        """
        self.assertItems(parseRequests(body))

    @settings(max_examples=300, deadline=None)
    @given(jsonValues | requestLike | st.lists(requestLike | jsonValues, max_size=4))
    def test_arbitraryJSON(self, value: Any) -> None:
        """
        Any JSON value (requests, batches, anything else) gives a list of
        requests and errors; a non-empty array is a batch with one item per
        element.
        """
        parsed = parseRequests(json.dumps(value).encode("utf-8"))
        self.assertItems(parsed)
        if isinstance(value, list) and value:
            self.assertTrue(parsed.batch)
            self.assertEqual(len(parsed.items), len(value))
