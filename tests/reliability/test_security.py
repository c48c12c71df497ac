"""
Hostile callers, against agents on the real broker:

  - HTTP without credentials, with a wrong password, an unknown user, a
    bad token or a malformed header: 401, and nothing runs;
  - an AMQP caller claiming another user's C{user_id}: the broker refuses
    the message (the channel is closed), so no agent sees it;
  - a call the ACL denies, over AMQP and HTTP: permission denied (-32002);
  - another user's remote object: every use of it is denied;
  - C{amqps://} to a broker with a self-signed certificate: refused unless
    C{[amqp] cafile} names its CA (and refused with another CA).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Generator
from importlib.metadata import EntryPoint
from typing import Any

import attrs
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

import tests.util.nodropins as nodropins
from clacks.agent.service import AgentService, makeAgent
from clacks.agent.users import addToken, addUser
from clacks.client.amqp import AMQPClient
from clacks.common.jsonrpc import INVALID_REQUEST, PERMISSION_DENIED, RPCError
from clacks.handlers.amqp.compat import ChannelClosedError
from tests.reliability.harness import (
    AgentProcess,
    pause,
    requireReliability,
    writeDropins,
    writeRow,
)
from tests.util.agents import DomainFixture, builtinEntryPoints, waitUntil
from tests.util.broker import brokerAddress
from tests.util.example import HelloPlugin
from tests.util.privatebroker import PrivateBroker, freePort
from tests.util.rabbitmqctl import temporaryUser
from tests.util.rawrpc import RawRPC, requestBody

OBJECT_COMMANDS = "openObject, getObjectProperty, setObjectProperty, dispatchObjectMethod"


class HostileCallers(TestCase):
    """
    Two in-process agents with a users file (alice in group ops, bob in no
    group) and an ACL: everybody may ping and use objects, group ops and
    the broker user C{carol} (made for the test) may greet.
    """

    timeout = 90

    def setUp(self) -> None:
        requireReliability()
        self.attempts = 0
        self.refused = 0
        self.legit = 0

    @inlineCallbacks
    def startAgent(
        self, domain: DomainFixture, node: str, users: str, acl: dict[str, str]
    ) -> Generator[Deferred[Any], Any, AgentService]:
        config = domain.config(node)
        config = attrs.evolve(
            config, core=attrs.evolve(config.core, users=users), sections={"acl": acl}
        )
        domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.{node}")
        agent = makeAgent(
            config,
            reactor=reactor,
            entryPoints=builtinEntryPoints(),
            dropins=nodropins,
            plugins=[("hello", HelloPlugin)],
            objectEntryPoints=[
                EntryPoint("HelloGreeting", "clacks_hello.objects:HelloGreeting", "agent.object")
            ],
        )
        domain.agents.append(agent)
        agent.startService()
        yield domain.amqp(agent).bus.whenReady().addTimeout(15, reactor)
        return agent

    @inlineCallbacks
    def client(
        self, domain: DomainFixture, user: str, password: str
    ) -> Generator[Deferred[Any], Any, AMQPClient]:
        address = brokerAddress()
        client = AMQPClient(
            f"amqp://{user}:{password}@{address.host}:{address.port}/", domain.domain, timeout=15
        )
        yield client.start()
        self.addCleanup(client.stop)
        return client

    @inlineCallbacks
    def refusedWith(self, code: int, d: Deferred[Any], what: str) -> Generator[Any, Any, None]:
        """
        A hostile attempt: it must fail with C{code}.
        """
        self.attempts += 1
        try:
            result = yield d
        except RPCError as e:
            self.assertEqual(e.code, code, f"{what}: {e!r}")
            self.refused += 1
            return
        self.fail(f"{what}: not refused, got {result!r}")

    @inlineCallbacks
    def test_hostileCallers(self) -> Generator[Deferred[Any], Any, None]:
        """
        Every hostile attempt is refused with a clear error; the legitimate
        calls next to them work.
        """
        domain = DomainFixture(self)
        carol, carolPassword = yield temporaryUser(self)
        users = os.path.abspath(self.mktemp())
        addUser(users, "alice", "alice-secret", groups=["ops"], rounds=4)
        addUser(users, "bob", "bob-secret", rounds=4)
        token = addToken(users, "alice", "ci")
        acl = {
            "*": f"ping, getMethods, {OBJECT_COMMANDS}, closeObject",
            "group:ops": "greet",
            f"user:{carol}": "greet, whoami",
        }
        one = yield self.startAgent(domain, "one", users, acl)
        two = yield self.startAgent(domain, "two", users, acl)
        yield waitUntil(
            lambda: (
                domain.directory(one).get("two") is not None
                and domain.directory(two).get("one") is not None
            ),
            15,
            "the agents to know each other",
        )
        port = domain.httpPort(one)
        url = f"http://127.0.0.1:{port}/rpc"
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)

        @inlineCallbacks
        def post(body: bytes, **kwargs: Any) -> Generator[Deferred[Any], Any, tuple[int, Any]]:
            headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
            response = yield treq.post(url, data=body, headers=headers, pool=pool, **kwargs)
            answer = yield response.json()
            return response.code, answer, response

        # HTTP: no credentials, wrong ones, malformed ones.
        greet = requestBody("greet", ["Eve"])
        hello = one.context.plugins.get("hello")
        before = hello.greeted
        for what, kwargs in [
            ("no credentials", {}),
            ("wrong password", {"auth": ("alice", "nope")}),
            ("unknown user", {"auth": ("mallory", "alice-secret")}),
            ("bad token", {"headers": {"authorization": "Bearer clacks_forged"}}),
            ("malformed basic", {"headers": {"authorization": "Basic !!!"}}),
            ("empty basic", {"headers": {"authorization": "Basic "}}),
        ]:
            self.attempts += 1
            code, answer, response = yield post(greet, **kwargs)
            self.assertEqual(code, 401, what)
            self.assertEqual(answer["error"]["code"], INVALID_REQUEST, what)
            self.assertTrue(response.headers.getRawHeaders("www-authenticate"), what)
            self.refused += 1
        self.assertEqual(hello.greeted, before, "a refused HTTP call ran")
        code, answer, _ = yield post(greet, auth=("alice", "alice-secret"))
        self.assertEqual((code, answer.get("result")), (200, "Hello, Eve, from one!"))
        code, answer, _ = yield post(greet, headers={"authorization": f"Bearer {token}"})
        self.assertEqual(code, 200, answer)
        self.legit += 2

        # HTTP: the ACL.
        self.attempts += 1
        code, answer, _ = yield post(greet, auth=("bob", "bob-secret"))
        self.assertEqual(answer["error"]["code"], PERMISSION_DENIED, answer)
        self.refused += 1
        self.attempts += 1
        code, answer, _ = yield post(greet, auth=("bob", "bob-secret"), params={"node": "two"})
        self.assertEqual(answer["error"]["code"], PERMISSION_DENIED, answer)
        self.refused += 1

        # AMQP: a forged user_id is refused by the broker itself.
        raw = yield RawRPC.open(domain.broker, domain.domain)
        self.attempts += 1
        with self.assertRaises(ChannelClosedError) as caught:
            yield raw.publish(requestBody("whoami"), properties={"user-id": carol})
        self.assertIn("PRECONDITION_FAILED", str(caught.exception))
        self.refused += 1

        # AMQP: the ACL, for guest and for carol.
        guest = yield self.client(domain, "guest", "guest")
        mine = yield self.client(domain, carol, carolPassword)
        yield self.refusedWith(PERMISSION_DENIED, guest.call("greet", "Eve"), "guest greets")
        yield self.refusedWith(
            PERMISSION_DENIED, guest.call("greet", "Eve", node="two"), "guest greets on two"
        )
        yield self.refusedWith(PERMISSION_DENIED, mine.call("echo", 1), "carol echoes")
        self.assertEqual((yield mine.call("whoami"))["user"], carol)
        self.assertTrue((yield mine.call("greet", "Ada")).startswith("Hello, Ada"))
        self.legit += 2

        # Remote objects: carol's object is hers alone, on both nodes.
        opened = yield mine.call("openObject", "HelloGreeting", "Ada", node="one")
        ref = opened["ref"]
        for client, name in ((guest, "guest"),):
            for node in ("one", "two"):
                for method, params in [
                    ("getObjectProperty", [ref, "name"]),
                    ("setObjectProperty", [ref, "name", "Eve"]),
                    ("dispatchObjectMethod", [ref, "render"]),
                    ("closeObject", [ref]),
                ]:
                    yield self.refusedWith(
                        PERMISSION_DENIED,
                        client.callWithParams(method, params, node=node),
                        f"{name} {method} on {node}",
                    )
        # Over HTTP, alice is not carol either.
        self.attempts += 1
        code, answer, _ = yield post(
            requestBody("dispatchObjectMethod", [ref, "render"]), auth=("alice", "alice-secret")
        )
        self.assertEqual(answer["error"]["code"], PERMISSION_DENIED, answer)
        self.refused += 1
        self.assertEqual((yield mine.call("dispatchObjectMethod", ref, "render")), "Hello, Ada!")
        yield mine.call("closeObject", ref)
        self.legit += 2

        writeRow(
            {
                "scenario": "security: hostile HTTP/AMQP callers, ACL, objects",
                "calls": self.attempts + self.legit,
                "answered": self.legit,
                "failedClear": self.refused,
                "lost": 0,
                "ranTwice": 0,
                "duration": 0,
                "hostileAttempts": self.attempts,
                "hostileRefused": self.refused,
            }
        )
        self.assertEqual(self.refused, self.attempts)


def makeCertificates(directory: str) -> dict[str, str]:
    """
    Write a CA, a server certificate it signs (for localhost and
    127.0.0.1) with its key, and another, unrelated CA.

    @return: their paths: C{ca}, C{cert}, C{key}, C{otherCA}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def ca(common: str) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    caKey, caCert = ca("clacks test CA")
    _, otherCert = ca("clacks other CA")
    serverKey = ec.generate_private_key(ec.SECP256R1())
    serverCert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(caCert.subject)
        .public_key(serverKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {
        "ca": os.path.join(directory, "ca.pem"),
        "cert": os.path.join(directory, "server.pem"),
        "key": os.path.join(directory, "server.key"),
        "otherCA": os.path.join(directory, "other-ca.pem"),
    }
    contents = {
        "ca": caCert.public_bytes(pem),
        "cert": serverCert.public_bytes(pem),
        "key": serverKey.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        "otherCA": otherCert.public_bytes(pem),
    }
    for what, path in paths.items():
        with open(path, "wb") as f:
            f.write(contents[what])
    return paths


class TLSBroker(PrivateBroker):
    """
    A private node that also listens for AMQP over TLS on C{tlsPort}.
    """

    def __init__(self, baseDir: str, certificates: dict[str, str], **kwargs: Any) -> None:
        super().__init__(baseDir, **kwargs)
        self.certificates = certificates
        self.tlsPort: int | None = None

    def _prepare(self) -> None:
        first = self.port is None
        super()._prepare()
        if not first:
            return
        assert self.port is not None and self.distPort is not None
        self.tlsPort = freePort(avoid=[self.port, self.distPort])
        with open(os.path.join(self.baseDir, "rabbitmq.conf"), "a", encoding="utf-8") as f:
            f.write(
                f"listeners.ssl.default = 127.0.0.1:{self.tlsPort}\n"
                f"ssl_options.cacertfile = {self.certificates['ca']}\n"
                f"ssl_options.certfile = {self.certificates['cert']}\n"
                f"ssl_options.keyfile = {self.certificates['key']}\n"
                "ssl_options.verify = verify_none\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
            )


class SelfSignedBroker(TestCase):
    """
    Agents connecting with C{amqps://} to a broker whose certificate a
    private CA signed.
    """

    timeout = 120

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_caRequired(self) -> Generator[Deferred[Any], Any, None]:
        """
        The agent with C{[amqp] cafile} = the broker's CA connects; the one
        without it (platform trust) and the one with another CA never do:
        they log why and keep trying.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        certificates = makeCertificates(directory)
        broker = TLSBroker(self.mktemp(), certificates)
        self.addCleanup(broker.cleanup)
        yield broker.start()
        url = f"amqps://guest:guest@localhost:{broker.tlsPort}/"
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        dropins = writeDropins(self)
        domain = "clacks.test.tls"

        def agent(node: str, cafile: str | None) -> AgentProcess:
            return AgentProcess(
                self,
                node,
                domain,
                url,
                recordDir,
                dropins,
                amqpExtra=f"cafile = {cafile}" if cafile else "",
            )

        trusted = agent("trusted", certificates["ca"])
        untrusted = agent("untrusted", None)
        wrong = agent("wrongca", certificates["otherCA"])
        untrusted.spawn()
        wrong.spawn()
        yield trusted.start()
        # Give the others as long again, several retries.
        yield pause(3.0)
        self.assertEqual(untrusted.connects(), 0, untrusted.out[-3000:])
        self.assertEqual(wrong.connects(), 0, wrong.out[-3000:])
        for refused in (untrusted, wrong):
            self.assertRegex(refused.out, r"(?i)certificate verify failed|tls|ssl")
        connections = yield broker.rabbitmqctl("list_connections", "ssl", "client_properties")
        text = connections.decode()
        writeRow(
            {
                "scenario": "security: amqps with a self-signed broker certificate",
                "calls": 3,
                "answered": 1,
                "failedClear": 2,
                "lost": 0,
                "ranTwice": 0,
                "duration": 0,
                "trustedConnected": trusted.connects(),
                "untrustedConnected": untrusted.connects(),
                "otherCAConnected": wrong.connects(),
            }
        )
        lines = [line for line in text.splitlines() if "connection_name" in line]
        self.assertEqual(len(lines), 1, text)
        self.assertTrue(lines[0].startswith("true\t"), text)
        self.assertIn('"trusted"', lines[0])
