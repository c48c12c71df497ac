"""
Tests for L{clacks.agent.users}: the users file, password and token checks,
the verified-password memory, and editing the file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from typing import Any
from unittest import mock

import bcrypt
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clacks.agent import users as usersModule
from clacks.agent.users import (
    VERIFIED_TTL,
    Principal,
    UserRecord,
    UsersFileError,
    UserStore,
    addToken,
    addUser,
    readRecords,
    removeToken,
    removeUser,
    tokenDigest,
    writeRecords,
)
from tests.util.logs import captureLogs, messages

#: bcrypt rounds for the tests: the minimum, so hashing is fast.
ROUNDS = 4


class RecordingRunner:
    """
    A C{runBlocking} for L{UserStore} that runs each job at once and
    records it.

    @ivar calls: C{(function, args)} of every job, in order.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        self.calls.append((f, args))
        return maybeDeferred(f, *args)


class UsersFileTestCase(SynchronousTestCase):
    """
    A users file in a directory of its own, and a store reading it.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "users")
        self.clock = Clock()
        self.runner = RecordingRunner()

    def write(self, document: Any) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(document if isinstance(document, str) else json.dumps(document))

    def store(self) -> UserStore:
        return UserStore(self.path, self.clock, self.runner)

    def authenticate(self, store: UserStore, user: str, password: str) -> Principal | None:
        result: Principal | None = self.successResultOf(store.authenticatePassword(user, password))
        return result

    def login(self, store: UserStore, user: str, password: str) -> Principal:
        """
        @return: the principal, failing the test if the password is refused.
        """
        principal = self.authenticate(store, user, password)
        assert principal is not None, f"{user} refused"
        return principal


class ParseTests(UsersFileTestCase):
    """
    A users file that cannot be used is refused with a message naming the
    file and what is wrong.
    """

    def assertRefused(self, document: Any, *fragments: str) -> None:
        self.write(document)
        error = self.assertRaises(UsersFileError, self.store)
        self.assertIn(self.path, str(error))
        for fragment in fragments:
            self.assertIn(fragment, str(error))

    def test_missing(self) -> None:
        """
        A users file that does not exist is refused at start, naming the
        file and the reason.
        """
        error = self.assertRaises(UsersFileError, self.store)
        self.assertIn(self.path, str(error))
        self.assertIn("cannot read the users file", str(error))

    def test_notJSON(self) -> None:
        """
        A file that is not JSON is refused as such.
        """
        self.assertRefused("{nope", "not a JSON document")

    def test_wrongVersion(self) -> None:
        """
        A document without C{"version": 1} (or not an object at all) is
        refused, showing the expected shape.
        """
        self.assertRefused({"version": 2, "users": {}}, '"version": 1')
        self.assertRefused([1, 2], '"version": 1')

    def test_usersNotAnObject(self) -> None:
        """
        C{users} must be an object.
        """
        self.assertRefused({"version": 1, "users": []}, "'users' must be an object")

    def test_badUserName(self) -> None:
        """
        A user name with characters outside letters, digits and C{. _ - @}
        is refused, naming the file and the user.
        """
        self.assertRefused({"version": 1, "users": {"bad name": {}}}, "'bad name'", "letters")

    def test_entryNotAnObject(self) -> None:
        """
        Each user must be an object.
        """
        self.assertRefused({"version": 1, "users": {"alice": "x"}}, "'alice' must be an object")

    def test_passwordNotBcrypt(self) -> None:
        """
        A password that is not a bcrypt hash (a plain-text password, say)
        is refused.
        """
        self.assertRefused(
            {"version": 1, "users": {"alice": {"password": "secret"}}},
            "'alice'",
            "bcrypt hash",
        )

    def test_badGroups(self) -> None:
        """
        Groups must be a list of names.
        """
        self.assertRefused(
            {"version": 1, "users": {"alice": {"groups": "admins"}}}, "'alice'", "groups"
        )

    def test_badTokens(self) -> None:
        """
        Tokens must map names to C{sha256$} digests; a token stored in
        clear is refused.
        """
        self.assertRefused(
            {"version": 1, "users": {"alice": {"tokens": {"ci": "clacks_abc"}}}},
            "'alice'",
            "sha256$",
        )

    def test_brokenLaterKeepsLastGood(self) -> None:
        """
        A file broken after the store read it once is logged, and the users
        read last time still log in.
        """
        addUser(self.path, "alice", "pw", rounds=ROUNDS)
        store = self.store()
        events = captureLogs(self)
        self.write("{broken")
        self.assertEqual(self.authenticate(store, "alice", "pw"), Principal("alice"))
        self.assertTrue(
            any("broken" in m and self.path in m for m in messages(events)), messages(events)
        )

    def test_vanishedKeepsLastGood(self) -> None:
        """
        A file removed after the store read it once is logged, and the
        users read last time still log in.
        """
        addUser(self.path, "alice", "pw", rounds=ROUNDS)
        store = self.store()
        events = captureLogs(self)
        os.unlink(self.path)
        self.assertEqual(self.authenticate(store, "alice", "pw"), Principal("alice"))
        self.assertTrue(any("vanished" in m for m in messages(events)), messages(events))


class PasswordTests(UsersFileTestCase):
    """
    Password checks: right, wrong, unknown users, and the memory of
    verified passwords.
    """

    def setUp(self) -> None:
        super().setUp()
        addUser(self.path, "alice", "wonderland", ["admins", "ops"], rounds=ROUNDS)

    def test_right(self) -> None:
        """
        The right password gives the user with their groups, verified by
        password; the bcrypt check runs through C{runBlocking}, not on the
        reactor thread.
        """
        principal = self.authenticate(self.store(), "alice", "wonderland")
        self.assertEqual(principal, Principal("alice", frozenset({"admins", "ops"}), "password"))
        self.assertEqual([f for f, _ in self.runner.calls], [bcrypt.checkpw])

    def test_wrong(self) -> None:
        """
        A wrong password gives C{None}, and is checked again every time
        (wrong passwords are not remembered).
        """
        store = self.store()
        self.assertIsNone(self.authenticate(store, "alice", "nope"))
        self.assertIsNone(self.authenticate(store, "alice", "nope"))
        self.assertEqual(len(self.runner.calls), 2)

    def test_unknownUserCostsACheck(self) -> None:
        """
        An unknown user gives C{None} after a bcrypt check against a real
        hash of the default cost, so a wrong user name takes as long as a
        wrong password.
        """
        self.assertIsNone(self.authenticate(self.store(), "mallory", "wonderland"))
        [(f, (password, hashed))] = self.runner.calls
        self.assertIs(f, bcrypt.checkpw)
        self.assertEqual(hashed[:7], b"$2b$12$")
        self.assertEqual(len(hashed), 60)

    def test_dummyHashIsValid(self) -> None:
        """
        The hash checked for unknown users is a valid bcrypt hash: checking
        against it answers (false) instead of raising.
        """
        self.assertFalse(bcrypt.checkpw(b"wonderland", usersModule._DUMMY_HASH))

    def test_noPasswordCostsACheck(self) -> None:
        """
        A user with tokens only (no password) cannot log in with a
        password, and the refusal costs a bcrypt check too.
        """
        writeRecords(self.path, [UserRecord("robot", None, ("ci",))])
        self.assertIsNone(self.authenticate(self.store(), "robot", ""))
        self.assertEqual(len(self.runner.calls), 1)

    def test_tooLong(self) -> None:
        """
        A password longer than bcrypt takes (72 bytes) is refused like a
        wrong one, not with an error.
        """
        self.assertIsNone(self.authenticate(self.store(), "alice", "x" * 100))

    def test_remembered(self) -> None:
        """
        A password verified once is not hashed again while remembered: ten
        logins cost one bcrypt check.
        """
        store = self.store()
        for _ in range(10):
            self.assertEqual(self.login(store, "alice", "wonderland").user, "alice")
        self.assertEqual(len(self.runner.calls), 1)

    def test_concurrentFirstLogins(self) -> None:
        """
        Logins with the same credentials that arrive while the first check
        still runs wait for it instead of each running bcrypt; all get the
        answer, and a wrong password is not shared with the right one.
        """
        pending: list[Deferred[Any]] = []
        store = UserStore(
            self.path, self.clock, lambda f, *a: pending.append(Deferred()) or pending[-1]
        )
        waiting = [store.authenticatePassword("alice", "wonderland") for _ in range(5)]
        wrong = store.authenticatePassword("alice", "nope")
        self.assertEqual(len(pending), 2)
        pending[0].callback(True)
        pending[1].callback(False)
        self.assertEqual([self.successResultOf(d).user for d in waiting], ["alice"] * 5)
        self.assertIsNone(self.successResultOf(wrong))

    def test_memoryKeyedByDigest(self) -> None:
        """
        The memory keeps no password: its keys are keyed digests.
        """
        store = self.store()
        self.authenticate(store, "alice", "wonderland")
        self.assertEqual(len(store._verified), 1)
        for key in store._verified:
            self.assertNotIn(b"wonderland", key)
            self.assertEqual(len(key), 32)

    def test_memoryExpires(self) -> None:
        """
        After L{VERIFIED_TTL} seconds the password is checked again.
        """
        store = self.store()
        self.authenticate(store, "alice", "wonderland")
        self.clock.advance(VERIFIED_TTL - 1)
        self.authenticate(store, "alice", "wonderland")
        self.assertEqual(len(self.runner.calls), 1)
        self.clock.advance(2)
        self.assertEqual(self.login(store, "alice", "wonderland").user, "alice")
        self.assertEqual(len(self.runner.calls), 2)

    def test_changedPassword(self) -> None:
        """
        A changed password takes effect on the next check: the remembered
        old password is refused, the new one accepted.
        """
        store = self.store()
        self.authenticate(store, "alice", "wonderland")
        addUser(self.path, "alice", "looking-glass", ["admins"], rounds=ROUNDS)
        self.assertIsNone(self.authenticate(store, "alice", "wonderland"))
        principal = self.authenticate(store, "alice", "looking-glass")
        self.assertEqual(principal, Principal("alice", frozenset({"admins"})))

    def test_changedGroups(self) -> None:
        """
        Changed groups take effect on the next check, even for a remembered
        password.
        """
        store = self.store()
        self.authenticate(store, "alice", "wonderland")
        records = readRecords(self.path)
        records["alice"] = UserRecord("alice", records["alice"].password, ("readers",))
        writeRecords(self.path, records.values())
        self.assertEqual(self.login(store, "alice", "wonderland").groups, frozenset({"readers"}))
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(store.groupsOf("alice"), frozenset({"readers"}))

    def test_removedUser(self) -> None:
        """
        A removed user is refused on the next check, although their
        password was remembered.
        """
        store = self.store()
        self.authenticate(store, "alice", "wonderland")
        removeUser(self.path, "alice")
        self.assertIsNone(self.authenticate(store, "alice", "wonderland"))
        self.assertEqual(store.groupsOf("alice"), frozenset())

    def test_groupsOf(self) -> None:
        """
        L{UserStore.groupsOf} gives a user's groups; none for unknown and
        anonymous users.
        """
        store = self.store()
        self.assertEqual(store.groupsOf("alice"), frozenset({"admins", "ops"}))
        self.assertEqual(store.groupsOf("mallory"), frozenset())
        self.assertEqual(store.groupsOf(None), frozenset())


class TokenTests(UsersFileTestCase):
    """
    Bearer tokens: issued once, stored as digests, revoked at once.
    """

    def setUp(self) -> None:
        super().setUp()
        addUser(self.path, "alice", "wonderland", ["ops"], rounds=ROUNDS)
        self.token = addToken(self.path, "alice", "ci")

    def test_stored(self) -> None:
        """
        Only the token's SHA-256 digest is stored, under its name.
        """
        self.assertTrue(self.token.startswith("clacks_"))
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn(self.token, text)
        self.assertEqual(
            dict(readRecords(self.path)["alice"].tokens), {"ci": tokenDigest(self.token)}
        )

    def test_authenticate(self) -> None:
        """
        The token gives its user, with their groups, verified by that
        token; no bcrypt check is needed.
        """
        principal = self.store().authenticateToken(self.token)
        self.assertEqual(principal, Principal("alice", frozenset({"ops"}), "token:ci"))
        self.assertEqual(self.runner.calls, [])

    def test_wrong(self) -> None:
        """
        An unknown token gives C{None}.
        """
        self.assertIsNone(self.store().authenticateToken(self.token + "x"))
        self.assertIsNone(self.store().authenticateToken(""))

    def test_revoked(self) -> None:
        """
        A revoked token is refused on the next check; the user's other
        tokens still work.
        """
        store = self.store()
        other = addToken(self.path, "alice", "backup")
        removeToken(self.path, "alice", "ci")
        self.assertIsNone(store.authenticateToken(self.token))
        self.assertEqual(
            store.authenticateToken(other), Principal("alice", frozenset({"ops"}), "token:backup")
        )

    def test_removedUser(self) -> None:
        """
        Removing a user revokes their tokens.
        """
        store = self.store()
        removeUser(self.path, "alice")
        self.assertIsNone(store.authenticateToken(self.token))

    def test_passwordChangeKeepsTokens(self) -> None:
        """
        Setting a user's password again keeps their tokens; their groups
        are the ones given this time.
        """
        addUser(self.path, "alice", "new", ["readers"], rounds=ROUNDS)
        self.assertEqual(
            self.store().authenticateToken(self.token),
            Principal("alice", frozenset({"readers"}), "token:ci"),
        )


class EditTests(UsersFileTestCase):
    """
    Editing the file: atomic, private, and refusing what cannot work.
    """

    def test_mode(self) -> None:
        """
        The file is written with mode 0600, whatever the umask, and no
        temporary file is left behind.
        """
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        addUser(self.path, "alice", "pw", rounds=ROUNDS)
        addToken(self.path, "alice", "ci")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.directory), ["users"])

    def test_atomic(self) -> None:
        """
        The file is replaced in one step: a new file (new inode) takes the
        old one's place, so readers see the old or the new file, never half
        of one.
        """
        addUser(self.path, "alice", "pw", rounds=ROUNDS)
        before = os.stat(self.path).st_ino
        with open(self.path, "rb") as reader:
            addUser(self.path, "bob", "pw", rounds=ROUNDS)
            self.assertEqual(json.loads(reader.read())["users"].keys(), {"alice"})
        self.assertNotEqual(os.stat(self.path).st_ino, before)
        self.assertEqual(sorted(readRecords(self.path)), ["alice", "bob"])

    def test_failedWriteKeepsFile(self) -> None:
        """
        When writing fails half-way, the old file stays as it was and the
        temporary file is removed.
        """
        addUser(self.path, "alice", "pw", rounds=ROUNDS)
        with open(self.path, "rb") as f:
            before = f.read()
        with mock.patch.object(usersModule, "_serialise", side_effect=RuntimeError("disk full")):
            self.assertRaises(RuntimeError, addUser, self.path, "bob", "pw", rounds=ROUNDS)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.listdir(self.directory), ["users"])

    def test_roundTrip(self) -> None:
        """
        What is written reads back the same: version 1, bcrypt hashes of
        the given cost, groups in order, token digests by name.
        """
        addUser(self.path, "alice", "pw", ["admins", "ops"], rounds=ROUNDS)
        addToken(self.path, "alice", "ci")
        with open(self.path, encoding="utf-8") as f:
            document = json.load(f)
        self.assertEqual(document["version"], 1)
        entry = document["users"]["alice"]
        self.assertTrue(entry["password"].startswith("$2b$04$"))
        self.assertEqual(entry["groups"], ["admins", "ops"])
        self.assertEqual(list(entry["tokens"]), ["ci"])
        self.assertEqual(self.store().users(), list(readRecords(self.path).values()))

    def test_groupsFromIterator(self) -> None:
        """
        Groups given as an iterator are all saved.
        """
        addUser(self.path, "alice", "pw", iter(["admins", "ops"]), rounds=ROUNDS)
        self.assertEqual(readRecords(self.path)["alice"].groups, ("admins", "ops"))

    def test_badNames(self) -> None:
        """
        Bad user, group and token names are refused, naming what is wrong;
        the file is not created.
        """
        error = self.assertRaises(UsersFileError, addUser, self.path, "a b", "pw", rounds=ROUNDS)
        self.assertIn("user name 'a b'", str(error))
        error = self.assertRaises(
            UsersFileError, addUser, self.path, "alice", "pw", ["x/y"], rounds=ROUNDS
        )
        self.assertIn("group name 'x/y'", str(error))
        self.assertFalse(os.path.exists(self.path))
        addUser(self.path, "alice", "pw", rounds=ROUNDS)
        error = self.assertRaises(UsersFileError, addToken, self.path, "alice", "a b")
        self.assertIn("token name 'a b'", str(error))

    def test_passwordTooLong(self) -> None:
        """
        A password longer than bcrypt takes is refused when it is set.
        """
        error = self.assertRaises(
            UsersFileError, addUser, self.path, "alice", "x" * 73, rounds=ROUNDS
        )
        self.assertIn("72 bytes", str(error))

    def test_unknownUser(self) -> None:
        """
        Removing an unknown user, or giving or revoking a token of one, is
        refused naming the file and the user.
        """
        addUser(self.path, "alice", "pw", rounds=ROUNDS)
        for f, args in [
            (removeUser, ("bob",)),
            (addToken, ("bob", "ci")),
            (removeToken, ("bob", "ci")),
            (removeToken, ("alice", "ci")),
        ]:
            error = self.assertRaises(UsersFileError, f, self.path, *args)
            self.assertIn(self.path, str(error))
            self.assertIn(repr(args[-1]) if f is removeToken else "'bob'", str(error))
