# -*- test-case-name: tests.test_proxy -*-
"""
A TCP proxy that injects network faults, to put between an agent and the
broker.

    proxy = FaultProxy(reactor, "127.0.0.1", 5672)
    port = yield proxy.start()
    # ... connect the agent to 127.0.0.1:port ...
    proxy.blackhole()      # the network goes silent, sockets stay open
    proxy.passThrough()    # and comes back
    proxy.cut()            # every connection is aborted (RST) on both sides
    yield proxy.stop()     # in a cleanup: listener and connections closed

The mode is global to the proxy and applies at once to the connections
already proxied and to new ones:

  - L{FaultProxy.passThrough} (the default) forwards every chunk as soon as
    it arrives;
  - L{FaultProxy.delay} delivers every chunk, in both directions, C{seconds}
    after it arrived, in order;
  - L{FaultProxy.blackhole} drops every byte in both directions, and closes
    too: when one peer closes its socket, the other one is not told, just as
    in a network partition (no FIN, no RST);
  - L{FaultProxy.refuse}, independent of the three above, closes every new
    connection as soon as it is accepted.

Chunks already waiting when the mode changes keep their delivery time, so
that the order of the bytes is always kept; a chunk that is due while the
proxy is a black hole is dropped.

The broker sees the proxy's own sockets: to find a proxied connection in
C{rabbitmqctl list_connections}, match C{peer_port} against
L{FaultProxy.upstreamPorts}.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import NotConnectingError
from twisted.internet.interfaces import (
    IConnector,
    IDelayedCall,
    IListeningPort,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

_CLOSE = object()
"""
A queue item that stands for the end of a stream: when it is delivered, the
destination is closed after what was written before it.
"""


class _Direction:
    """
    The bytes going one way through a proxied pair: a queue of chunks, each
    with the time at which it must be written to the destination.

    @ivar dest: the transport the chunks are written to.
    @ivar queue: the chunks not delivered yet, oldest first, as
        C{(dueTime, chunk)}; a chunk is L{bytes} or L{_CLOSE}.
    """

    def __init__(self, proxy: FaultProxy, dest: ITCPTransport) -> None:
        self.proxy = proxy
        self.dest: ITCPTransport | None = dest
        self.queue: deque[tuple[float, object]] = deque()
        self._call: IDelayedCall | None = None

    def push(self, chunk: object) -> None:
        """
        Take a chunk that arrived from the source (or the source's end, as
        L{_CLOSE}) and deliver it according to the proxy's mode.
        """
        if self.proxy.mode == "blackhole" or self.dest is None:
            return
        now = self.proxy.reactor.seconds()
        self.queue.append((now + self.proxy.delaySeconds, chunk))
        if self._call is None:
            self._deliverDue()

    def _deliverDue(self) -> None:
        """
        Deliver every chunk that is due, then wait for the next one.
        """
        self._call = None
        now = self.proxy.reactor.seconds()
        while self.queue and self.queue[0][0] <= now:
            _, chunk = self.queue.popleft()
            if self.dest is None:
                continue
            if self.proxy.mode == "blackhole":
                continue
            if chunk is _CLOSE:
                # A paused producer would keep the socket open forever.
                self.dest.unregisterProducer()
                self.dest.loseConnection()
            else:
                assert isinstance(chunk, bytes)
                self.dest.write(chunk)
        if self.queue and self.dest is not None:
            self._call = self.proxy.reactor.callLater(
                self.queue[0][0] - now, self._deliverDue
            )

    def discard(self) -> None:
        """
        Drop every chunk not delivered yet and stop delivering.
        """
        self.queue.clear()
        self.dest = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


@implementer(IPushProducer)
class _SourceProducer:
    """
    The source of a direction as the producer of its destination: the
    destination's buffer pauses and resumes reading the source. Unlike the
    source transport itself, it does not close the source when the
    destination is closed: the proxy's mode decides that.
    """

    def __init__(self, source: ITCPTransport) -> None:
        self.source = source

    def pauseProducing(self) -> None:
        self.source.pauseProducing()

    def resumeProducing(self) -> None:
        self.source.resumeProducing()

    def stopProducing(self) -> None:
        pass


class _Pair:
    """
    One proxied connection: the socket accepted from the client and the
    socket opened to the target.

    @ivar client: the side accepted from the client.
    @ivar server: the side connected to the target, once it is connected.
    @ivar toServer: the bytes from the client to the target.
    @ivar toClient: the bytes from the target to the client.
    @ivar done: fires when both sides are closed.
    """

    def __init__(self, proxy: FaultProxy, client: _ClientSide) -> None:
        self.proxy = proxy
        self.client = client
        self.server: _ServerSide | None = None
        self.connector: IConnector | None = None
        self.toServer: _Direction | None = None
        self.toClient: _Direction | None = None
        self.clientOpen = True
        self.serverOpen = False
        self.finished = False
        self.done: Deferred[None] = Deferred()

    def connectToTarget(self) -> None:
        """
        Open the socket to the target; the client is not read meanwhile.
        """
        assert self.client.transport is not None
        self.client.transport.pauseProducing()
        factory = _ServerSideFactory(self)
        self.connector = self.proxy.reactor.connectTCP(
            self.proxy.targetHost, self.proxy.targetPort, factory, timeout=30
        )

    def serverConnected(self, server: _ServerSide) -> None:
        """
        The target accepted: link the two sockets.
        """
        self.connector = None
        if not self.clientOpen:
            # The client went away while we were connecting.
            server.transport.abortConnection()
            return
        self.server = server
        self.serverOpen = True
        clientTransport = self.client.transport
        serverTransport = server.transport
        self.toServer = _Direction(self.proxy, serverTransport)
        self.toClient = _Direction(self.proxy, clientTransport)
        # Flow control: a destination that cannot keep up pauses its source.
        serverTransport.registerProducer(_SourceProducer(clientTransport), True)
        clientTransport.registerProducer(_SourceProducer(serverTransport), True)
        clientTransport.resumeProducing()

    def serverFailed(self) -> None:
        """
        The target could not be reached: close the client.
        """
        self.connector = None
        if self.clientOpen:
            self.client.transport.abortConnection()
        self._checkDone()

    def clientData(self, data: bytes) -> None:
        if self.toServer is not None:
            self.toServer.push(data)

    def serverData(self, data: bytes) -> None:
        if self.toClient is not None:
            self.toClient.push(data)

    def clientLost(self) -> None:
        """
        The client's socket is closed: pass the end on to the target, as the
        mode says, and stop writing to the client.
        """
        self.clientOpen = False
        if self.toClient is not None:
            self.toClient.discard()
        if self.connector is not None:
            self._stopConnecting()
        elif self.toServer is not None and self.serverOpen:
            self.toServer.push(_CLOSE)
        self._checkDone()

    def serverLost(self) -> None:
        """
        The target's socket is closed: pass the end on to the client, as the
        mode says, and stop writing to the target.
        """
        self.serverOpen = False
        if self.toServer is not None:
            self.toServer.discard()
        if self.toClient is not None and self.clientOpen:
            self.toClient.push(_CLOSE)
        self._checkDone()

    def closeHalfOpen(self) -> None:
        """
        Close the remaining side of a pair whose other side was closed while
        the proxy was a black hole: the partition is over, so the peer would
        now learn that the connection is gone.
        """
        if self.clientOpen and not self.serverOpen and self.server is not None:
            self.client.transport.loseConnection()
        elif self.serverOpen and not self.clientOpen and self.server is not None:
            self.server.transport.loseConnection()

    def abort(self) -> None:
        """
        Abort both sides now, dropping whatever has not been delivered.
        """
        for direction in (self.toServer, self.toClient):
            if direction is not None:
                direction.discard()
        if self.connector is not None:
            self._stopConnecting()
        if self.clientOpen:
            self.client.transport.abortConnection()
        if self.serverOpen and self.server is not None:
            self.server.transport.abortConnection()

    def _stopConnecting(self) -> None:
        """
        Give up connecting to the target; L{serverFailed} follows at once.
        """
        assert self.connector is not None
        try:
            self.connector.stopConnecting()
        except NotConnectingError:
            self.connector = None

    def _checkDone(self) -> None:
        if self.finished or self.clientOpen or self.serverOpen or self.connector:
            return
        self.finished = True
        for direction in (self.toServer, self.toClient):
            if direction is not None:
                direction.discard()
        self.proxy._pairDone(self)
        self.done.callback(None)


class _ClientSide(Protocol):
    """
    The socket accepted from a client.
    """

    transport: Any
    pair: _Pair | None = None

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def connectionMade(self) -> None:
        self.proxy.accepted += 1
        self.proxy._sockets.add(self)
        if self.proxy.refusing:
            self.proxy.refused += 1
            self.transport.abortConnection()
            return
        self.pair = _Pair(self.proxy, self)
        self.proxy._pairs.add(self.pair)
        self.pair.connectToTarget()

    def dataReceived(self, data: bytes) -> None:
        if self.pair is not None:
            self.pair.clientData(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.proxy._socketClosed(self)
        if self.pair is not None:
            self.pair.clientLost()


class _ServerSide(Protocol):
    """
    The socket opened to the target for one client.
    """

    transport: Any

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair

    def connectionMade(self) -> None:
        self.pair.proxy._sockets.add(self)
        self.pair.serverConnected(self)

    def dataReceived(self, data: bytes) -> None:
        self.pair.serverData(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.pair.proxy._socketClosed(self)
        if self.pair.server is self:
            self.pair.serverLost()


class _ServerSideFactory(ClientFactory):
    noisy = False

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair

    def buildProtocol(self, addr: Any) -> _ServerSide:
        return _ServerSide(self.pair)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.pair.serverFailed()


class _ListeningFactory(Factory):
    noisy = False

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def buildProtocol(self, addr: Any) -> _ClientSide:
        return _ClientSide(self.proxy)


class FaultProxy:
    """
    A TCP proxy from C{127.0.0.1:port} to C{targetHost:targetPort} whose
    network can be made slow, silent, cut or refusing at any time.

    @ivar reactor: the reactor the proxy runs on.
    @ivar targetHost: the host every connection is proxied to.
    @ivar targetPort: the port every connection is proxied to.
    @ivar port: the port the proxy listens on, once started.
    @ivar mode: C{"passThrough"}, C{"delay"} or C{"blackhole"}.
    @ivar delaySeconds: how long every chunk is held back (0 unless in
        C{"delay"} mode).
    @ivar refusing: whether new connections are closed as soon as accepted.
    @ivar accepted: how many connections were accepted since the start,
        including those refused.
    @ivar refused: how many of those were closed at once by L{refuse}.
    """

    def __init__(self, reactor: Any, targetHost: str, targetPort: int) -> None:
        """
        @param reactor: an L{IReactorTCP} and L{IReactorTime} provider.
        @param targetHost: the host to proxy to.
        @param targetPort: the port to proxy to.
        """
        assert IReactorTCP.providedBy(reactor) and IReactorTime.providedBy(reactor)
        self.reactor = reactor
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.port: int | None = None
        self.mode = "passThrough"
        self.delaySeconds = 0.0
        self.refusing = False
        self.accepted = 0
        self.refused = 0
        self._pairs: set[_Pair] = set()
        self._sockets: set[Protocol] = set()
        self._allClosed: list[Deferred[None]] = []
        self._listener: IListeningPort | None = None

    @property
    def connections(self) -> int:
        """
        How many proxied pairs are live: a pair counts until both its sides
        are closed (or, for a client whose target could not be reached, until
        the client is closed).
        """
        return len(self._pairs)

    def upstreamPorts(self) -> list[int]:
        """
        @return: the local ports of the proxy's sockets to the target, that is
            the C{peer_port} that the broker shows for the proxied
            connections.
        """
        ports = []
        for pair in self._pairs:
            if pair.server is not None and pair.serverOpen:
                ports.append(pair.server.transport.getHost().port)
        return sorted(ports)

    def start(self) -> Deferred[int]:
        """
        Listen on a free port of 127.0.0.1.

        @return: a L{Deferred} firing with the port, also set as C{port}.
        """
        if self._listener is not None:
            raise RuntimeError("FaultProxy already started")
        self._listener = self.reactor.listenTCP(
            0, _ListeningFactory(self), interface="127.0.0.1"
        )
        self.port = self._listener.getHost().port
        return succeed(self.port)

    def stop(self) -> Deferred[None]:
        """
        Stop listening and abort every proxied connection.

        @return: a L{Deferred} firing once the listener and every socket of
            the proxy are closed, so that the reactor is clean.
        """
        waits: list[Deferred[Any]] = []
        if self._listener is not None:
            listener, self._listener = self._listener, None
            stopped = listener.stopListening()
            if stopped is not None:
                waits.append(stopped)
        self.cut()
        waits.append(self._whenAllClosed())
        return DeferredList(waits, fireOnOneErrback=True, consumeErrors=True).addCallback(
            lambda _: None
        )

    def passThrough(self) -> None:
        """
        Forward every chunk as soon as it arrives (the default).
        """
        self._setMode("passThrough", 0.0)

    def delay(self, seconds: float) -> None:
        """
        Deliver every chunk, in both directions, C{seconds} after it arrived,
        in the order it arrived. The end of a stream is delayed likewise.

        @param seconds: the delay, 0 or more.
        """
        if seconds < 0:
            raise ValueError(f"negative delay: {seconds!r}")
        self._setMode("delay", float(seconds))

    def blackhole(self) -> None:
        """
        Drop every byte in both directions, chunks already delayed included,
        and keep every socket open: neither peer gets a FIN or an RST, even
        when the other one closes.
        """
        self._setMode("blackhole", 0.0)

    def cut(self) -> Deferred[None]:
        """
        Abort every current connection on both sides now (RST). New
        connections are still accepted unless L{refuse} says otherwise.

        @return: a L{Deferred} firing once every aborted socket is closed;
            there is no need to wait for it.
        """
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        return DeferredList([pair.done for pair in pairs]).addCallback(lambda _: None)

    def refuse(self, refusing: bool = True) -> None:
        """
        Close (abort) every new connection as soon as it is accepted, or stop
        doing so. Current connections are not touched.

        @param refusing: C{True} to refuse, C{False} to accept again.
        """
        self.refusing = refusing

    def _setMode(self, mode: str, delaySeconds: float) -> None:
        wasBlackhole = self.mode == "blackhole"
        self.mode = mode
        self.delaySeconds = delaySeconds
        if wasBlackhole and mode != "blackhole":
            for pair in list(self._pairs):
                pair.closeHalfOpen()

    def _pairDone(self, pair: _Pair) -> None:
        self._pairs.discard(pair)

    def _socketClosed(self, protocol: Protocol) -> None:
        self._sockets.discard(protocol)
        if not self._sockets:
            waiters, self._allClosed = self._allClosed, []
            for waiter in waiters:
                waiter.callback(None)

    def _whenAllClosed(self) -> Deferred[None]:
        """
        @return: a L{Deferred} firing once no socket of the proxy is open.
        """
        if not self._sockets:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._allClosed.append(waiter)
        return waiter


__all__ = ["FaultProxy"]
