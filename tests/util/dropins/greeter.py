"""
A drop-in module: the plugin class defined here is found by its class name;
the L{Plugin} base class imported here is not a plugin of its own.
"""

from __future__ import annotations

from zope.interface import implementer

from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler


@implementer(IInterfaceHandler)
class DropinGreeter(Plugin):
    """
    An interface handler that counts its calls.
    """

    _priority_ = 5

    served = 0
    stopped = 0

    def serve(self) -> None:
        self.served += 1

    def stop(self) -> None:
        self.stopped += 1


__all__ = ["DropinGreeter", "Plugin"]
