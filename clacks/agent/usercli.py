# -*- test-case-name: tests.test_usercli -*-
"""
C{clacks-agent-user}: edit the agent's users file.

    clacks-agent-user -f /etc/clacks/users add alice --groups admins,ops
    clacks-agent-user -f /etc/clacks/users token alice ci      # prints the token once
    clacks-agent-user -f /etc/clacks/users list
    clacks-agent-user -f /etc/clacks/users remove alice

The file is found with C{-f FILE}, else C{[core] users} of the agent
configuration given with C{-c} (default C{/etc/clacks}).  Passwords are read
from the terminal (twice), or from standard input with C{--password-stdin}.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from clacks.agent.config import DEFAULT_CONFIG_PATH, ConfigError, loadConfig
from clacks.agent.users import (
    UsersFileError,
    addToken,
    addUser,
    readRecords,
    removeToken,
    removeUser,
)


def buildParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clacks-agent-user", description="Edit the clacks agent's users file."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-f", "--file", help="the users file")
    where.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"agent configuration naming it [{DEFAULT_CONFIG_PATH}]",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a user, or set a user's password and groups")
    add.add_argument("user")
    add.add_argument("--groups", default="", help="comma-separated groups")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    remove = commands.add_parser("remove", help="remove a user and their tokens")
    remove.add_argument("user")
    commands.add_parser("list", help="list users, groups and token names")
    token = commands.add_parser("token", help="issue a bearer token (printed once)")
    token.add_argument("user")
    token.add_argument("name", help="a name for the token, e.g. the tool that uses it")
    revoke = commands.add_parser("revoke", help="revoke a bearer token")
    revoke.add_argument("user")
    revoke.add_argument("name")
    return parser


def _usersFile(options: argparse.Namespace) -> str:
    if options.file:
        return str(options.file)
    path = options.config or DEFAULT_CONFIG_PATH
    config = loadConfig(path)
    if not config.core.users:
        raise UsersFileError(f"{path}: no [core] users file configured; use -f FILE")
    return config.core.users


def _password(options: argparse.Namespace) -> str:
    if options.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {options.user}: ")
        if getpass.getpass("Again: ") != password:
            raise UsersFileError("the passwords differ")
    if not password:
        raise UsersFileError("empty password")
    return password


def run(argv: Sequence[str] | None = None) -> int:
    options = buildParser().parse_args(argv)
    try:
        path = _usersFile(options)
        if options.command == "add":
            groups = [g.strip() for g in options.groups.split(",") if g.strip()]
            addUser(path, options.user, _password(options), groups)
            print(f"user {options.user} saved in {path}")
        elif options.command == "remove":
            removeUser(path, options.user)
            print(f"user {options.user} removed from {path}")
        elif options.command == "token":
            print(addToken(path, options.user, options.name))
        elif options.command == "revoke":
            removeToken(path, options.user, options.name)
            print(f"token {options.name} of {options.user} revoked")
        else:
            for record in readRecords(path).values():
                tokens = ", ".join(name for name, _ in record.tokens) or "-"
                groupNames = ", ".join(record.groups) or "-"
                print(f"{record.name}\tgroups: {groupNames}\ttokens: {tokens}")
    except (UsersFileError, ConfigError, OSError) as e:
        print(f"clacks-agent-user: {e}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
