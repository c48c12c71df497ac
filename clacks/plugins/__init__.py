"""
Drop-in plugins.

Any C{clacks/plugins/} directory on C{sys.path} belongs to this package (see
L{twisted.plugin.pluginPackagePaths}): a single C{.py} file defining a
L{clacks.common.components.plugin.Plugin} subclass, dropped into such a
directory, is loaded by the agent at its next start.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
