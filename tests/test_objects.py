"""
Tests for L{clacks.common.components.objects}: object classes by OID.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint

from twisted.trial.unittest import SynchronousTestCase

from clacks.common.components.objects import (
    ENTRY_POINT_GROUP,
    DuplicateObjectError,
    ObjectRegistry,
)
from tests.util.logs import captureLogs, messages
from tests.util.objects import OtherThing, Thing, objectEntryPoint


class DiscoveryTests(SynchronousTestCase):
    """
    Tests for L{ObjectRegistry.discover}.
    """

    def test_entryPoints(self) -> None:
        """
        Each C{agent.object} entry point registers its class under the entry
        point's name, the OID.
        """
        objects = ObjectRegistry()
        objects.discover(
            [objectEntryPoint("Thing", "Thing"), objectEntryPoint("Other", "OtherThing")]
        )
        self.assertEqual(objects.oids(), ["Other", "Thing"])
        self.assertIs(objects.get("Thing"), Thing)
        self.assertIs(objects.get("Other"), OtherThing)
        self.assertIn("Thing", objects)
        self.assertEqual(objects.failures, [])

    def test_installedEntryPoints(self) -> None:
        """
        Without C{entryPoints}, the registry reads the C{agent.object} entry
        points of the distributions on C{sys.path}.
        """
        site = os.path.abspath(self.mktemp())
        distInfo = os.path.join(site, "fake_clacks_objects-1.0.dist-info")
        os.makedirs(distInfo)
        with open(os.path.join(distInfo, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: fake-clacks-objects\nVersion: 1.0\n")
        with open(os.path.join(distInfo, "entry_points.txt"), "w") as f:
            f.write("[agent.object]\nFakeThing = tests.util.objects:Thing\n")
        self.patch(sys, "path", [site, *sys.path])
        objects = ObjectRegistry()
        objects.discover()
        self.assertIs(objects.get("FakeThing"), Thing)

    def test_duplicateOID(self) -> None:
        """
        A second entry point for an OID already registered is rejected with
        an error naming the OID and both origins; the first class stays and
        the rejection is listed in C{failures}.
        """
        events = captureLogs(self)
        objects = ObjectRegistry()
        objects.discover(
            [objectEntryPoint("Thing", "Thing"), objectEntryPoint("Thing", "OtherThing")]
        )
        self.assertIs(objects.get("Thing"), Thing)
        [failure] = objects.failures
        self.assertEqual((failure.name, failure.stage), ("Thing", "load"))
        self.assertIn("object OID 'Thing' is already registered by entry point", failure.error)
        self.assertIn("tests.util.objects:Thing", failure.error)
        self.assertIn("tests.util.objects:OtherThing", failure.error)
        self.assertIn("cannot register it again", failure.error)
        self.assertIn(failure.error, messages(events))

    def test_unloadable(self) -> None:
        """
        An entry point that cannot be imported is listed as a C{load} failure
        and logged; the others are registered.
        """
        events = captureLogs(self)
        objects = ObjectRegistry()
        objects.discover(
            [
                EntryPoint("Ghost", "tests.util.nosuchmodule:Ghost", ENTRY_POINT_GROUP),
                objectEntryPoint("Thing", "Thing"),
            ]
        )
        self.assertEqual(objects.oids(), ["Thing"])
        [failure] = objects.failures
        self.assertEqual((failure.name, failure.stage), ("Ghost", "load"))
        self.assertIn("ModuleNotFoundError", failure.error)
        self.assertTrue(any("Object Ghost failed to load" in m for m in messages(events)))

    def test_notAClass(self) -> None:
        """
        An entry point naming something that is not a class is rejected with
        an error saying it must be a class.
        """
        objects = ObjectRegistry()
        objects.discover([objectEntryPoint("Number", "notAClass")])
        self.assertEqual(objects.oids(), [])
        [failure] = objects.failures
        self.assertIn("must be a class, not 42", failure.error)


class RegisterTests(SynchronousTestCase):
    """
    Tests for L{ObjectRegistry.register} and L{ObjectRegistry.get}.
    """

    def test_registerDuplicate(self) -> None:
        """
        L{ObjectRegistry.register} of a taken OID raises
        L{DuplicateObjectError} naming where the first came from, and keeps
        the first class.
        """
        objects = ObjectRegistry()
        objects.register("Thing", Thing, "the first plugin")
        error = self.assertRaises(
            DuplicateObjectError, objects.register, "Thing", OtherThing, "the second plugin"
        )
        self.assertEqual(
            str(error),
            "object OID 'Thing' is already registered by the first plugin; "
            "the second plugin cannot register it again",
        )
        self.assertIs(objects.get("Thing"), Thing)

    def test_registerNotAClass(self) -> None:
        """
        L{ObjectRegistry.register} of something that is not a class raises
        L{TypeError}.
        """
        self.assertRaises(TypeError, ObjectRegistry().register, "Thing", Thing())

    def test_getUnknown(self) -> None:
        """
        L{ObjectRegistry.get} of an unknown OID raises L{KeyError} naming the
        known OIDs.
        """
        objects = ObjectRegistry()
        objects.register("Thing", Thing)
        objects.register("Other", OtherThing)
        error = self.assertRaises(KeyError, objects.get, "Nothing")
        self.assertIn("no object with OID 'Nothing'; known: Other, Thing", str(error))
        self.assertNotIn("Nothing", objects)
