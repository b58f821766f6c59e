"""JSON codecs of the stored messages, shared by the Redis store (values in Redis) and the
memory store (plans kept as text, see ``MemoryStore.put_plan``).

``ser_json_inf_nan="constants"``: pydantic's default writes NaN/inf as ``null``, which
would silently turn an implausible reading of NaN into "no value".
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import ConfigDict, RootModel, ValidationError

from vpp_common.messages import (
    DispatchPlan,
    Flexibility,
    Hello,
    LimitOverride,
    PlanStatus,
    SiteTelemetry,
)

from .base import FleetEventRecord, StoreError

_T = TypeVar("_T")

_JSON_CONFIG = ConfigDict(ser_json_inf_nan="constants")


class _Codec(Generic[_T]):
    """JSON for one message type; a stored value that no longer decodes is a
    :class:`StoreError` (the store answered unexpectedly), not a crash."""

    def __init__(self, message: type[_T]) -> None:
        self._name = message.__name__
        # a RootModel subclass per type, built once (schema building is slow)
        self._model: type[RootModel[_T]] = type(f"{self._name}Json", (RootModel[message],),  # type: ignore[valid-type]
                                                {"model_config": _JSON_CONFIG})

    def encode(self, value: _T) -> str:
        # model_construct: the value is already a typed, frozen message; do not
        # pay for validating it again on the way out.
        return self._model.model_construct(value).model_dump_json()

    def decode(self, raw: str | bytes) -> _T:
        try:
            return self._model.model_validate_json(raw).root
        except ValidationError as exc:
            raise StoreError(f"undecodable stored {self._name}: {exc}") from exc


HELLO = _Codec(Hello)
TELEMETRY = _Codec(SiteTelemetry)
FLEXIBILITY = _Codec(Flexibility)
PLAN = _Codec(DispatchPlan)
PLAN_STATUS = _Codec(PlanStatus)
LIMIT_OVERRIDE = _Codec(LimitOverride)
FLEET_EVENT = _Codec(FleetEventRecord)
