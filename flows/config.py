"""oddsflow's settings: one TOML file, the environment and the command line, in one object.

Where a value comes from, lowest priority first:

1. the defaults of the section structs (`SECTIONS`: the engine's `Rules`, the input
   `Limits`, and the sections below);
2. the config file: `--config FILE`, else `./oddsflow.toml` when it exists
   (`oddsflow.example.toml` lists every key with its default);
3. the environment: `ENV` maps each `ODDSFLOW_*` variable to its key (the names the
   commands read before the config file existed keep working: `ODDSFLOW_KAFKA`,
   `ODDSFLOW_MAX_LINE_BYTES`, `ODDSFLOW_LOG_LEVEL`, ...);
4. the command line: `--set KEY=VALUE` and the commands' own options (`FLAG_KEYS`).

`load` reads them once per command and returns a frozen `Settings`; a key, value or file
that cannot work is a `ConfigError` whose one line names the key and where it came from.
The operators never read this file: they get the structs (`Rules` by argument, `Limits`
through `operators.parse.use_limits`), so domain code stays free of file reading.

Signing secrets never go in the config file: they stay in the secrets file and the
`ODDSFLOW_SECRET_*` environment (operators/signing.py). Kafka passwords stay in the
librdkafka `.properties` file named by `kafka.properties`; `oddsflow config show` prints
its properties with every secret masked.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from connectors.kafka.settings import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_PREFIX,
    ENV_BOOTSTRAP,
    ENV_PREFIX,
    KafkaSettings,
    masked,
    read_properties,
)
from flows.logs import ENV_FORMAT, ENV_LEVEL
from flows.logs import FORMATS as LOG_FORMATS
from flows.logs import LEVELS as LOG_LEVELS
from operators.parse import ENV_MAX_DEPTH, SIZE_LIMITS, Limits
from operators.settings import Rules

DEFAULT_FILE = Path("oddsflow.toml")  # read from the working directory when present
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")  # Kafka's legal topic name characters


class ConfigError(ValueError):
    """A config file, key or value that cannot work: `where: key: problem`, one line."""


def _positive(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if not value > 0:  # also refuses NaN
            raise ValueError(f"`{name}` must be > 0, got {value}")


@dataclass(frozen=True, slots=True)
class KafkaSection:
    """Where the Kafka topics are: `bootstrap` servers, the topics' `prefix`, and the
    librdkafka `.properties` file with the security settings (`security.protocol`, `sasl.*`,
    `ssl.*`; "" for none). A `bootstrap.servers` in that file counts when `bootstrap` is
    left at its default."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = DEFAULT_PREFIX
    properties: str = ""

    def client_settings(self) -> KafkaSettings:
        """The Kafka client settings: these, with the properties file's; raises
        `KafkaConfigError` when that file is missing or its security settings cannot work."""
        return KafkaSettings.from_properties(
            None if self.bootstrap == DEFAULT_BOOTSTRAP else self.bootstrap,
            self.topic_prefix,
            Path(self.properties) if self.properties else None,
        )

    def __post_init__(self) -> None:
        if not self.bootstrap.strip():
            raise ValueError("`bootstrap` must name at least one HOST:PORT")
        if not _TOPIC_CHARS.fullmatch(self.topic_prefix):
            raise ValueError(
                f"`topic_prefix` may hold only A-Z, a-z, 0-9, '.', '_' and '-', got "
                f"{self.topic_prefix!r}"
            )


@dataclass(frozen=True, slots=True)
class FlowSection:
    """How often a flow ends an epoch (`snapshot_s`: the DuckDB sink commits and, with a
    recovery store, the state is snapshotted) and publishes a fresh DuckDB copy for
    readers (`publish_s`)."""

    snapshot_s: float
    publish_s: float = 2.0

    def __post_init__(self) -> None:
        _positive(self, "snapshot_s", "publish_s")


def _replay() -> FlowSection:
    return FlowSection(snapshot_s=10.0)


def _live() -> FlowSection:
    return FlowSection(snapshot_s=1.0)


