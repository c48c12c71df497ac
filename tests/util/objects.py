"""
Object classes for in-process tests of the object registry.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint

from clacks.common.components.objects import ENTRY_POINT_GROUP


def objectEntryPoint(oid: str, attribute: str) -> EntryPoint:
    """
    @return: an C{agent.object} entry point registering C{attribute} of this
        module under C{oid}.
    """
    return EntryPoint(oid, f"{__name__}:{attribute}", ENTRY_POINT_GROUP)


class Thing:
    """
    An object class.
    """


class OtherThing:
    """
    Another object class.
    """


notAClass = 42

__all__ = ["OtherThing", "Thing", "notAClass", "objectEntryPoint"]
