# -*- test-case-name: tests.test_objects -*-
"""
The object registry: classes of remote objects, by OID.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint

from twisted.logger import Logger

from clacks.common.components._discovery import LoadFailure, loadEntryPoints
from clacks.common.components.registry import PluginFailure

ENTRY_POINT_GROUP = "agent.object"


class DuplicateObjectError(ValueError):
    """
    An OID was registered twice.
    """


class ObjectRegistry:
    """
    The object classes of one agent, by OID.

    They come from the C{agent.object} entry-point group (name = OID, value =
    class) or from L{register}.  An entry point that cannot be loaded is
    logged and listed in L{failures}; the rest are registered.
    """

    log = Logger()

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._origins: dict[str, str] = {}
        self.failures: list[PluginFailure] = []

    def discover(self, entryPoints: Iterable[EntryPoint] | None = None) -> None:
        """
        Register the classes of the C{agent.object} entry points.
        """
        for item in loadEntryPoints(ENTRY_POINT_GROUP, entryPoints):
            if isinstance(item, LoadFailure):
                self.failures.append(PluginFailure(item.name, "load", item.error, item.origin))
                self.log.critical(
                    "Object {oid} failed to load: {error} ({origin}). {traceback}",
                    oid=item.name,
                    error=item.error,
                    origin=item.origin,
                    traceback=item.traceback,
                )
                continue
            try:
                self.register(item.name, item.value, item.origin)
            except (DuplicateObjectError, TypeError) as exc:
                self.failures.append(PluginFailure(item.name, "load", str(exc), item.origin))
                self.log.critical("{error}", error=str(exc))

    def register(self, oid: str, cls: type, origin: str = "registered directly") -> None:
        """
        Register C{cls} under C{oid}.

        @raise DuplicateObjectError: if C{oid} is taken; the first class stays.
        @raise TypeError: if C{cls} is not a class.
        """
        if not isinstance(cls, type):
            raise TypeError(f"object {oid!r} ({origin}) must be a class, not {cls!r}")
        if oid in self._classes:
            raise DuplicateObjectError(
                f"object OID {oid!r} is already registered by "
                f"{self._origins[oid]}; {origin} cannot register it again"
            )
        self._classes[oid] = cls
        self._origins[oid] = origin

    def get(self, oid: str) -> type:
        """
        @raise KeyError: naming the OIDs that exist, if C{oid} does not.
        """
        try:
            return self._classes[oid]
        except KeyError:
            raise KeyError(
                f"no object with OID {oid!r}; known: {', '.join(sorted(self._classes)) or 'none'}"
            ) from None

    def oids(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, oid: object) -> bool:
        return oid in self._classes


__all__ = ["DuplicateObjectError", "ENTRY_POINT_GROUP", "ObjectRegistry"]
