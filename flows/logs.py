"""How oddsflow's commands log: `--log-level` and `--log-format text|json`, before the
command (`oddsflow --log-format json live ...`), or `ODDSFLOW_LOG_LEVEL` and
`ODDSFLOW_LOG_FORMAT`. Default: WARNING, as text (`LEVEL logger: message`).

JSON: one object per line on stderr, with `time` (UTC, ISO 8601, milliseconds), `level`,
`logger`, `message`, `match_id` when the call gave one (`log.warning(..., extra={"match_id":
m})`), and `error` with the traceback when there was one. The options are passed on to the
members of a local cluster through the environment.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime

ENV_LEVEL = "ODDSFLOW_LOG_LEVEL"
ENV_FORMAT = "ODDSFLOW_LOG_FORMAT"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class LogOptionError(ValueError):
    """A log level or format that is not one of the known ones."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        match_id = getattr(record, "match_id", None)
        if match_id is not None:
            out["match_id"] = match_id
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(
    level: str | None = None, fmt: str | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Set the root logger from the options, else the environment, else the defaults; the
    choice goes into `os.environ`, so processes started from here log alike. Raises
    `LogOptionError` naming the bad value."""
    env = os.environ if environ is None else environ
    level = (level or env.get(ENV_LEVEL) or "WARNING").upper()
    fmt = (fmt or env.get(ENV_FORMAT) or "text").lower()
    if level not in LEVELS:
        raise LogOptionError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise LogOptionError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    os.environ[ENV_LEVEL], os.environ[ENV_FORMAT] = level, fmt
