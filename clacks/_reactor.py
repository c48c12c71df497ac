"""
The one place that turns "no reactor given" into the global reactor.
"""

from __future__ import annotations

from typing import Any


def maybeGlobalReactor(reactor: Any) -> Any:
    """
    @return: C{reactor}, or the global reactor if it is C{None}.  The global
        reactor is imported only here and only when needed, so that modules
        never install a reactor at import time.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        return globalReactor
    return reactor


__all__ = ["maybeGlobalReactor"]
