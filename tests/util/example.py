"""
The example plugin package of C{examples/hello-plugin}, importable by tests
without installing it.
"""

from __future__ import annotations

import os
import sys

EXAMPLE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "examples",
    "hello-plugin",
)

if EXAMPLE_DIR not in sys.path:
    sys.path.append(EXAMPLE_DIR)

from clacks_hello.plugin import HelloPlugin  # noqa: E402

__all__ = ["EXAMPLE_DIR", "HelloPlugin"]
