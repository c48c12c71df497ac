"""
Tests for L{clacks.agent.usercli}, C{clacks-agent-user}: editing the users
file from the command line.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Sequence
from typing import Any
from unittest import mock

import bcrypt
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clacks.agent import usercli
from clacks.agent.users import Principal, UserStore, readRecords
from tests.util.configs import writeConfigDir


class UserCLITests(SynchronousTestCase):
    """
    C{run([...])} with C{-f FILE} (or C{-c CONFIG}) and passwords from
    standard input.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "users")
        # Hash with the fewest bcrypt rounds: the tests check what is
        # stored, not how slow it is to guess.
        original = usercli.addUser

        def addUser(*args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("rounds", 4)
            original(*args, **kwargs)

        patcher = mock.patch.object(usercli, "addUser", addUser)
        patcher.start()
        self.addCleanup(patcher.stop)

    def run_(self, argv: Sequence[str], stdin: str = "") -> tuple[int, str, str]:
        """
        Run the command.

        @return: its exit status, standard output and standard error.
        """
        out, err = io.StringIO(), io.StringIO()
        with (
            mock.patch("sys.stdin", io.StringIO(stdin)),
            mock.patch("sys.stdout", out),
            mock.patch("sys.stderr", err),
        ):
            code = usercli.run(list(argv))
        return code, out.getvalue(), err.getvalue()

    def add(self, user: str, password: str = "pw", groups: str = "") -> tuple[int, str, str]:
        argv = ["-f", self.path, "add", user, "--password-stdin"]
        if groups:
            argv += ["--groups", groups]
        return self.run_(argv, password + "\n")

    def test_add(self) -> None:
        """
        C{add USER --groups A,B --password-stdin} creates the file (mode
        0600) with the user's bcrypt hash of the password read from
        standard input (without its newline) and the groups.
        """
        code, out, err = self.add("alice", "s3cret pass", " admins, ops ,")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, f"user alice saved in {self.path}\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        record = readRecords(self.path)["alice"]
        self.assertEqual(record.groups, ("admins", "ops"))
        assert record.password is not None
        self.assertTrue(bcrypt.checkpw(b"s3cret pass", record.password.encode()))

    def test_addAgainChangesPassword(self) -> None:
        """
        Adding an existing user sets their new password and groups.
        """
        self.add("alice", "old", "ops")
        self.add("alice", "new")
        record = readRecords(self.path)["alice"]
        self.assertEqual(record.groups, ())
        assert record.password is not None
        self.assertTrue(bcrypt.checkpw(b"new", record.password.encode()))

    def test_addEmptyPassword(self) -> None:
        """
        An empty password is refused: exit status 1, a message on standard
        error, no file written.
        """
        code, out, err = self.add("alice", "")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "clacks-agent-user: empty password\n")
        self.assertFalse(os.path.exists(self.path))

    def test_addBadName(self) -> None:
        """
        A bad user name is refused with status 1 and says why.
        """
        code, _, err = self.add("a b")
        self.assertEqual(code, 1)
        self.assertIn("user name 'a b'", err)

    def test_addFromTerminal(self) -> None:
        """
        Without C{--password-stdin} the password is asked twice on the
        terminal; two different answers are refused.
        """
        with mock.patch.object(usercli.getpass, "getpass", side_effect=["one", "two"]):
            code, _, err = self.run_(["-f", self.path, "add", "alice"])
        self.assertEqual(code, 1)
        self.assertIn("the passwords differ", err)
        with mock.patch.object(usercli.getpass, "getpass", side_effect=["same", "same"]):
            code, _, _ = self.run_(["-f", self.path, "add", "alice"])
        self.assertEqual(code, 0)
        self.assertIn("alice", readRecords(self.path))

    def test_list(self) -> None:
        """
        C{list} shows one line per user, sorted, with groups and token
        names (C{-} for none), never hashes or tokens.
        """
        self.add("bob")
        self.add("alice", groups="admins,ops")
        _, token, _ = self.run_(["-f", self.path, "token", "alice", "ci"])
        code, out, _ = self.run_(["-f", self.path, "list"])
        self.assertEqual(code, 0)
        self.assertEqual(
            out,
            "alice\tgroups: admins, ops\ttokens: ci\nbob\tgroups: -\ttokens: -\n",
        )
        self.assertNotIn(token.strip(), out)

    def test_listNoFile(self) -> None:
        """
        C{list} of a file that does not exist yet lists nobody.
        """
        self.assertEqual(self.run_(["-f", self.path, "list"]), (0, "", ""))

    def test_tokenAndRevoke(self) -> None:
        """
        C{token USER NAME} prints a new token once (only its digest is
        stored); the agent's store accepts it until C{revoke USER NAME}.
        """
        self.add("alice", groups="ops")
        code, out, _ = self.run_(["-f", self.path, "token", "alice", "ci"])
        self.assertEqual(code, 0)
        token = out.strip()
        self.assertTrue(token.startswith("clacks_"))
        with open(self.path, encoding="utf-8") as f:
            self.assertNotIn(token, f.read())
        store = UserStore(self.path, Clock(), None)
        self.assertEqual(
            store.authenticateToken(token), Principal("alice", frozenset({"ops"}), "token:ci")
        )
        code, out, _ = self.run_(["-f", self.path, "revoke", "alice", "ci"])
        self.assertEqual((code, out), (0, "token ci of alice revoked\n"))
        self.assertIsNone(store.authenticateToken(token))

    def test_tokenUnknownUser(self) -> None:
        """
        A token for an unknown user is refused, telling to add the user.
        """
        self.add("alice")
        code, out, err = self.run_(["-f", self.path, "token", "bob", "ci"])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("no user 'bob'; add the user first", err)

    def test_revokeUnknown(self) -> None:
        """
        Revoking a token that does not exist is refused.
        """
        self.add("alice")
        code, _, err = self.run_(["-f", self.path, "revoke", "alice", "ci"])
        self.assertEqual(code, 1)
        self.assertIn("has no token 'ci'", err)

    def test_remove(self) -> None:
        """
        C{remove USER} removes the user (and with them their tokens);
        removing them again is refused.
        """
        self.add("alice")
        self.add("bob")
        _, out, _ = self.run_(["-f", self.path, "token", "alice", "ci"])
        code, out, _ = self.run_(["-f", self.path, "remove", "alice"])
        self.assertEqual((code, out), (0, f"user alice removed from {self.path}\n"))
        self.assertEqual(list(readRecords(self.path)), ["bob"])
        code, _, err = self.run_(["-f", self.path, "remove", "alice"])
        self.assertEqual(code, 1)
        self.assertIn("no user 'alice'", err)

    def test_fileFromConfig(self) -> None:
        """
        Without C{-f}, the file is C{[core] users} of the configuration
        given with C{-c}.
        """
        self.add("alice")
        config = writeConfigDir(self.mktemp(), f"[core]\nid = n1\nusers = {self.path}\n")
        code, out, _ = self.run_(["-c", config, "list"])
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("alice\t"))

    def test_configWithoutUsers(self) -> None:
        """
        A configuration without C{[core] users} is refused, telling to use
        C{-f}.
        """
        config = writeConfigDir(self.mktemp(), "[core]\nid = n1\n")
        code, _, err = self.run_(["-c", config, "list"])
        self.assertEqual(code, 1)
        self.assertIn("no [core] users file configured; use -f FILE", err)

    def test_brokenFile(self) -> None:
        """
        A broken users file is reported with its path, not a traceback.
        """
        with open(self.path, "w") as f:
            f.write("{")
        code, _, err = self.run_(["-f", self.path, "list"])
        self.assertEqual(code, 1)
        self.assertIn(f"clacks-agent-user: {self.path}: not a JSON document", err)

    def test_usage(self) -> None:
        """
        A missing subcommand is a usage error (exit status 2); C{-f} and
        C{-c} exclude each other.
        """
        with mock.patch("sys.stderr", io.StringIO()):
            error = self.assertRaises(SystemExit, usercli.run, ["-f", self.path])
            self.assertEqual(error.code, 2)
            error = self.assertRaises(
                SystemExit, usercli.run, ["-f", self.path, "-c", "/etc/clacks", "list"]
            )
            self.assertEqual(error.code, 2)

    def test_addPasswordTooLong(self) -> None:
        """
        A password longer than bcrypt takes (72 bytes) is refused with a
        message, not a traceback.
        """
        code, _, err = self.add("alice", "x" * 73)
        self.assertEqual(code, 1)
        self.assertIn("72 bytes", err)
