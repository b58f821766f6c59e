"""Loading one typed config per process: TOML file, then environment overrides.

Each process declares a ``pydantic_settings.BaseSettings`` subclass with an
``env_prefix`` (e.g. ``VPP_AGENT_``) and ``env_nested_delimiter="__"``; this
module reads the file and turns validation errors into one readable
:class:`ConfigError` that names each bad field and why.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
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


def load_config(cls: type[S], path: Path | None, **overrides: Any) -> S:
    """Read ``path`` (TOML) if given, apply env and ``overrides``; validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        lines = [f"invalid configuration{where}:"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(root)"
            lines.append(f"  {field}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("\n".join(lines)) from None
