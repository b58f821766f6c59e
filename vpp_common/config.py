"""Loading one typed config per process: TOML file, then environment overrides.

Each process declares an :class:`EnvOverridesFile` subclass with an ``env_prefix`` (e.g.
``VPP_AGENT_``); nested keys are joined with ``__`` (``vpp_common.config_env`` reads the
variables).  This module reads the file and turns validation errors into one readable
:class:`ConfigError` that names each bad field and why.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from vpp_common.config_env import (
    EnvValueError,
    deep_merge,
    env_values,
    model_of,
    unknown_env_problems,
)

__all__ = ["ConfigError", "EnvOverridesFile", "load_config", "unknown_env_problems"]

S = TypeVar("S", bound="EnvOverridesFile")


class ConfigError(Exception):
    """Bad configuration: the operator must act.  Exit non-zero with this message."""


# set while load_config builds a model whose values already hold the variables (under its flags)
_ENV_MERGED: ContextVar[bool] = ContextVar("_ENV_MERGED", default=False)


def _env(cls: type[BaseModel], prefix: str) -> dict[str, Any]:
    try:
        return env_values(cls, prefix)
    except EnvValueError as exc:
        raise ConfigError(f"environment: {exc}") from None


class EnvOverridesFile(BaseModel):
    """Base: environment variables (``env_prefix``) win over the values given, which win over
    defaults (:func:`load_config`: the file, then the variables, then the flags).  Read
    whenever the model is constructed or validated, as with pydantic-settings before
    (``model_copy`` reads none)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
    env_prefix: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        super().__init__(**(values if _ENV_MERGED.get() else deep_merge(values, _env(type(self), self.env_prefix))))


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML; ConfigError ``<file>: <reason>`` for anything an operator can get wrong."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}: is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied (readable by this user?)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def _describe(err: Mapping[str, Any], cls: type[BaseModel]) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "(root)"
    if err["type"] == "extra_forbidden":
        # name the keys that do exist there: a typo is the usual cause
        model: type[BaseModel] | None = cls
        for part in err["loc"][:-1]:
            if model is None or not isinstance(part, str) or part not in model.model_fields:
                model = None
                break
            model = model_of(model.model_fields[part].annotation)
        close = difflib.get_close_matches(str(err["loc"][-1]), list(model.model_fields), n=3) if model else []
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"  {field}: unknown key{hint} (got {err.get('input')!r})"
    got = "" if isinstance(err.get("input"), Mapping) else f" (got {err.get('input')!r})"
    return f"  {field}: {str(err['msg']).removeprefix('Value error, ')}{got}"


def load_config(cls: type[S], path: Path | None, **overrides: Any) -> S:
    """Read ``path`` (TOML) if given, apply env and then ``overrides`` (the flags: they win); validate.

    Every problem is a :class:`ConfigError` naming the file or field and why: an unreadable
    file, bad TOML, an unknown key (nested too), an environment variable with the prefix
    that names no field, a value out of range or an impossible combination.
    """
    data: dict[str, Any] = _read_toml(path) if path is not None else {}
    env_problems = unknown_env_problems(cls)
    if env_problems:
        raise ConfigError("unknown environment variables (not applied):\n" +
                          "\n".join(f"  {p}" for p in env_problems))
    data = deep_merge(data, _env(cls, cls.env_prefix))
    data.update({k: v for k, v in overrides.items() if v is not None})
    token = _ENV_MERGED.set(True)
    try:
        return cls(**data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        lines = [f"invalid configuration{where}:"]
        lines.extend(_describe(err, cls) for err in exc.errors())
        raise ConfigError("\n".join(lines)) from None
    finally:
        _ENV_MERGED.reset(token)
