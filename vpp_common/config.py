"""Loading one typed config per process: TOML file, then environment overrides.

Each process declares a ``pydantic_settings.BaseSettings`` subclass with an
``env_prefix`` (e.g. ``VPP_AGENT_``) and ``env_nested_delimiter="__"``; this
module reads the file and turns validation errors into one readable
:class:`ConfigError` that names each bad field and why.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

S = TypeVar("S", bound=BaseSettings)


class ConfigError(Exception):
    """Bad configuration: the operator must act.  Exit non-zero with this message."""


class EnvOverridesFile(BaseSettings):
    """Base: environment variables win over the file, which wins over defaults."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class behind a field's annotation (``X``, ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _takes_any_key(annotation: Any) -> bool:
    """A mapping field (``dict[str, X]``): any sub-key is a value, not a field name."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    return any(isinstance(typing.get_origin(a) or a, type) and issubclass(typing.get_origin(a) or a, Mapping)
               for a in args)


def unknown_env_problems(cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables with ``cls``'s env prefix that name no field (pydantic-settings ignores them
    silently, so a typo such as ``VPP_AGENT_SITE__MAX_EXPORT=0`` would leave the default in force).
    One line per variable, with the closest field names."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    delimiter = cls.model_config.get("env_nested_delimiter") or None
    if not prefix:
        return []
    problems = []
    for name in sorted(os.environ if environ is None else environ):
        if not name.upper().startswith(prefix.upper()) or len(name) == len(prefix):
            continue
        parts = name[len(prefix):].lower().split(delimiter) if delimiter else [name[len(prefix):].lower()]
        model: type[BaseModel] | None = cls
        path: list[str] = []
        for part in parts:
            if model is None:  # a plain value has no sub-keys
                problems.append(f"{name}: {'.'.join(path)} takes a value, it has no field {part!r}")
                break
            fields = model.model_fields
            if part not in fields:
                close = difflib.get_close_matches(part, list(fields), n=3)
                hint = f"; did you mean {' or '.join(prefix + delimiter.join([*path, c]).upper() for c in close)}?" \
                    if close and delimiter else ""
                where = f"{'.'.join(path)} has" if path else "there is"
                problems.append(f"{name}: {where} no field {part!r}{hint}")
                break
            path.append(part)
            annotation = fields[part].annotation
            if _takes_any_key(annotation):
                break
            model = _model_of(annotation)
    return problems


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
            model = _model_of(model.model_fields[part].annotation)
        close = difflib.get_close_matches(str(err["loc"][-1]), list(model.model_fields), n=3) if model else []
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"  {field}: unknown key{hint} (got {err.get('input')!r})"
    got = "" if isinstance(err.get("input"), Mapping) else f" (got {err.get('input')!r})"
    return f"  {field}: {str(err['msg']).removeprefix('Value error, ')}{got}"


def load_config(cls: type[S], path: Path | None, **overrides: Any) -> S:
    """Read ``path`` (TOML) if given, apply env and ``overrides``; validate.

    Every problem is a :class:`ConfigError` naming the file or field and why: an unreadable
    file, bad TOML, an unknown key (nested too), an environment variable with the prefix
    that names no field, a value out of range or an impossible combination.
    """
    data: dict[str, Any] = _read_toml(path) if path is not None else {}
    env_problems = unknown_env_problems(cls)
    if env_problems:
        raise ConfigError("unknown environment variables (not applied):\n" +
                          "\n".join(f"  {p}" for p in env_problems))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        lines = [f"invalid configuration{where}:"]
        lines.extend(_describe(err, cls) for err in exc.errors())
        raise ConfigError("\n".join(lines)) from None
