"""
An object class, registered under its OID (the entry point's name,
C{HelloGreeting}) on the C{agent.object} entry-point group.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class HelloGreeting:
    """
    A greeting: who is greeted, and how.
    """

    name: str
    text: str = "Hello"

    def render(self) -> str:
        """
        @return: the greeting as one line.
        """
        return f"{self.text}, {self.name}!"


__all__ = ["HelloGreeting"]