@dataclass(frozen=True, slots=True)
class LoggingSection:
    """What the commands log (`level`, from DEBUG to CRITICAL) and how (`format`: text, or
    json: one object per line)."""

    level: str = "WARNING"
    format: str = "text"

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", self.level.upper())
        object.__setattr__(self, "format", self.format.lower())
        if self.level not in LOG_LEVELS:
            raise ValueError(f"`level` must be one of {', '.join(LOG_LEVELS)}, got {self.level}")
        if self.format not in LOG_FORMATS:
            raise ValueError(f"`format` must be one of {', '.join(LOG_FORMATS)}, got {self.format}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a command, one section per table of the config file."""

    rules: Rules = field(default_factory=Rules)
    limits: Limits = field(default_factory=Limits)
    kafka: KafkaSection = field(default_factory=KafkaSection)
    replay: FlowSection = field(default_factory=_replay)
    live: FlowSection = field(default_factory=_live)
    logging: LoggingSection = field(default_factory=LoggingSection)


SECTIONS: dict[str, type] = typing.get_type_hints(Settings)  # name -> struct, in file order


@functools.cache
def _fields(section: str) -> dict[str, Any]:
    """The keys of a section with their types."""
    return typing.get_type_hints(SECTIONS[section])


KEYS = [f"{section}.{name}" for section in SECTIONS for name in _fields(section)]

# The variables the commands read before there was a config file keep their names; every
# other key's is ODDSFLOW_<SECTION>_<KEY>.
_OLD_NAMES = {
    **{f"limits.{size.field}": size.env for size in SIZE_LIMITS.values()},
    "limits.max_depth": ENV_MAX_DEPTH,
    "kafka.bootstrap": ENV_BOOTSTRAP,
    "kafka.topic_prefix": ENV_PREFIX,
    "logging.level": ENV_LEVEL,
    "logging.format": ENV_FORMAT,
}
ENV = {_OLD_NAMES.get(key, "ODDSFLOW_" + key.replace(".", "_").upper()): key for key in KEYS}

# Command options (argparse `dest`) that set a key: `{command}` is the command's name.
FLAG_KEYS = {
    "log_level": ("--log-level", "logging.level"),
    "log_format": ("--log-format", "logging.format"),
    "kafka": ("--kafka", "kafka.bootstrap"),
    "kafka_config": ("--kafka-config", "kafka.properties"),
    "epoch_s": ("--snapshot-s", "{command}.snapshot_s"),
}

Flags = Mapping[str, tuple[str, object]]  # key -> (the option that set it, its value)


def flags_of(args: argparse.Namespace, command: str | None = None) -> dict[str, tuple[str, Any]]:
    """The keys the options in `args` set (`FLAG_KEYS`, then `--set KEY=VALUE`); options not
    given (None) set nothing."""
    flags: dict[str, tuple[str, Any]] = {}
    for dest, (option, key) in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None and (command or "{command}" not in key):
            value = str(value) if isinstance(value, Path) else value  # `--kafka-config`
            flags[key.format(command=command)] = (option, value)
    for item in getattr(args, "set", None) or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item}: expected KEY=VALUE")
        flags[key.strip()] = ("--set", value)
    return flags


def load(
    path: Path | None = None, environ: Mapping[str, str] | None = None, flags: Flags | None = None
) -> Settings:
    """The settings of a command: `path` (None: `./oddsflow.toml` when it exists), the
    environment (`os.environ` by default) and `flags` over the defaults. Raises
    `ConfigError`."""
    return resolve(path, environ, flags)[0]


def from_env(environ: Mapping[str, str]) -> Settings:
    """The defaults under the variables of `environ`, no file read."""
    return _resolve(None, environ, None)[0]


def resolve(
    path: Path | None = None, environ: Mapping[str, str] | None = None, flags: Flags | None = None
) -> tuple[Settings, dict[str, str]]:
    """`load`'s settings, with where each key set came from (the file's path, the
    variable's name, the option); keys left at their defaults are not in it."""
    if path is None and DEFAULT_FILE.is_file():
        path = DEFAULT_FILE
    return _resolve(path, environ, flags)


def _resolve(
    path: Path | None, environ: Mapping[str, str] | None, flags: Flags | None
) -> tuple[Settings, dict[str, str]]:
    env = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    origin: dict[str, str] = {}
    if path is not None:
        for key, value in _read_file(path).items():
            _put(values, key, value)
            origin[key] = str(path)
    for var, key in ENV.items():
        text = env.get(var)
        if text:  # set and not empty (empty: as if unset, as before)
            _put(values, key, _from_text(key, text, var))
            origin[key] = var
    for key, (option, value) in (flags or {}).items():
        if key not in KEYS:
            raise ConfigError(f"{option}: {key}: {_unknown(key)}")
        _put(values, key, _from_text(key, value, option) if isinstance(value, str) else value)
        origin[key] = option
    return _build(values, origin), origin


_chosen: tuple[Path | None, dict[str, tuple[str, Any]]] = (None, {})


def choose(path: Path | None, flags: Flags) -> None:
    """The config file and options of this process's command line (`oddsflow --config FILE
    --set KEY=VALUE COMMAND ...`), for `current`."""
    global _chosen
    _chosen = (path, dict(flags))


def current(flags: Flags | None = None) -> Settings:
    """The settings of the command line `choose` was given, with a command's own `flags`
    over them (defaults, `./oddsflow.toml` and the environment when nothing was chosen:
    a command's `main` called directly). Raises `ConfigError`."""
    path, chosen = _chosen
    return load(path, flags={**chosen, **(flags or {})})


def _put(values: dict[str, dict[str, Any]], key: str, value: Any) -> None:
    section, name = key.split(".", 1)
    values[section][name] = value


