"""
An example clacks-agent plugin package.

Three things are registered in C{setup.cfg}: the plugin L{HelloPlugin}, the
interface handler L{HelloHandler} (both on the C{agent.module} entry-point
group) and the object class L{HelloGreeting} (on C{agent.object}).
"""

from clacks_hello.handler import HelloHandler
from clacks_hello.objects import HelloGreeting
from clacks_hello.plugin import HelloPlugin

__all__ = ["HelloGreeting", "HelloHandler", "HelloPlugin"]
