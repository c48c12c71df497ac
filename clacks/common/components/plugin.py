# -*- test-case-name: tests.test_registry -*-
"""
The base class of clacks plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from twisted.logger import Logger
from twisted.plugin import IPlugin as ITwistedPlugin
from zope.interface import implementer

from clacks.interfaces import IPlugin, IPluginFactory

if TYPE_CHECKING:
    from clacks.interfaces import IAgentContext


@implementer(IPluginFactory, ITwistedPlugin)
class PluginType(type):
    """
    Metaclass of L{Plugin}.  It makes every plugin class provide
    L{IPluginFactory} and Twisted's C{IPlugin}, so that a plugin class in a
    drop-in file of the C{clacks.plugins} package is found by
    L{twisted.plugin.getPlugins} without any extra declaration.
    """

    _priority_: int
    _target_: str


@implementer(IPlugin)
class Plugin(metaclass=PluginType):
    """
    Base class of plugins.

    Subclass it, set C{_priority_} and C{_target_} if the defaults do not fit,
    and register the class on the C{agent.module} entry-point group (or drop
    the module into a C{clacks/plugins/} directory on C{sys.path}).

    A plugin that also declares
    L{clacks.common.handler.IInterfaceHandler} is an interface handler: the
    agent calls its C{serve()} at start and C{stop()} at shutdown.

    @cvar _priority_: lower starts first; ties are broken by plugin name.
    @cvar _target_: the command namespace of this plugin's commands.
    @ivar context: the L{IAgentContext} of the agent that loaded the plugin.
    @ivar log: a logger whose namespace is the plugin's class.
    """

    _priority_: ClassVar[int] = 50
    _target_: ClassVar[str] = "core"

    def __init__(self, context: IAgentContext) -> None:
        self.context = context
        self.log = Logger(namespace=f"{type(self).__module__}.{type(self).__qualname__}")


__all__ = ["Plugin", "PluginType"]
