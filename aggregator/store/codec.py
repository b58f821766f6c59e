"""JSON codecs of the stored messages, shared by the Redis store (values in Redis) and the
memory store (plans kept as text, see ``MemoryStore.put_plan``).

Each is a ``RootModel`` subclass built once at import (schema building is slow).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import ConfigDict, RootModel, ValidationError

from vpp_common.messages import DispatchPlan, Flexibility, Hello, LimitOverride, PlanStatus, SiteTelemetry

from .base import FleetEventRecord, StoreError

_T = TypeVar("_T")

_JSON_CONFIG = ConfigDict(ser_json_inf_nan="constants")


class _HelloJson(RootModel[Hello]):
    model_config = _JSON_CONFIG


class _TelemetryJson(RootModel[SiteTelemetry]):
    model_config = _JSON_CONFIG


class _FlexibilityJson(RootModel[Flexibility]):
    model_config = _JSON_CONFIG


class _PlanJson(RootModel[DispatchPlan]):
    model_config = _JSON_CONFIG


class _PlanStatusJson(RootModel[PlanStatus]):
    model_config = _JSON_CONFIG


class _LimitOverrideJson(RootModel[LimitOverride]):
    model_config = _JSON_CONFIG


class _FleetEventJson(RootModel[FleetEventRecord]):
    model_config = _JSON_CONFIG


class _Codec(Generic[_T]):
    """JSON for one message type; a stored value that no longer decodes is a
    :class:`StoreError` (the store answered unexpectedly), not a crash."""

    def __init__(self, model: type[RootModel[_T]], name: str) -> None:
        self._model = model
        self._name = name

    def encode(self, value: _T) -> str:
        # model_construct: the value is already a typed, frozen message; do not
        # pay for validating it again on the way out.
        return self._model.model_construct(value).model_dump_json()

    def decode(self, raw: str | bytes) -> _T:
        try:
            return self._model.model_validate_json(raw).root
        except ValidationError as exc:
            raise StoreError(f"undecodable stored {self._name}: {exc}") from exc


_HELLO = _Codec(_HelloJson, "Hello")
_TELEMETRY = _Codec(_TelemetryJson, "SiteTelemetry")
_FLEXIBILITY = _Codec(_FlexibilityJson, "Flexibility")
_PLAN = _Codec(_PlanJson, "DispatchPlan")
_PLAN_STATUS = _Codec(_PlanStatusJson, "PlanStatus")
_LIMIT_OVERRIDE = _Codec(_LimitOverrideJson, "LimitOverride")
_FLEET_EVENT = _Codec(_FleetEventJson, "FleetEventRecord")
