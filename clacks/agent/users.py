# -*- test-case-name: tests.test_users -*-
"""
The users file: who may log in over HTTP, with which password or bearer
token, and in which groups (for the ACL, also for AMQP callers).

The file is JSON, written by C{clacks-agent-user}::

    {"version": 1,
     "users": {"alice": {"password": "$2b$12$...",
                         "groups": ["admins"],
                         "tokens": {"ci": "sha256$9f86d0..."}}}}

Passwords are bcrypt hashes (slow on purpose).  Tokens are random, so a
SHA-256 digest is enough.  The agent re-reads the file when it changes, so
an added, changed or removed user takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from typing import Any

import attrs
import bcrypt
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

FORMAT_VERSION = 1
BCRYPT_ROUNDS = 12
#: Seconds a verified password is remembered (keyed by a keyed digest).
VERIFIED_TTL = 300.0
_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")
# A real bcrypt hash to check against for unknown users, so that a wrong
# user name costs as much time as a wrong password.
_DUMMY_HASH = b"$2b$12$C6UzMDM.H6dfI/f/IKcEeO5xHGnrBF2JOYrTnkkEWpXYNNsAiOK.e"


class UsersFileError(Exception):
    """
    The users file cannot be used; the message says where and why.
    """


@attrs.frozen
class Principal:
    """
    An authenticated caller.

    @ivar user: the user name.
    @ivar groups: the user's groups.
    @ivar via: how they proved it: C{"password"} or C{"token:<name>"}.
    """

    user: str
    groups: frozenset[str] = frozenset()
    via: str = "password"


@attrs.frozen
class UserRecord:
    name: str
    password: str | None
    groups: tuple[str, ...] = ()
    tokens: tuple[tuple[str, str], ...] = ()


def _checkName(name: str, what: str = "user name") -> str:
    if not name or not set(name) <= _USERNAME_CHARS:
        raise UsersFileError(f"{what} {name!r}: use letters, digits and . _ - @ only")
    return name


def tokenDigest(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


#: bcrypt uses at most this many bytes of a password (bcrypt 5 refuses more).
MAX_PASSWORD_BYTES = 72


def hashPassword(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """
    @raise UsersFileError: if the password is longer than bcrypt allows.
    """
    secret = password.encode("utf-8")
    if len(secret) > MAX_PASSWORD_BYTES:
        raise UsersFileError(f"password too long: bcrypt takes at most {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds)).decode("ascii")


def _parse(path: str, data: bytes) -> dict[str, UserRecord]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise UsersFileError(f"{path}: not a JSON document: {e}") from None
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise UsersFileError(f'{path}: expected {{"version": 1, "users": {{...}}}}')
    users = document.get("users", {})
    if not isinstance(users, dict):
        raise UsersFileError(f"{path}: 'users' must be an object")
    records = {}
    for name, entry in users.items():
        try:
            _checkName(name)
        except UsersFileError as e:
            raise UsersFileError(f"{path}: {e}") from None
        if not isinstance(entry, dict):
            raise UsersFileError(f"{path}: user {name!r} must be an object")
        password = entry.get("password")
        if password is not None and not (isinstance(password, str) and password.startswith("$2")):
            raise UsersFileError(f"{path}: user {name!r}: password must be a bcrypt hash")
        groups = entry.get("groups", [])
        tokens = entry.get("tokens", {})
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise UsersFileError(f"{path}: user {name!r}: groups must be a list of names")
        if not isinstance(tokens, dict) or not all(
            isinstance(v, str) and v.startswith("sha256$") for v in tokens.values()
        ):
            raise UsersFileError(f"{path}: user {name!r}: tokens must map names to sha256$ digests")
        records[name] = UserRecord(name, password, tuple(groups), tuple(sorted(tokens.items())))
    return records


def _serialise(records: Iterable[UserRecord]) -> bytes:
    users = {
        r.name: {
            **({"password": r.password} if r.password else {}),
            "groups": list(r.groups),
            "tokens": dict(r.tokens),
        }
        for r in sorted(records, key=lambda r: r.name)
    }
    return (json.dumps({"version": FORMAT_VERSION, "users": users}, indent=2) + "\n").encode()


class UserStore:
    """
    The users file, re-read when it changes, and password checks that
    never block the reactor.

    @param path: the users file.
    @param clock: for the verified-password memory.
    @param runBlocking: runs bcrypt off the reactor thread (the agent's
        worker pool C{run}); returns a Deferred.
    """

    log = Logger()

    def __init__(self, path: str, clock: Any, runBlocking: Any) -> None:
        self.path = path
        self._clock = clock
        self._runBlocking = runBlocking
        self._records: dict[str, UserRecord] = {}
        self._tokens: dict[str, tuple[str, str]] = {}
        self._stamp: tuple[float, int, int] | None = None
        self._secret = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[float, str]] = {}
        self._checking: dict[bytes, Deferred[Principal | None]] = {}
        self.refresh()

    # Reading

    def refresh(self) -> None:
        """
        Re-read the file if it changed since the last read.

        @raise UsersFileError: if it cannot be read the first time; later,
            a broken file is logged and the last good one is kept.
        """
        try:
            st = os.stat(self.path)
        except OSError as e:
            if self._stamp is None:
                raise UsersFileError(
                    f"{self.path}: cannot read the users file: {e.strerror}"
                ) from None
            self.log.error("Users file {path} vanished; keeping the last one read", path=self.path)
            return
        stamp = (st.st_mtime, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, "rb") as f:
                records = _parse(self.path, f.read())
        except (OSError, UsersFileError) as e:
            if self._stamp is None:
                raise UsersFileError(str(e)) from None
            self.log.error("Users file is broken, keeping the last good one: {error}", error=str(e))
            self._stamp = stamp
            return
        self._records = records
        self._tokens = {
            digest: (record.name, tokenName)
            for record in records.values()
            for tokenName, digest in record.tokens
        }
        self._stamp = stamp
        self.log.info("Read {count} user(s) from {path}", count=len(records), path=self.path)

    def groupsOf(self, user: str | None) -> frozenset[str]:
        self.refresh()
        record = self._records.get(user or "")
        return frozenset(record.groups) if record else frozenset()

    def users(self) -> list[UserRecord]:
        self.refresh()
        return [self._records[n] for n in sorted(self._records)]

    # Authentication

    def authenticateToken(self, token: str) -> Principal | None:
        self.refresh()
        found = self._tokens.get(tokenDigest(token))
        if found is None:
            return None
        user, name = found
        record = self._records[user]
        return Principal(user, frozenset(record.groups), f"token:{name}")

    def authenticatePassword(self, user: str, password: str) -> Deferred[Principal | None]:
        """
        @return: a Deferred with the principal, or C{None} if the user or
            password is wrong.  A password checked recently against the
            same hash is not checked again.
        """
        self.refresh()
        record = self._records.get(user)
        key = hmac.new(self._secret, f"{user}\0{password}".encode(), "sha256").digest()
        now = self._clock.seconds()
        remembered = self._verified.get(key)
        if remembered is not None:
            expires, hashed = remembered
            if record is not None and record.password == hashed and expires > now:
                return succeed(Principal(user, frozenset(record.groups)))
            del self._verified[key]
        # Concurrent first logins with the same credentials share one
        # check instead of each costing a bcrypt run.
        running = self._checking.get(key)
        if running is None:
            running = self._verify(user, password, record, key)
            self._checking[key] = running

            def done(result: Any) -> Any:
                self._checking.pop(key, None)
                return result

            running.addBoth(done)
        result: Deferred[Principal | None] = Deferred()

        def share(outcome: Any) -> Any:
            # Each waiter gets its own copy; the shared check keeps none.
            if isinstance(outcome, Failure):
                result.errback(outcome)
                return None
            result.callback(outcome)
            return outcome

        running.addBoth(share)
        return result

    @inlineCallbacks
    def _verify(self, user: str, password: str, record: UserRecord | None, key: bytes) -> Any:
        hashed = record.password if record is not None and record.password else None
        secret = password.encode("utf-8")
        if len(secret) > MAX_PASSWORD_BYTES:
            # No stored password can match (see hashPassword); bcrypt 5
            # would raise instead of answering.
            return None
        ok = yield self._runBlocking(bcrypt.checkpw, secret, (hashed or "").encode() or _DUMMY_HASH)
        if not ok or hashed is None or record is None:
            return None
        self._remember(key, hashed)
        return Principal(user, frozenset(record.groups))

    def _remember(self, key: bytes, hashed: str) -> None:
        now = self._clock.seconds()
        if len(self._verified) > 10000:
            self._verified = {k: v for k, v in self._verified.items() if v[0] > now}
        self._verified[key] = (now + VERIFIED_TTL, hashed)


# Editing (for clacks-agent-user)


def readRecords(path: str) -> dict[str, UserRecord]:
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        return _parse(path, f.read())


def writeRecords(path: str, records: Iterable[UserRecord]) -> None:
    """
    Replace the file atomically (readers never see half a file), mode 0600.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".users.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_serialise(records))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def addUser(
    path: str, name: str, password: str, groups: Iterable[str] = (), rounds: int = BCRYPT_ROUNDS
) -> None:
    records = readRecords(path)
    _checkName(name)
    groups = tuple(groups)
    for group in groups:
        _checkName(group, "group name")
    existing = records.get(name)
    tokens = existing.tokens if existing else ()
    records[name] = UserRecord(name, hashPassword(password, rounds), tuple(groups), tokens)
    writeRecords(path, records.values())


