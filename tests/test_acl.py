"""
Tests for L{clacks.agent.acl} and L{clacks.agent.security}: parsing the
C{[acl]} section, deciding who may call what, and logging denials.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clacks.agent.acl import ACLPolicy, parsePolicy
from clacks.agent.commands import CallContext, CommandRegistry
from clacks.agent.config import ConfigError, CoreConfig, defaultConfig, loadConfig
from clacks.agent.security import Security
from clacks.agent.users import addUser
from clacks.common.jsonrpc import PERMISSION_DENIED, RPCError
from tests.fakes.agent import agentContext
from tests.util.configs import writeConfigDir
from tests.util.example import HelloPlugin
from tests.util.logs import captureLogs, messages

#: The ACL of the tests: admins, commands for everybody, for a group and
#: for a user, with patterns.
SECTION = {
    "admins": "group:admins, user:root",
    "*": "ping, getMethods",
    "group:ops": "hello*, greet",
    "user:alice": "who?mi, echo",
}


class ParseTests(SynchronousTestCase):
    """
    L{parsePolicy} reads the C{[acl]} section.
    """

    def test_noSection(self) -> None:
        """
        Without an C{[acl]} section the ACL is off: everybody, anonymous
        callers too, may call everything.
        """
        policy = parsePolicy(None)
        self.assertEqual(policy, ACLPolicy())
        self.assertFalse(policy.enabled)
        self.assertTrue(policy.allows(None, (), "anything"))
        self.assertTrue(policy.allows("bob", (), "shutdown"))

    def test_emptySection(self) -> None:
        """
        An empty C{[acl]} section turns the ACL on with no rules: nobody may
        call anything.
        """
        policy = parsePolicy({})
        self.assertTrue(policy.enabled)
        self.assertFalse(policy.allows("alice", ("ops",), "ping"))

    def test_parsed(self) -> None:
        """
        C{admins} lists principals; every other key is a principal with a
        comma-separated list of patterns, spaces and empty items dropped.
        """
        policy = parsePolicy({**SECTION, "group:empty": " , "})
        self.assertEqual(policy.admins, frozenset({"group:admins", "user:root"}))
        self.assertEqual(
            dict(policy.rules),
            {
                "*": ("ping", "getMethods"),
                "group:ops": ("hello*", "greet"),
                "user:alice": ("who?mi", "echo"),
                "group:empty": (),
            },
        )

    def test_badPrincipalKey(self) -> None:
        """
        A key that is not C{*}, C{user:NAME} or C{group:NAME} raises a
        L{ConfigError} naming the section and the key, and saying what is
        expected.
        """
        for key in ("alice", "role:ops", "user:", "group:", ""):
            error = self.assertRaises(ConfigError, parsePolicy, {key: "ping"})
            self.assertEqual((error.section, error.key), ("acl", key))
            self.assertIn("expected a principal", str(error))
            self.assertIn(f"[acl] {key}", str(error))

    def test_badAdmin(self) -> None:
        """
        A value of C{admins} that is not a principal raises a
        L{ConfigError} naming the C{admins} key and the value.
        """
        error = self.assertRaises(ConfigError, parsePolicy, {"admins": "user:root, wheel"})
        self.assertEqual((error.section, error.key), ("acl", "admins"))
        self.assertIn("'wheel'", str(error))


class DecisionTests(SynchronousTestCase):
    """
    L{ACLPolicy.allows}: admins, C{*}, users, groups and patterns.
    """

    def setUp(self) -> None:
        self.policy = parsePolicy(SECTION)

    def test_adminsBypass(self) -> None:
        """
        A user listed in C{admins}, or a member of a group listed there,
        may call every command, listed or not.
        """
        self.assertTrue(self.policy.allows("root", (), "shutdown"))
        self.assertTrue(self.policy.allows("carol", ("admins",), "shutdown"))
        self.assertFalse(self.policy.allows("carol", ("ops",), "shutdown"))

    def test_everybody(self) -> None:
        """
        The commands of C{*} are open to every caller, anonymous ones too.
        """
        for user, groups in ((None, ()), ("bob", ()), ("alice", ("ops",))):
            self.assertTrue(self.policy.allows(user, groups, "ping"), user)
            self.assertTrue(self.policy.allows(user, groups, "getMethods"), user)
        self.assertFalse(self.policy.allows(None, (), "greet"))

    def test_user(self) -> None:
        """
        The commands of C{user:NAME} are open to that user only; names are
        case-sensitive.
        """
        self.assertTrue(self.policy.allows("alice", (), "echo"))
        self.assertFalse(self.policy.allows("bob", (), "echo"))
        self.assertFalse(self.policy.allows("Alice", (), "echo"))

    def test_group(self) -> None:
        """
        The commands of C{group:NAME} are open to the members of that group
        (any of a caller's groups counts).
        """
        self.assertTrue(self.policy.allows("bob", ("readers", "ops"), "greet"))
        self.assertFalse(self.policy.allows("bob", ("readers",), "greet"))
        self.assertFalse(self.policy.allows("ops", (), "greet"))

    def test_patterns(self) -> None:
        """
        Patterns are shell-style and case-sensitive: C{hello*} matches
        C{helloNodes} and C{hello} but not C{Hello} or C{sayhello};
        C{who?mi} matches C{whoami}.
        """
        for command in ("hello", "helloNodes"):
            self.assertTrue(self.policy.allows("bob", ("ops",), command), command)
        for command in ("Hello", "sayhello"):
            self.assertFalse(self.policy.allows("bob", ("ops",), command), command)
        self.assertTrue(self.policy.allows("alice", (), "whoami"))
        self.assertFalse(self.policy.allows("alice", (), "whoamI"))

    def test_principals(self) -> None:
        """
        A caller's principals are C{*}, C{user:NAME} (if not anonymous) and
        one C{group:NAME} per group.
        """
        self.assertEqual(
            self.policy.principals("bob", ["a", "b"]), {"*", "user:bob", "group:a", "group:b"}
        )
        self.assertEqual(self.policy.principals(None, []), {"*"})


class ConfigFileTests(SynchronousTestCase):
    """
    The C{[acl]} section in a configuration file.
    """

    def test_badKeyFailsLoad(self) -> None:
        """
        A configuration file with a bad C{[acl]} key does not load: the
        error names the file, the section and the key.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = n1\n[acl]\n* = ping\nrole:ops = greet\n")
        error = self.assertRaises(ConfigError, loadConfig, path)
        config = os.path.join(path, "config")
        self.assertEqual((error.path, error.section, error.key), (config, "acl", "role:ops"))
        self.assertIn(f"{config}: [acl] role:ops", str(error))

    def test_badAdminInConfigD(self) -> None:
        """
        A bad C{admins} value in a C{config.d} file is blamed on that file.
        """
        path = writeConfigDir(
            self.mktemp(),
            "[core]\nid = n1\n[acl]\nadmins = user:root\n",
            {"50-acl.conf": "[acl]\nadmins = root\n"},
        )
        error = self.assertRaises(ConfigError, loadConfig, path)
        self.assertEqual(error.path, os.path.join(path, "config.d", "50-acl.conf"))
        self.assertEqual((error.section, error.key), ("acl", "admins"))

    def test_keysKeepCase(self) -> None:
        """
        The keys of C{[acl]} keep their case (user names are
        case-sensitive), and the section reaches the agent's security.
        """
        path = writeConfigDir(
            self.mktemp(), "[core]\nid = n1\n[acl]\nuser:Alice = greet\n* = ping\n"
        )
        config = loadConfig(path)
        self.assertEqual(dict(config.sections["acl"]), {"user:Alice": "greet", "*": "ping"})
        security = Security(config, Clock(), maybeDeferred)
        self.assertTrue(security.allows("Alice", "greet"))
        self.assertFalse(security.allows("alice", "greet"))


class SecurityTests(SynchronousTestCase):
    """
    L{Security} joins the users file (for groups) and the ACL, and logs
    denials.
    """

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.users = os.path.join(directory, "users")
        addUser(self.users, "alice", "pw", ["ops"], rounds=4)
        addUser(self.users, "bob", "pw", [], rounds=4)
        self.config = defaultConfig(
            core=CoreConfig(id="n1", users=self.users), sections={"acl": SECTION}
        )

    def test_groupsFromUsersFile(self) -> None:
        """
        A caller's groups come from the users file, for callers of every
        transport: alice (group ops) may greet, bob may not.
        """
        security = Security(self.config, Clock(), maybeDeferred)
        self.assertIsNotNone(security.users)
        self.assertTrue(security.allows("alice", "greet"))
        self.assertFalse(security.allows("bob", "greet"))
        self.assertTrue(security.allows("bob", "ping"))

    def test_groupChangeAtOnce(self) -> None:
        """
        A change of the users file's groups takes effect on the next
        check.
        """
        security = Security(self.config, Clock(), maybeDeferred)
        self.assertFalse(security.allows("bob", "greet"))
        addUser(self.users, "bob", "pw", ["ops"], rounds=4)
        self.assertTrue(security.allows("bob", "greet"))

    def test_denialLogged(self) -> None:
        """
        A denial is logged with the user, the command and the node;
        anonymous callers are shown as such.
        """
        security = Security(self.config, Clock(), maybeDeferred)
        events = captureLogs(self)
        self.assertFalse(security.allows("bob", "greet"))
        self.assertFalse(security.allows(None, "greet"))
        denials = [e for e in events if "Denied" in e.get("log_format", "")]
        self.assertEqual(
            [(e["user"], e["command"], e["node"]) for e in denials],
            [("bob", "greet", "n1"), ("(anonymous)", "greet", "n1")],
        )
        self.assertIn("Denied: user bob may not call greet on node n1", messages(events))

    def test_noUsersFile(self) -> None:
        """
        Without a users file nobody has groups; the ACL still applies by
        user name.
        """
        config = defaultConfig(core=CoreConfig(id="n1"), sections={"acl": SECTION})
        security = Security(config, Clock(), maybeDeferred)
        self.assertIsNone(security.users)
        self.assertTrue(security.allows("alice", "echo"))
        self.assertFalse(security.allows("alice", "greet"))

    def test_registryRefuses(self) -> None:
        """
        The command registry checks the ACL before running a command: a
        denied call fails with C{PERMISSION_DENIED} (-32002) whose data name
        the user, the command and the node, and the command does not run.
        """
        config = defaultConfig(
            core=CoreConfig(id="n1", domain="test", users=self.users), sections={"acl": SECTION}
        )
        context, _, _ = agentContext(
            {"CommandRegistry": CommandRegistry, "hello": HelloPlugin}, config=config
        )
        registry: Any = context.plugins.get("CommandRegistry")
        registry.collect()
        hello: Any = context.plugins.get("hello")
        failure = self.failureResultOf(
            registry.call("greet", ["x"], CallContext(user="bob")), RPCError
        )
        self.assertEqual(failure.value.code, PERMISSION_DENIED)
        self.assertEqual(failure.value.data, {"user": "bob", "command": "greet", "node": "n1"})
        self.assertEqual(hello.greeted, 0)
        self.assertEqual(
            self.successResultOf(registry.call("greet", ["x"], CallContext(user="alice"))),
            "Hello, x, from n1!",
        )
