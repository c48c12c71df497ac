# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd clacks-agent} plugin: options and service maker.

The reactor is imported only inside L{makeService}, never at import time,
so that twistd can install the reactor the user picked.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from clacks._reactor import maybeGlobalReactor
from clacks.agent.config import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError, loadConfig
from clacks.common.components.registry import PluginError


def loadAgentConfig(path: str, url: str | None = None) -> AgentConfig:
    """
    Load the configuration at C{path}, with C{--url} overriding
    C{[amqp] url}.

    @raise ConfigError: if it cannot be used.
    """
    overrides = {("amqp", "url"): url} if url else {}
    return loadConfig(path, overrides)


class Options(usage.Options):
    """
    Options of C{twistd clacks-agent}.
    """

    synopsis = "[twistd options] clacks-agent [-c CONFIG] [--url URL]"
    longdesc = "Run the clacks agent: its plugins, AMQP and HTTP handlers."
    optParameters = [
        [
            "config",
            "c",
            DEFAULT_CONFIG_PATH,
            "read configuration from FILE or DIR (DIR/config, DIR/config.d/*.conf)",
        ],
        ["url", None, None, "AMQP broker URL (overrides [amqp] url)"],
    ]

    agentConfig: AgentConfig

    def postOptions(self) -> None:
        try:
            self.agentConfig = loadAgentConfig(self["config"], self["url"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    @return: the agent's L{MultiService}.
    @raise usage.UsageError: if a plugin fails under C{core.strict-plugins}.
    """
    from clacks.agent.service import makeAgent

    reactor = maybeGlobalReactor(reactor)
    try:
        return makeAgent(options.agentConfig, reactor=reactor)
    except PluginError as e:
        raise usage.UsageError(str(e)) from None


__all__ = ["Options", "loadAgentConfig", "makeService"]
