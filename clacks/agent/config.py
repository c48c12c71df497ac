# -*- test-case-name: tests.test_config -*-
"""
The agent's configuration: INI files read into typed, validated, frozen
values.

C{-c PATH} names a file, or a directory holding C{config} and
C{config.d/*.conf}; the files of C{config.d} are applied in sorted order,
each overriding what came before.  A bad value stops start-up with one line
that names the file, section, key and what is expected.
"""

from __future__ import annotations

import configparser
import os
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs

DEFAULT_CONFIG_PATH = "/etc/clacks"


class ConfigError(Exception):
    """
    The configuration cannot be used.  C{str()} is one line that says where
    and what to fix.
    """

    def __init__(
        self,
        message: str,
        path: str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        where = []
        if path:
            where.append(f"{path}:")
        if section:
            where.append(f"[{section}]" + (f" {key}" if key else ""))
        super().__init__(" ".join([*where, message]))
        self.detail = message
        self.path = path
        self.section = section
        self.key = key


# Value types


@attrs.frozen
class BrokerURL:
    """
    Where the AMQP broker is: C{amqp://user:pass@host:port/vhost}, or
    C{amqps://...} for TLS.
    """

    scheme: str
    host: str
    port: int
    username: str
    password: str = attrs.field(repr=False)
    vhost: str

    @property
    def tls(self) -> bool:
        return self.scheme == "amqps"

    def redacted(self) -> str:
        """
        @return: the URL without its password, for logs.
        """
        vhost = "" if self.vhost == "/" else self.vhost
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}/{vhost}"


def parseBrokerURL(value: str) -> BrokerURL:
    """
    @raise ValueError: saying what is expected.
    """
    expected = "an AMQP URL like amqp://user:password@host:5672/vhost"
    parts = urlsplit(value.strip())
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"expected {expected} (scheme amqp or amqps)")
    if not parts.hostname:
        raise ValueError(f"expected {expected} (no host given)")
    try:
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError:
        raise ValueError(f"expected {expected} (bad port)") from None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return BrokerURL(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        vhost=unquote(path) if path else "/",
    )


@attrs.frozen
class CoreConfig:
    """
    C{[core]}: who this node is.

    @ivar id: the node id, unique in the domain.
    @ivar domain: the domain the node belongs to; names its exchanges.
    @ivar strictPlugins: a failing plugin stops the agent.
    @ivar debug: send tracebacks to callers and log at debug level.
    @ivar users: the users file (HTTP logins, groups for the ACL).
    """

    id: str
    domain: str = "org.clacks"
    strictPlugins: bool = False
    debug: bool = False
    users: str | None = None


@attrs.frozen
class AMQPConfig:
    """
    C{[amqp]}: the broker connection; no URL means a standalone agent.
    """

    url: BrokerURL | None = None
    heartbeat: float = 30.0
    connectionName: str | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    reconnectInitial: float = 0.5
    reconnectMax: float = 30.0
    queueType: str = "classic"
    publishTimeout: float = 10.0


@attrs.frozen
class HTTPConfig:
    """
    C{[http]}: the HTTP listener (health, JSON-RPC).
    """

    listen: str | None = "tcp:8080:interface=127.0.0.1"
    path: str = "/rpc"


DEFAULT_STATUS_INTERVAL = 10.0


@attrs.frozen
class AgentSettings:
    """
    C{[agent]}: the agent's own timing and capacity.
    """

    statusInterval: float = DEFAULT_STATUS_INTERVAL
    nodeTimeout: float = 30.0
    threads: int = 8
    drainTimeout: float = 10.0
    capacity: int = 16
    objectTimeout: float = 600.0
    maxDeliveries: int = 5


@attrs.frozen
class AgentConfig:
    """
    The whole configuration.

    @ivar sources: the files read, in the order applied.
    @ivar warnings: lines worth logging at start (unknown keys, ...).
    @ivar sections: every section as read, for plugins with sections of
        their own; see L{section}.
    """

    core: CoreConfig
    amqp: AMQPConfig = attrs.Factory(AMQPConfig)
    http: HTTPConfig = attrs.Factory(HTTPConfig)
    agent: AgentSettings = attrs.Factory(AgentSettings)
    sources: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    sections: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, repr=False)

    @property
    def standalone(self) -> bool:
        return self.amqp.url is None

    def section(self, name: str) -> Mapping[str, str]:
        """
        @return: the raw values of section C{name} (empty if absent).
        """
        return dict(self.sections.get(name, {}))


