"""
Tests for L{tests.util.proxy}, against a tiny echo server on real sockets.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.util.proxy import FaultProxy

reactor: Any = globalReactor

PROMPTLY = 2.0
"""
Seconds within which something that should happen at once must have
happened (generous: the machine may be busy).
"""


class Peer(Protocol):
    """
    One end of a test connection: records what it receives and when it is
    closed. As the server end, it echoes.

    @ivar received: every byte received so far.
    @ivar lost: fires with L{None} when the connection is closed.
    @ivar reason: why the connection was closed, once it is.
    """

    echo = False

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.isLost = False
        self._waiting: list[tuple[int, Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.echo:
            self.transport.write(data)
        still = []
        for size, waiter in self._waiting:
            if len(self.received) >= size:
                waiter.callback(self.received)
            else:
                still.append((size, waiter))
        self._waiting = still

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.isLost = True
        self.reason = reason
        self.lost.callback(None)

    def waitForBytes(self, size: int, timeout: float = 10.0) -> Deferred[bytes]:
        """
        @return: a L{Deferred} firing with L{received} once it holds at least
            C{size} bytes, failing after C{timeout} seconds.
        """
        waiter: Deferred[bytes] = Deferred()
        if len(self.received) >= size:
            waiter.callback(self.received)
        else:
            self._waiting.append((size, waiter))
        return waiter.addTimeout(timeout, reactor)

    def waitForLost(self, timeout: float = PROMPTLY) -> Deferred[None]:
        """
        @return: a L{Deferred} firing once the connection is closed, failing
            after C{timeout} seconds.
        """
        waiter: Deferred[None] = Deferred()

        def lost(result: None) -> None:
            if not waiter.called:
                waiter.callback(None)

        self.lost.addCallback(lost)
        return waiter.addTimeout(timeout, reactor)


class EchoPeer(Peer):
    echo = True


class EchoFactory(Factory):
    """
    Builds L{EchoPeer}s and keeps them, to look at the server end.
    """

    noisy = False

    def __init__(self) -> None:
        self.peers: list[EchoPeer] = []

    def buildProtocol(self, addr: Any) -> EchoPeer:
        peer = EchoPeer()
        self.peers.append(peer)
        return peer


def sleep(seconds: float) -> Deferred[None]:
    """
    @return: a L{Deferred} firing after C{seconds}, on the real reactor.
    """
    return deferLater(reactor, seconds, lambda: None)


class FaultProxyTests(TestCase):
    """
    Tests for L{FaultProxy} between a client and an echo server.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        self.echo = EchoFactory()
        listener = reactor.listenTCP(0, self.echo, interface="127.0.0.1")
        self.addCleanup(self._closeEcho, listener)
        self.proxy = FaultProxy(reactor, "127.0.0.1", listener.getHost().port)
        port = yield self.proxy.start()
        self.addCleanup(self.proxy.stop)
        self.assertEqual(port, self.proxy.port)
        self.assertIsInstance(port, int)

    @inlineCallbacks
    def _closeEcho(self, listener: Any) -> Any:
        yield listener.stopListening()
        for peer in self.echo.peers:
            if not peer.isLost:
                peer.transport.abortConnection()
                yield peer.waitForLost()

    @inlineCallbacks
    def connect(self) -> Any:
        """
        Connect a L{Peer} to the proxy; it is aborted at the end of the test.

        @return: a L{Deferred} firing with the L{Peer}.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port)
        client = yield endpoint.connect(Factory.forProtocol(Peer))
        self.addCleanup(self._abort, client)
        return client

    def _abort(self, peer: Peer) -> Deferred[None] | None:
        if peer.isLost:
            return None
        peer.transport.abortConnection()
        return peer.waitForLost()

    @inlineCallbacks
    def waitForServerPeers(self, count: int) -> Any:
        """
        Wait until the echo server has accepted C{count} connections.
        """
        for _ in range(100):
            if len(self.echo.peers) >= count:
                return
            yield sleep(0.02)
        self.fail(f"the echo server accepted {len(self.echo.peers)}, not {count}")

    @inlineCallbacks
    def test_passThrough(self) -> Any:
        """
        By default the proxy forwards both ways: the echo comes back intact,
        a large payload included.
        """
        client = yield self.connect()
        client.transport.write(b"hello")
        received = yield client.waitForBytes(5)
        self.assertEqual(received, b"hello")
        payload = bytes(range(256)) * 4096  # 1 MiB, more than any buffer
        client.transport.write(payload)
        received = yield client.waitForBytes(5 + len(payload))
        self.assertEqual(received, b"hello" + payload)
        self.assertEqual((self.proxy.connections, self.proxy.accepted), (1, 1))
        self.assertEqual(self.proxy.mode, "passThrough")

    @inlineCallbacks
    def test_upstreamPorts(self) -> Any:
        """
        L{FaultProxy.upstreamPorts} gives the local ports of the proxy's
        sockets to the target, as the target sees them.
        """
        yield self.connect()
        yield self.connect()
        yield self.waitForServerPeers(2)
        seen = sorted(peer.transport.getPeer().port for peer in self.echo.peers)
        self.assertEqual(self.proxy.upstreamPorts(), seen)

    @inlineCallbacks
    def test_closePropagates(self) -> Any:
        """
        In pass-through mode a close on one side closes the other side:
        client to server, and server to client.
        """
        first = yield self.connect()
        yield self.waitForServerPeers(1)
        first.transport.loseConnection()
        yield self.echo.peers[0].waitForLost()

        second = yield self.connect()
        yield self.waitForServerPeers(2)
        self.echo.peers[1].transport.loseConnection()
        yield second.waitForLost()
        yield sleep(0.05)
        self.assertEqual(self.proxy.connections, 0)

    @inlineCallbacks
    def test_delay(self) -> Any:
        """
        In delay mode every chunk is delivered after the delay, in each
        direction, intact and in order.
        """
        self.proxy.delay(0.2)
        client = yield self.connect()
        chunks = [b"%04d;" % (i,) for i in range(20)]
        started = reactor.seconds()
        for chunk in chunks:
            client.transport.write(chunk)
            yield sleep(0.01)
        expected = b"".join(chunks)
        received = yield client.waitForBytes(len(expected))
        elapsed = reactor.seconds() - started
        self.assertEqual(received, expected)
        # Two deliveries: to the echo server, and back.
        self.assertGreaterEqual(elapsed, 0.4)

    @inlineCallbacks
    def test_delayLong(self) -> Any:
        """
        With a long delay nothing arrives for a while; stopping the proxy then
        drops what was waiting and leaves a clean reactor.
        """
        self.proxy.delay(30)
        client = yield self.connect()
        client.transport.write(b"ping")
        yield sleep(0.5)
        self.assertEqual(client.received, b"")
        self.assertEqual([peer.received for peer in self.echo.peers], [b""])
        self.assertFalse(client.isLost)
        yield self.proxy.stop()
        yield client.waitForLost()

    @inlineCallbacks
    def test_delayExistingConnection(self) -> Any:
        """
        A change of mode applies to connections already proxied.
        """
        client = yield self.connect()
        client.transport.write(b"a")
        yield client.waitForBytes(1)
        self.proxy.delay(0.3)
        started = reactor.seconds()
        client.transport.write(b"b")
        yield sleep(0.2)
        self.assertEqual(client.received, b"a")
        yield client.waitForBytes(2)
        self.assertGreaterEqual(reactor.seconds() - started, 0.6)
        self.proxy.passThrough()
        started = reactor.seconds()
        client.transport.write(b"c")
        received = yield client.waitForBytes(3)
        self.assertEqual(received, b"abc")
        self.assertLess(reactor.seconds() - started, 0.3)

    @inlineCallbacks
    def test_delayedClose(self) -> Any:
        """
        In delay mode a close is delivered after the data sent before it,
        itself after the delay.
        """
        self.proxy.delay(0.3)
        client = yield self.connect()
        yield self.waitForServerPeers(1)
        server = self.echo.peers[0]
        client.transport.write(b"last words")
        client.transport.loseConnection()
        yield sleep(0.15)
        self.assertFalse(server.isLost)
        yield server.waitForLost()
        self.assertEqual(server.received, b"last words")

    @inlineCallbacks
    def test_blackhole(self) -> Any:
        """
        In blackhole mode nothing gets through either way, and the sockets
        stay open; back in pass-through mode, new bytes flow again and the
        dropped ones are gone.
        """
        client = yield self.connect()
        client.transport.write(b"a")
        yield client.waitForBytes(1)
        self.proxy.blackhole()
        client.transport.write(b"b")
        yield sleep(1.0)
        server = self.echo.peers[0]
        self.assertEqual((client.received, server.received), (b"a", b"a"))
        self.assertFalse(client.isLost)
        self.assertFalse(server.isLost)
        self.assertEqual(self.proxy.connections, 1)

        # The server's own writes are dropped too.
        server.transport.write(b"unsolicited")
        yield sleep(0.2)
        self.assertEqual(client.received, b"a")

        self.proxy.passThrough()
        client.transport.write(b"c")
        received = yield client.waitForBytes(2)
        self.assertEqual(received, b"ac")

    @inlineCallbacks
    def test_blackholeNewConnection(self) -> Any:
        """
        A connection made during blackhole mode is accepted and stays open,
        but nothing goes through.
        """
        self.proxy.blackhole()
        client = yield self.connect()
        client.transport.write(b"anyone?")
        yield sleep(0.5)
        self.assertEqual(client.received, b"")
        self.assertFalse(client.isLost)
        self.assertEqual(self.proxy.connections, 1)

    @inlineCallbacks
    def test_blackholeHidesClose(self) -> Any:
        """
        In blackhole mode the client is not told that the server closed (no
        FIN, no RST); once the network is back, it is.
        """
        client = yield self.connect()
        yield self.waitForServerPeers(1)
        self.proxy.blackhole()
        server = self.echo.peers[0]
        server.transport.loseConnection()
        yield server.waitForLost()
        yield sleep(1.0)
        self.assertFalse(client.isLost)
        self.proxy.passThrough()
        yield client.waitForLost()

    @inlineCallbacks
    def test_cut(self) -> Any:
        """
        L{FaultProxy.cut} closes every connection at once, on both sides;
        new connections are accepted afterwards.
        """
        clients = [(yield self.connect()), (yield self.connect())]
        yield self.waitForServerPeers(2)
        started = reactor.seconds()
        self.proxy.cut()
        for peer in clients + self.echo.peers:
            yield peer.waitForLost()
        self.assertLess(reactor.seconds() - started, PROMPTLY)
        self.assertEqual(self.proxy.connections, 0)

        client = yield self.connect()
        client.transport.write(b"again")
        received = yield client.waitForBytes(5)
        self.assertEqual(received, b"again")
        self.assertEqual(self.proxy.accepted, 3)

    @inlineCallbacks
    def test_cutDuringBlackhole(self) -> Any:
        """
        L{FaultProxy.cut} also closes connections that the black hole keeps
        open, and drops chunks that a delay holds.
        """
        self.proxy.delay(30)
        delayed = yield self.connect()
        delayed.transport.write(b"held")
        self.proxy.blackhole()
        silent = yield self.connect()
        yield self.proxy.cut()
        yield delayed.waitForLost()
        yield silent.waitForLost()
        self.assertEqual(self.proxy.connections, 0)

    @inlineCallbacks
    def test_refuse(self) -> Any:
        """
        While refusing, the proxy closes new connections as soon as it
        accepts them, without connecting to the target; current connections
        are left alone.
        """
        current = yield self.connect()
        yield self.waitForServerPeers(1)
        self.proxy.refuse(True)
        client = yield self.connect()
        yield client.waitForLost()
        self.assertEqual(client.received, b"")
        self.assertEqual(len(self.echo.peers), 1)
        self.assertEqual((self.proxy.accepted, self.proxy.refused), (2, 1))
        self.assertFalse(current.isLost)

        self.proxy.refuse(False)
        client = yield self.connect()
        client.transport.write(b"in")
        received = yield client.waitForBytes(2)
        self.assertEqual(received, b"in")

    @inlineCallbacks
    def test_targetDown(self) -> Any:
        """
        When the target cannot be reached the client is closed at once.
        """
        unused = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        deadPort = unused.getHost().port
        yield unused.stopListening()
        proxy = FaultProxy(reactor, "127.0.0.1", deadPort)
        yield proxy.start()
        self.addCleanup(proxy.stop)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port)
        client = yield endpoint.connect(Factory.forProtocol(Peer))
        self.addCleanup(self._abort, client)
        yield client.waitForLost()
        self.assertEqual((proxy.connections, proxy.accepted), (0, 1))

    @inlineCallbacks
    def test_stop(self) -> Any:
        """
        L{FaultProxy.stop} closes the listener and every proxied connection,
        whatever its mode; the reactor is left clean (trial checks it).
        """
        self.proxy.delay(30)
        delayed = yield self.connect()
        delayed.transport.write(b"held back")
        self.proxy.blackhole()
        silent = yield self.connect()
        self.proxy.passThrough()
        plain = yield self.connect()
        yield self.waitForServerPeers(3)
        yield self.proxy.stop()
        for peer in [delayed, silent, plain, *self.echo.peers]:
            yield peer.waitForLost()
        self.assertEqual(self.proxy.connections, 0)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port)
        yield self.assertFailure(
            endpoint.connect(Factory.forProtocol(Peer)), ConnectionRefusedError
        )
        # A second stop is harmless.
        yield self.proxy.stop()
