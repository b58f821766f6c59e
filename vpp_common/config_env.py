"""Environment overrides of a process's config (``VPP_AGENT_*``, ``VPP_AGG_*``), without pydantic-settings.

The rules are the ones pydantic-settings applied to these configs, kept so that no deployment
reads its variables differently (why it went: docs/performance.md, "Edge agent"):

* ``<PREFIX><FIELD>``, names case-insensitive; ``__`` descends into a table:
  ``VPP_AGENT_SITE__MAX_EXPORT_W=0``.
* A value for a table or list field (a model, list, tuple, set, dict) is JSON
  (``VPP_AGENT_LAN_DEVICES='[{"id": ...}]'``); for an optional one (``X | None``) a value that is
  not JSON stays the string.  Any other value is the string as given: pydantic converts it with
  the field's own checks, so an env value is checked exactly like the file's.
* A table given whole as JSON and some of its keys given as ``__`` variables: the keys win.
* The variables win over the values given to the model (the file, then the CLI's flags), key by
  key into tables (a list is replaced whole).

Variables that name no field are found by :func:`unknown_env_problems` (pydantic-settings ignored
them silently).
"""

from __future__ import annotations

import difflib
import json
import os
import types
import typing
from collections import deque
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

DELIMITER = "__"


class EnvValueError(ValueError):
    """A variable whose value cannot be read (bad JSON for a table or list): names the variable."""


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s values, tables merged key by key, anything else replaced."""
    out = dict(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _container(annotation: Any) -> bool:
    """A model, or a collection other than text: its env value is JSON."""
    annotation = _strip(annotation)
    for t in (annotation, typing.get_origin(annotation)):
        if isinstance(t, type) and not issubclass(t, str | bytes) and (
                issubclass(t, BaseModel | Mapping | Sequence | AbstractSet | tuple | deque)):
            return True
    return False


def _json_kind(annotation: Any) -> tuple[bool, bool]:
    """(the value is JSON, a value that is not JSON may stay the string)."""
    if _container(annotation):
        return True, False
    if _is_union(_strip(annotation)) and any(_container(a) for a in typing.get_args(_strip(annotation))):
        return True, True
    return False, False


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model behind ``X`` or ``X | None`` (nothing else), else None."""
    annotation = _strip(annotation)
    if _is_union(annotation):
        args = typing.get_args(annotation)
        if len(args) != 2 or type(None) not in args:
            return None
        annotation = _strip(next(a for a in args if a is not type(None)))
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _fold_case(annotation: Any, value: dict[str, Any]) -> dict[str, Any]:
    """A JSON table's keys matched to the model's field names regardless of case, nested tables too."""
    model = _model(annotation)
    if model is None:
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = next((n for n in model.model_fields if n.lower() == k.lower()), None)
        if name is None:
            out[k] = v
            continue
        sub = model.model_fields[name].annotation
        out[name] = _fold_case(sub, v) if _model(sub) is not None and isinstance(v, dict) else v
    return out


def _next(where: Any, key: str) -> Any:
    """The field (FieldInfo) or, under a dict, the value type that ``key`` names below ``where``."""
    annotation = where.annotation if isinstance(where, FieldInfo) else where
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, dict):
        args = typing.get_args(annotation)
        return args[-1] if args else None
    for arg in typing.get_args(annotation):
        if (found := _next(arg, key)) is not None:
            return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return next((f for n, f in annotation.model_fields.items() if n.lower() == key), None)
    return None


def _decode(variable: str, field: str, value: str, lenient: bool) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        if lenient:
            return value
        raise EnvValueError(f"{variable.upper()} ({field}): not valid JSON ({exc}); a table or list is given as "
                            f"JSON, or its keys one by one with {DELIMITER}") from None


def _nested(name: str, path: str, field: FieldInfo, env: Mapping[str, str]) -> dict[str, Any]:
    """The ``<name>__...`` variables under one field as a nested table."""
    origin = typing.get_origin(field.annotation)
    under_dict = field.annotation is dict or (isinstance(origin, type) and issubclass(origin, dict))
    result: dict[str, Any] = {}
    for variable, value in env.items():
        if not variable.startswith(name + DELIMITER):
            continue
        *keys, last = variable[len(name) + len(DELIMITER):].split(DELIMITER)
        table: Any = result
        target: Any = field
        for key in keys:
            target = _next(target, key)
            if isinstance(table, dict):
                table = table.setdefault(key, {})
        target = _next(target, last)
        parsed: Any = value
        if (target is not None or under_dict) and value:
            if isinstance(target, FieldInfo):
                is_json, lenient = _json_kind(target.annotation)
            else:  # the value type of a dict, or a key under a dict
                is_json, lenient = True, True
            if is_json:
                parsed = _decode(variable, ".".join([path, *keys, last]), value, lenient)
        if isinstance(table, dict):
            table[last] = parsed
    return result


def env_values(cls: type[BaseModel], prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the variables with ``prefix`` say about ``cls``'s fields, as the model's input.
    EnvValueError for a value that cannot be read."""
    env = {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}
    out: dict[str, Any] = {}
    for field_name, field in cls.model_fields.items():
        name = (prefix + field_name).lower()
        value: Any = env.get(name)
        is_json, lenient = _json_kind(field.annotation)
        if is_json:
            if value is None:
                value = _nested(name, field_name, field, env) or None
            else:
                value = _decode(name, field_name, value, lenient)
                if isinstance(value, dict):
                    value = deep_merge(value, _nested(name, field_name, field, env))
        if value is not None:
            out[field_name] = _fold_case(field.annotation, value) if isinstance(value, dict) else value
    return out


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class behind a field's annotation (``X``, ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if _is_union(annotation):
        models = [m for a in typing.get_args(annotation) if (m := model_of(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _takes_any_key(annotation: Any) -> bool:
    """A mapping field (``dict[str, X]``): any sub-key is a value, not a field name."""
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    return any(isinstance(typing.get_origin(a) or a, type) and issubclass(typing.get_origin(a) or a, Mapping)
               for a in args)


def unknown_env_problems(cls: type[BaseModel], environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables with ``cls``'s env prefix that name no field (a typo such as
    ``VPP_AGENT_SITE__MAX_EXPORT=0`` would leave the default in force).  One line per variable,
    with the closest field names."""
    prefix = str(getattr(cls, "env_prefix", ""))
    if not prefix:
        return []
    problems = []
    for name in sorted(os.environ if environ is None else environ):
        if not name.upper().startswith(prefix.upper()) or len(name) == len(prefix):
            continue
        model: type[BaseModel] | None = cls
        path: list[str] = []
        for part in name[len(prefix):].lower().split(DELIMITER):
            if model is None:  # a plain value has no sub-keys
                problems.append(f"{name}: {'.'.join(path)} takes a value, it has no field {part!r}")
                break
            fields = model.model_fields
            if part not in fields:
                close = difflib.get_close_matches(part, list(fields), n=3)
                hint = f"; did you mean {' or '.join(prefix + DELIMITER.join([*path, c]).upper() for c in close)}?" \
                    if close else ""
                where = f"{'.'.join(path)} has" if path else "there is"
                problems.append(f"{name}: {where} no field {part!r}{hint}")
                break
            path.append(part)
            annotation = fields[part].annotation
            if _takes_any_key(annotation):
                break
            model = model_of(annotation)
    return problems
