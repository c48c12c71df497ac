"""
Running C{rabbitmqctl} against the test broker (the local RabbitMQ), for
tests that need a second broker user.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

#: Prefix of the users the tests create.
USER_PREFIX = "clacks-test-user"


class RabbitmqctlError(Exception):
    """
    C{rabbitmqctl} failed; the message has its output.
    """


def rabbitmqctlPath() -> str:
    """
    @return: the path of C{rabbitmqctl}.
    @raise SkipTest: if it is not installed (or the test broker is not the
        local one).
    """
    if os.environ.get("CLACKS_TEST_AMQP_URL"):
        raise SkipTest("rabbitmqctl manages the local broker only, not CLACKS_TEST_AMQP_URL")
    path = shutil.which("rabbitmqctl")
    if path is None:
        raise SkipTest("rabbitmqctl is not installed")
    return path


@inlineCallbacks
def rabbitmqctl(*args: str, timeout: float = 60.0) -> Generator[Deferred[Any], Any, str]:
    """
    Run C{rabbitmqctl ARGS} (without blocking the reactor).

    @return: its standard output.
    @raise RabbitmqctlError: if it exits with a non-zero status.
    """
    from twisted.internet import reactor

    path = rabbitmqctlPath()
    d = getProcessOutputAndValue(path, ["-q", *args], env=dict(os.environ), reactor=reactor)
    out, err, code = yield d.addTimeout(timeout, reactor)
    if code != 0:
        raise RabbitmqctlError(
            f"rabbitmqctl {' '.join(args)}: exit status {code}\n"
            f"{out.decode(errors='replace')}{err.decode(errors='replace')}"
        )
    return out.decode("utf-8", "replace")


@inlineCallbacks
def temporaryUser(testCase: TestCase) -> Generator[Deferred[Any], Any, tuple[str, str]]:
    """
    Create a broker user (random name and password) with full permissions
    on the C{/} virtual host, deleted after the test.

    @return: its name and password.
    """
    name = f"{USER_PREFIX}-{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    yield rabbitmqctl("add_user", name, password)
    testCase.addCleanup(rabbitmqctl, "delete_user", name)
    yield rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
    return name, password


__all__ = ["RabbitmqctlError", "USER_PREFIX", "rabbitmqctl", "rabbitmqctlPath", "temporaryUser"]
