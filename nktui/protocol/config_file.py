"""Config files in and out: a RunConfig TOML read bounded and checked, and values written as TOML.

`read_config_file` takes regular files of at most CONFIG_FILE_LIMIT bytes, UTF-8 with or without a byte order mark,
and says in one line what is wrong with anything else; `toml_value` writes one value (RunConfig.to_toml).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FILE_LIMIT = 1 << 20  # bytes: a config file is a few hundred; more is not one (`--config /dev/zero`)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's TOML table: ConfigError for an empty name, a missing file, a non-regular file (FIFO, device,
    folder), more than CONFIG_FILE_LIMIT bytes, bytes that are not UTF-8, or TOML that does not parse."""
    if not str(path).strip():
        raise ConfigError("--config is empty: give a TOML file such as runs/<date-time>/config.toml")
    shown = repr(str(path))
    try:
        info = os.stat(path)  # (stat never blocks, even on a FIFO: open would)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe, socket or device)"
            raise ConfigError(f"config file {shown} is {kind}: give a TOML file")
        with open(path, "rb") as f:
            data = f.read(CONFIG_FILE_LIMIT + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {shown} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {shown}: {exc.strerror or exc}") from None
    if len(data) > CONFIG_FILE_LIMIT:
        raise ConfigError(f"config file {shown} is larger than {CONFIG_FILE_LIMIT >> 20} MB: it is not a RunConfig TOML")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {shown} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {shown} is not valid TOML: {exc}") from None


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON's string escapes are valid TOML basic strings
