"""
An object class, registered under its OID (the entry point's name,
C{HelloGreeting}) on the C{agent.object} entry-point group.
"""

from __future__ import annotations

import attrs


@attrs.define
class HelloGreeting:
    """
    A greeting: who is greeted, and how.  Opened remotely with
    C{openObject("HelloGreeting", name)}; its properties can be read and set
    and C{render} called through the object commands.
    """

    name: str
    text: str = "Hello"

    def render(self) -> str:
        """
        @return: the greeting as one line.
        """
        return f"{self.text}, {self.name}!"


__all__ = ["HelloGreeting"]
