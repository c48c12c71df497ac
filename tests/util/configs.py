"""
Writing configuration directories for tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: A configuration that runs without network: no bus, no HTTP listener.
OFFLINE = """\
[core]
id = test-node
[amqp]
url =
[http]
listen = none
"""


def writeConfigDir(
    path: str, config: str | None = OFFLINE, confd: Mapping[str, str] | None = None
) -> str:
    """
    Create a configuration directory at C{path}: C{config} as its C{config}
    file (none if C{None}) and C{confd} as C{config.d/NAME} files.

    @return: the absolute path of the directory.
    """
    path = os.path.abspath(path)
    os.makedirs(path, exist_ok=True)
    if config is not None:
        with open(os.path.join(path, "config"), "w", encoding="utf-8") as f:
            f.write(config)
    if confd:
        os.makedirs(os.path.join(path, "config.d"), exist_ok=True)
        for name, text in confd.items():
            with open(os.path.join(path, "config.d", name), "w", encoding="utf-8") as f:
                f.write(text)
    return path


__all__ = ["OFFLINE", "writeConfigDir"]
