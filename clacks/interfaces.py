# -*- test-case-name: tests.test_registry -*-
"""
The seams of clacks-agent, as C{zope.interface} interfaces.

Every implementation in the project says C{@implementer(...)} for one of
these, so that tests (and embedders) can swap any seam for a fake.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

from clacks.common.handler import IInterfaceHandler


class IPlugin(Interface):
    """
    A loaded plugin: one instance per agent, created with the agent's
    L{IAgentContext}.
    """

    context = Attribute("The L{IAgentContext} the plugin was created with.")


class IPluginFactory(Interface):
    """
    Something that makes an L{IPlugin}: in practice a subclass of
    L{clacks.common.components.plugin.Plugin}, whose metaclass declares this.
    """

    _priority_ = Attribute("int: lower starts first; ties are broken by plugin name.")
    _target_ = Attribute("str: the command namespace of the plugin's commands.")
    __name__ = Attribute("str: the class name, used as the name of drop-ins.")

    def __call__(context: IAgentContext) -> IPlugin:
        """
        Create the plugin for one agent.

        @param context: the agent that loads the plugin.
        @return: the plugin instance.
        """


class IAgentContext(Interface):
    """
    What a plugin is handed by the agent that loads it.  Nothing in it is
    process-global: several agents may run in one process.
    """

    config = Attribute("The L{clacks.agent.config.AgentConfig} of the agent.")
    plugins = Attribute("The agent's L{clacks.common.components.registry.PluginRegistry}.")
    objects = Attribute("The agent's L{clacks.common.components.objects.ObjectRegistry}.")
    reactor = Attribute(
        "The reactor the agent runs on; provides at least IReactorTime, "
        "IReactorTCP and IReactorThreads (tests hand in a Clock-based fake)."
    )
    workers = Attribute("The agent's bounded L{IWorkerPool} for blocking code.")

    def status() -> dict[str, Any]:
        """
        @return: a JSON-ready snapshot of the agent's own state (plugins that
            failed, calls in flight, ...), used by status events and health.
        """


class IWorkerPool(Interface):
    """
    A bounded pool of threads for blocking plugin code, so that the reactor
    thread stays free for heartbeats and status events.
    """

    size = Attribute("int: the number of worker threads.")

    def run(f: Any, *args: Any, **kwargs: Any) -> Any:
        """
        Run C{f(*args, **kwargs)} in a worker thread.

        @return: a Deferred firing in the reactor thread with the result, or
            failing with the exception C{f} raised.
        """

    def busy() -> int:
        """
        @return: how many workers are running a job right now.
        """


__all__ = [
    "IAgentContext",
    "IInterfaceHandler",
    "IPlugin",
    "IPluginFactory",
    "IWorkerPool",
]
