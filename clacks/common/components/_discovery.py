# -*- test-case-name: tests.test_registry -*-
"""
Where plugins and objects come from: setuptools entry points and Twisted
drop-in files.  Discovery never raises; what cannot be loaded is returned as
a L{LoadFailure} so the registry can report it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, cast

import attrs
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from zope.interface import provider
from zope.interface.interface import InterfaceClass


@attrs.frozen
class Found:
    """
    A loaded entry point or drop-in object.

    @ivar name: the entry point's name, or the drop-in object's name.
    @ivar value: the loaded object.
    @ivar origin: where it came from, for log lines a human reads.
    """

    name: str
    value: Any
    origin: str


@attrs.frozen
class LoadFailure:
    """
    An entry point or drop-in module that could not be loaded.

    @ivar name: the entry point's name, or the drop-in package.
    @ivar origin: where it came from.
    @ivar error: one line: exception type and message.
    @ivar traceback: the formatted traceback, for the log.
    """

    name: str
    origin: str
    error: str
    traceback: str


def describeException(exc: BaseException) -> str:
    """
    @return: C{"TypeName: message"} on one line.
    """
    message = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _failure(name: str, origin: str, exc: BaseException) -> LoadFailure:
    return LoadFailure(
        name=name,
        origin=origin,
        error=describeException(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {ep.name} = {ep.value} [{ep.group}]{where}"


def loadEntryPoints(
    group: str, eps: Iterable[EntryPoint] | None = None
) -> Iterator[Found | LoadFailure]:
    """
    Load every entry point of C{group}.

    @param eps: the entry points to load; by default those installed in the
        running environment.
    """
    candidates = list(entry_points(group=group) if eps is None else eps)
    for ep in candidates:
        try:
            value = ep.load()
        except BaseException as exc:  # noqa: B036 - a plugin may raise anything
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            yield _failure(ep.name, _origin(ep), exc)
        else:
            yield Found(ep.name, value, _origin(ep))


def loadDropins(interface: InterfaceClass, package: ModuleType) -> Iterator[Found | LoadFailure]:
    """
    Load every object that provides C{interface} from the drop-in modules of
    C{package} (see L{twisted.plugin}).

    Objects imported into a drop-in from elsewhere (the L{Plugin} base class,
    say) are skipped: only what a drop-in module defines counts, once.
    """
    prefix = package.__name__ + "."
    # getPlugins reports a drop-in that fails to import only to the global
    # log and skips it; listen in while it runs so the registry can name the
    # broken file in the agent's status too.
    broken: list[Failure] = []

    @provider(ILogObserver)
    def catchFailures(event: LogEvent) -> None:
        # twisted.plugin reports with the legacy log.err(), whose events
        # carry the failure as "failure", not "log_failure".
        failure = event.get("log_failure", event.get("failure"))
        if isinstance(failure, Failure):
            broken.append(failure)

    globalLogPublisher.addObserver(catchFailures)
    try:
        values: list[Any] = list(getPlugins(cast(Any, interface), package))
    except Exception as exc:
        yield _failure(package.__name__, f"drop-in package {package.__name__}", exc)
        return
    finally:
        globalLogPublisher.removeObserver(catchFailures)
    for failure in broken:
        assert failure.value is not None
        where = _dropinFile(failure, package) or package.__name__
        yield LoadFailure(
            name=os.path.splitext(os.path.basename(where))[0],
            origin=f"drop-in {where}",
            error=describeException(failure.value),
            traceback=failure.getTraceback(),
        )
    seen: set[int] = set()
    for value in values:
        module = getattr(value, "__module__", "") or ""
        if not module.startswith(prefix) or id(value) in seen:
            continue
        seen.add(id(value))
        name = getattr(value, "__name__", None) or repr(value)
        yield Found(name, value, f"drop-in {module}")


def _dropinFile(failure: Failure, package: ModuleType) -> str | None:
    """
    @return: the innermost file of C{failure}'s traceback that lives in one
        of C{package}'s directories: the drop-in that broke.
    """
    roots = [os.path.abspath(p) for p in getattr(package, "__path__", [])]
    found = None
    for frame in failure.frames:
        filename = os.path.abspath(frame[1])
        if any(filename.startswith(root + os.sep) for root in roots):
            found = filename
    if found is None and isinstance(failure.value, SyntaxError):
        filename = failure.value.filename or ""
        if any(os.path.abspath(filename).startswith(r + os.sep) for r in roots):
            found = os.path.abspath(filename)
    return found