def defaultConfig(**sections: Any) -> AgentConfig:
    """
    @return: a configuration with every default, for tests and embedding;
        C{sections} replace whole sections (C{core=CoreConfig(...)}).
    """
    sections.setdefault("core", CoreConfig(id=socket.gethostname()))
    return AgentConfig(**sections)


# Parsers: each takes the raw string and raises ValueError("expected ...").


def _positiveNumber(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return number


def _nonNegativeNumber(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise ValueError("expected a number of seconds, 0 or more")
    return number


def _positiveInt(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError("expected a whole number, 1 or more")
    return number


_BOOLEANS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def _boolean(value: str) -> bool:
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise ValueError("expected true or false") from None


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "expected a name of letters, digits, '.', '_' and '-' (starting with a letter or digit)"
        )
    return value


def _text(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty value")
    return value


def _optionalURL(value: str) -> BrokerURL | None:
    return parseBrokerURL(value) if value else None


def _optionalListen(value: str) -> str | None:
    if value.lower() in ("", "none", "off"):
        return None
    if ":" not in value:
        raise ValueError(
            "expected a Twisted endpoint string like tcp:8080:interface=127.0.0.1 "
            "(or 'none' to turn HTTP off)"
        )
    return value


def _existingFile(value: str) -> str | None:
    if not value:
        return None
    if not os.path.isfile(value):
        raise ValueError("expected the path of an existing file")
    return value


def _queueType(value: str) -> str:
    if value not in ("classic", "quorum"):
        raise ValueError("expected classic or quorum")
    return value


def _path(value: str) -> str:
    if not re.match(r"^/[A-Za-z0-9._~-]+$", value):
        raise ValueError("expected a one-segment URL path like /rpc")
    return value


@attrs.frozen
class _Key:
    section: str
    key: str
    field: str
    parse: Callable[[str], Any]


_SECTIONS: dict[str, type] = {
    "core": CoreConfig,
    "amqp": AMQPConfig,
    "http": HTTPConfig,
    "agent": AgentSettings,
}

_KEYS = [
    _Key("core", "id", "id", _name),
    _Key("core", "domain", "domain", _name),
    _Key("core", "strict-plugins", "strictPlugins", _boolean),
    _Key("core", "debug", "debug", _boolean),
    _Key("core", "users", "users", _existingFile),
    _Key("amqp", "url", "url", _optionalURL),
    _Key("amqp", "heartbeat", "heartbeat", _nonNegativeNumber),
    _Key("amqp", "connection-name", "connectionName", _text),
    _Key("amqp", "cafile", "cafile", _existingFile),
    _Key("amqp", "certfile", "certfile", _existingFile),
    _Key("amqp", "keyfile", "keyfile", _existingFile),
    _Key("amqp", "reconnect-initial", "reconnectInitial", _positiveNumber),
    _Key("amqp", "reconnect-max", "reconnectMax", _positiveNumber),
    _Key("amqp", "queue-type", "queueType", _queueType),
    _Key("amqp", "publish-timeout", "publishTimeout", _positiveNumber),
    _Key("http", "listen", "listen", _optionalListen),
    _Key("http", "path", "path", _path),
    _Key("agent", "status-interval", "statusInterval", _positiveNumber),
    _Key("agent", "node-timeout", "nodeTimeout", _positiveNumber),
    _Key("agent", "threads", "threads", _positiveInt),
    _Key("agent", "drain-timeout", "drainTimeout", _nonNegativeNumber),
    _Key("agent", "capacity", "capacity", _positiveInt),
    _Key("agent", "object-timeout", "objectTimeout", _positiveNumber),
    _Key("agent", "max-deliveries", "maxDeliveries", _positiveInt),
]
_KEYS_BY_NAME = {(k.section, k.key): k for k in _KEYS}

Overrides = Mapping[tuple[str, str], str]


def configFiles(path: str) -> list[str]:
    """
    @return: the files C{path} stands for, in the order they apply.
    @raise ConfigError: if there is nothing to read.
    """
    if os.path.isdir(path):
        files = []
        main = os.path.join(path, "config")
        if os.path.isfile(main):
            files.append(main)
        confd = os.path.join(path, "config.d")
        if os.path.isdir(confd):
            files.extend(
                os.path.join(confd, name)
                for name in sorted(os.listdir(confd))
                if name.endswith(".conf")
            )
        if not files:
            raise ConfigError(
                "no configuration: expected a file 'config' or 'config.d/*.conf' in this directory",
                path,
            )
        return files
    if os.path.isfile(path):
        return [path]
    raise ConfigError("no such file or directory (give the config with -c)", path)


def _readFile(filename: str) -> configparser.ConfigParser:
    # Only '=' separates keys from values, and keys keep their case: the
    # [acl] section has keys like "user:Alice".
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(filename, encoding="utf-8") as f:
            parser.read_file(f, source=filename)
    except configparser.DuplicateOptionError as e:
        raise ConfigError(
            f"key given twice (line {e.lineno}); keep one", filename, e.section, e.option
        ) from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError(
            f"section given twice (line {e.lineno}); merge them", filename, e.section
        ) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            f"line {e.lineno}: expected a [section] header before {e.line.strip()!r}",
            filename,
        ) from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        raise ConfigError(
            f"line {lineno}: expected 'key = value', got {line.strip()!r}", filename
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}", filename) from None
    return parser


def loadConfig(path: str = DEFAULT_CONFIG_PATH, overrides: Overrides | None = None) -> AgentConfig:
    """
    Read, merge and validate the configuration at C{path}.

    @param overrides: values from the command line, C{(section, key) ->
        value}, applied last (e.g. C{--url}).
    @raise ConfigError: naming file, section and key of the first bad value.
    """
    raw: dict[str, dict[str, tuple[str, str]]] = {}
    files = configFiles(path)
    for filename in files:
        parser = _readFile(filename)
        for section in parser.sections():
            values = raw.setdefault(section, {})
            for key, value in parser.items(section, raw=True):
                if section in _SECTIONS:
                    key = key.lower()
                values[key] = (value.strip(), filename)
    for (section, key), value in (overrides or {}).items():
        raw.setdefault(section, {})[key] = (value, "command line")
    return _build(raw, tuple(files))


def _build(raw: dict[str, dict[str, tuple[str, str]]], sources: tuple[str, ...]) -> AgentConfig:
    warnings = []
    fields: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for section, values in raw.items():
        for key, (value, origin) in values.items():
            spec = _KEYS_BY_NAME.get((section, key))
            if spec is None:
                if section in _SECTIONS:
                    known = ", ".join(k.key for k in _KEYS if k.section == section)
                    warnings.append(
                        f"{origin}: [{section}] {key}: unknown key, ignored (known keys: {known})"
                    )
                continue
            try:
                fields[section][spec.field] = spec.parse(value)
            except ValueError as e:
                raise ConfigError(f"= {value!r}: {e}", origin, section, key) from None
    fields["core"].setdefault("id", socket.gethostname())
    agent = fields["agent"]
    interval = agent.get("statusInterval", DEFAULT_STATUS_INTERVAL)
    if "nodeTimeout" not in agent:
        agent["nodeTimeout"] = 3 * interval
    elif agent["nodeTimeout"] <= interval:
        origin = raw["agent"]["node-timeout"][1]
        raise ConfigError(
            f"= {agent['nodeTimeout']:g}: expected more than status-interval "
            f"({interval:g} s); 3 intervals is usual",
            origin,
            "agent",
            "node-timeout",
        )
    amqp = fields["amqp"]
    if ("certfile" in amqp) != ("keyfile" in amqp):
        origin = raw["amqp"].get("certfile", raw["amqp"].get("keyfile", ("", "")))[1]
        raise ConfigError("certfile and keyfile go together: give both or neither", origin, "amqp")
    if "acl" in raw:
        from clacks.agent.acl import parsePolicy

        try:
            parsePolicy({k: v for k, (v, _) in raw["acl"].items()})
        except ConfigError as e:
            where = raw["acl"][e.key][1] if e.key in raw["acl"] else None
            raise ConfigError(e.detail, where, "acl", e.key) from None
    return AgentConfig(
        core=CoreConfig(**fields["core"]),
        amqp=AMQPConfig(**fields["amqp"]),
        http=HTTPConfig(**fields["http"]),
        agent=AgentSettings(**fields["agent"]),
        sources=sources,
        warnings=tuple(warnings),
        sections={s: {k: v for k, (v, _) in values.items()} for s, values in raw.items()},
    )


__all__ = [
    "AMQPConfig",
    "AgentConfig",
    "AgentSettings",
    "BrokerURL",
    "ConfigError",
    "CoreConfig",
    "DEFAULT_CONFIG_PATH",
    "HTTPConfig",
    "configFiles",
    "defaultConfig",
    "loadConfig",
    "parseBrokerURL",
]