def removeUser(path: str, name: str) -> None:
    records = readRecords(path)
    if name not in records:
        raise UsersFileError(f"{path}: no user {name!r}")
    del records[name]
    writeRecords(path, records.values())


def addToken(path: str, user: str, tokenName: str) -> str:
    """
    @return: the new token (shown once; only its digest is stored).
    """
    records = readRecords(path)
    record = records.get(user)
    if record is None:
        raise UsersFileError(f"{path}: no user {user!r}; add the user first")
    _checkName(tokenName, "token name")
    token = f"clacks_{secrets.token_urlsafe(32)}"
    tokens = dict(record.tokens)
    tokens[tokenName] = tokenDigest(token)
    records[user] = attrs.evolve(record, tokens=tuple(sorted(tokens.items())))
    writeRecords(path, records.values())
    return token


def removeToken(path: str, user: str, tokenName: str) -> None:
    records = readRecords(path)
    record = records.get(user)
    if record is None or tokenName not in dict(record.tokens):
        raise UsersFileError(f"{path}: user {user!r} has no token {tokenName!r}")
    tokens = {k: v for k, v in record.tokens if k != tokenName}
    records[user] = attrs.evolve(record, tokens=tuple(sorted(tokens.items())))
    writeRecords(path, records.values())


__all__ = [
    "Principal",
    "UserRecord",
    "UserStore",
    "UsersFileError",
    "addToken",
    "addUser",
    "hashPassword",
    "readRecords",
    "removeToken",
    "removeUser",
    "tokenDigest",
    "writeRecords",
]