def _read_file(path: Path) -> dict[str, Any]:
    """The file's keys (`section.name`) and values, each key checked to exist; a relative
    `kafka.properties` is taken from the file's folder."""
    try:
        table = msgspec.toml.decode(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"--config: {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"--config: {path}: cannot read it: {exc.strerror}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for section, items in table.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: {section}: {_unknown(section)}")
        if not isinstance(items, dict):
            raise ConfigError(f"{path}: {section}: expected a table ([{section}]), got a value")
        for name, value in items.items():
            key = f"{section}.{name}"
            if key not in KEYS:
                raise ConfigError(f"{path}: {key}: {_unknown(key)}")
            out[key] = value
    properties = out.get("kafka.properties")
    if isinstance(properties, str) and properties and not Path(properties).is_absolute():
        out["kafka.properties"] = str((path.parent / properties).absolute())
    return out


def _unknown(key: str) -> str:
    """The problem with an unknown key or section, with the nearest known one."""
    if any(word in key.lower() for word in ("secret", "password")):
        return (
            "unknown key (secrets never go in the config file: signing secrets go in the "
            "secrets file or ODDSFLOW_SECRET_<PROVIDER>, Kafka passwords in the "
            "kafka.properties file)"
        )
    known = KEYS if "." in key else list(SECTIONS)
    near = difflib.get_close_matches(key, known, n=1)
    return "unknown key" + (f"; did you mean {near[0]}?" if near else "")


def _from_text(key: str, text: str, where: str) -> Any:
    """A value given as text (an environment variable, an option) as its key's type."""
    section, name = key.split(".", 1)
    kind = _fields(section)[name]
    try:
        return msgspec.convert(text, kind, strict=False)
    except msgspec.ValidationError:
        raise ConfigError(f"{where}: {key}: expected {_type_name(kind)}, got {text!r}") from None


def _build(values: dict[str, dict[str, Any]], origin: dict[str, str]) -> Settings:
    """The sections made from `values`, each checked (type and value) by its struct."""
    sections: dict[str, Any] = {}
    defaults = Settings()
    for section, kind in SECTIONS.items():
        default = getattr(defaults, section)
        given = {name: getattr(default, name) for name in _fields(section)} | values[section]
        try:
            sections[section] = msgspec.convert(given, kind)
        except msgspec.ValidationError as exc:
            raise _invalid(section, str(exc), values[section], origin) from None
    return Settings(**sections)


_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?:\.(?P<name>\w+))?`)?$", re.DOTALL)
_NAMED = re.compile(r"^`(?P<name>\w+)` (?P<problem>.*)$", re.DOTALL)  # the structs' checks


def _invalid(
    section: str, message: str, given: dict[str, Any], origin: dict[str, str]
) -> ConfigError:
    """msgspec's error for a section as `where: key: problem`."""
    parts = _AT.match(message)
    assert parts is not None  # the pattern matches any text
    problem, name = parts["problem"], parts["name"]
    named = _NAMED.match(problem)
    if named:  # a struct's own check: "`name` must be ..."
        name, problem = named["name"], named["problem"]
    elif name is not None and name in given:  # a wrong type: show the value given
        problem = f"{_lower_first(problem)} ({_toml(given[name])})"
    key = f"{section}.{name}" if name else section
    # A check across keys (max_stake >= min_stake) may name a key left at its default: the
    # problem then comes from a key of the section that was set.
    where = origin.get(key) or next((origin[f"{section}.{n}"] for n in given), "defaults")
    return ConfigError(f"{where}: {key}: {_lower_first(problem)}")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:].replace("`", "")


def _type_name(kind: Any) -> str:
    names = {int: "int", float: "float", Decimal: "decimal", str: "str"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


# --- showing them ------------------------------------------------------------------------


def show(settings: Settings, origin: Mapping[str, str]) -> str:
    """The settings as TOML, each key with where its value came from; the Kafka properties
    file's settings follow as comments, secrets masked."""
    lines: list[str] = []
    for section in SECTIONS:
        lines.append(f"[{section}]")
        part = getattr(settings, section)
        for name in _fields(section):
            key = f"{section}.{name}"
            source = origin.get(key, "default")
            lines.append(f"{name} = {_toml(getattr(part, name))}  # {source}")
        lines.append("")
    if settings.kafka.properties:
        lines.extend(_properties_lines(Path(settings.kafka.properties)))
    return "\n".join(lines).rstrip("\n") + "\n"


def _properties_lines(path: Path) -> list[str]:
    try:
        props = read_properties(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [f"# kafka.properties: {path} cannot be read ({exc})"]
    shown = masked(props)
    return [f"# kafka.properties ({path}), secrets masked:"] + [
        f"#   {key} = {value}" for key, value in shown.items()
    ]


def _toml(value: object) -> str:
    """A TOML literal: decimals as strings, to keep their digits ("1000.00")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
