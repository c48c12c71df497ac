# -*- test-case-name: tests.test_main -*-
"""
The C{clacks-agent} command: the agent in the foreground.

It runs the same service as C{twistd clacks-agent} and stops cleanly, with
exit status 0, on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from clacks import __version__
from clacks._reactor import maybeGlobalReactor
from clacks.agent.config import DEFAULT_CONFIG_PATH, ConfigError
from clacks.agent.tap import loadAgentConfig
from clacks.common.components.registry import PluginError

log = Logger(namespace="clacks.agent")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def buildParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clacks-agent", usage="clacks-agent - the clacks core daemon"
    )
    parser.add_argument("--version", action="version", version=f"clacks-agent {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=DEFAULT_CONFIG_PATH,
        help=f"read configuration from FILE [{DEFAULT_CONFIG_PATH}]",
    )
    parser.add_argument("--url", metavar="URL", help="AMQP broker URL")
    parser.add_argument(
        "--profile",
        action="store_true",
        default=False,
        help="write profiling information [False]",
    )
    return parser


def startLogging(debug: bool, stream: TextIO = sys.stdout) -> None:
    level = LogLevel.debug if debug else LogLevel.info
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(stream), [predicate])],
        redirectStandardIO=False,
    )


def run(argv: Sequence[str] | None = None, reactor: Any = None) -> int:
    """
    Parse C{argv}, run the agent until it is stopped, and return the exit
    status.
    """
    options = buildParser().parse_args(argv)
    try:
        config = loadAgentConfig(options.config, options.url)
    except ConfigError as e:
        print(f"clacks-agent: {e}", file=sys.stderr)
        return EXIT_USAGE
    reactor = maybeGlobalReactor(reactor)
    startLogging(config.core.debug)
    from clacks.agent.service import makeAgent

    try:
        agent = makeAgent(config, reactor=reactor)
    except PluginError as e:
        log.critical("Fatal: {error}", error=str(e))
        return EXIT_FAILED
    # Modules, plugins and schemas live as long as the process: move them
    # out of the garbage collector's sight, so that its full collections
    # scan only what the agent made since (measured: ~64 000 objects and a
    # 45 ms pause every few thousand calls before, ~3 200 and 2 ms after).
    gc.freeze()
    reactor.callWhenRunning(agent.startService)
    reactor.addSystemEventTrigger("before", "shutdown", agent.stopService)
    if options.profile:
        _runProfiled(reactor)
    else:
        reactor.run()
    return EXIT_FAILED if agent.fatalError else EXIT_OK


def _runProfiled(reactor: Any) -> None:
    import cProfile

    path = os.path.abspath(f"clacks-agent-{os.getpid()}.prof")
    profiler = cProfile.Profile()
    try:
        profiler.runcall(reactor.run)
    finally:
        profiler.dump_stats(path)
        log.info(
            "Profile written to {path} (read it with: python -m pstats {path})",
            path=path,
        )


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
