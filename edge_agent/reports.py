"""What the house tells the aggregator, and the forecasts it learns for that: a telemetry sample
per interval, flexibility (SoC, ratings, load and PV forecasts) when it changes materially."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from edge_agent.energy_manager.decide import pv_limit_binding
from edge_agent.energy_manager.forecast_plain import PlainForecaster
from edge_agent.energy_manager.history import (
    FORECAST_HORIZON_SLOTS,
    FORECAST_SLOT_S,
    ForecastErrors,
    Site,
)
from edge_agent.metrics import AgentMetrics
from edge_agent.resources.house import HouseSnapshot
from edge_agent.uplink.client import UplinkClient
from vpp_common.clock import Clock
from vpp_common.messages import (
    CurtailmentFlexibility,
    Flexibility,
    PowerForecast,
    ShiftableRunFlexibility,
    StorageFlexibility,
    SwitchableLoadFlexibility,
)
from vpp_common.timeslots import align_down

if TYPE_CHECKING:
    import numpy as np

    from edge_agent.energy_manager.forecast import HistoryForecaster

log = logging.getLogger(__name__)
_A = TypeVar("_A")
Forecasts = tuple[PowerForecast, PowerForecast, PowerForecast | None]  # load, PV, clear-sky PV
LoadsFlexibility = tuple[tuple[SwitchableLoadFlexibility, ...], tuple[ShiftableRunFlexibility, ...]]
# A component's flexible loads now (e.g. Home Assistant's switchable entities): OMBC loads, PPBC runs.
FlexibilitySource = Callable[[datetime], LoadsFlexibility]
DevicesFlexibility = tuple[tuple[StorageFlexibility, ...], tuple[CurtailmentFlexibility, ...]]
# More devices' storages and curtailable PV now (the S2 CEM's FRBC and PEBC RMs), after the house's own.
DeviceSource = Callable[[datetime], DevicesFlexibility]


def _answers(sources: Sequence[Callable[[datetime], _A]], now: datetime, what: str) -> Iterator[_A]:
    """Each source's answer now; one that fails is logged and left out (a component's bug must not
    stop the house's reports), not the others."""
    for source in sources:
        try:
            answer = source(now)
        except Exception:
            log.exception("a %s source failed; what it gives is left out this time", what)
            continue
        yield answer


class HouseReports:
    def __init__(self, uplink: UplinkClient, metrics: AgentMetrics, telemetry_interval_s: float) -> None:
        self.uplink, self.metrics = uplink, metrics
        self.telemetry_interval_s = telemetry_interval_s  # until the aggregator's Welcome says otherwise
        self.forecaster: HistoryForecaster | PlainForecaster | None = None  # made once the nameplate is known
        self.forecast_errors = ForecastErrors()
        self._forecast: tuple[datetime, Forecasts] | None = None  # (slot, forecasts made in it)
        self.last_flex_sent: object = None  # None: the next flexibility goes out whatever it is
        self._last_recorded: object = None  # the last telemetry sample given to the uplink
        self.flexibility_sources: list[FlexibilitySource] = []  # flexible loads beside the house's devices
        self.device_sources: list[DeviceSource] = []  # storages and PV beside the house's own
        # their measured power now (storages W, PV W; consumption > 0): planned apart, so kept out of the load learnt
        self.device_powers: list[Callable[[datetime], tuple[float, float]]] = []

    def start_forecasts(self, site: Site | None, timezone: str = "UTC") -> None:
        """The forecaster, once the nameplate is known (the clear-sky PV model needs the PV peak);
        ``timezone``: the house's days for the similar-day load.  Without a site the same forecast
        in pure Python: numpy stays unloaded (docs/performance.md)."""
        if site is None:
            self.forecaster = PlainForecaster(FORECAST_SLOT_S, days=7, timezone=timezone)
            return
        from edge_agent.energy_manager.forecast import HistoryForecaster

        self.forecaster = HistoryForecaster(FORECAST_SLOT_S, days=7, site=site, timezone=timezone)

    def welcome(self, telemetry_interval_s: float, snap: HouseSnapshot | None) -> None:
        """A new session: the aggregator's interval (0: keep), and everything sent again."""
        if telemetry_interval_s > 0:
            self.telemetry_interval_s = telemetry_interval_s
        self.last_flex_sent = None
        if snap is not None:
            self.record_telemetry(snap)
            self.send_flexibility(snap)

    async def run_telemetry(self, snapshot: Callable[[], HouseSnapshot | None], clock: Clock) -> None:
        """A telemetry sample every interval, online or not (the uplink spools it until the
        aggregator has stored it); a Heartbeat instead while the device gives nothing new."""
        while True:
            if not self.record_telemetry(snapshot()) and self.uplink.connected:
                self.uplink.send_heartbeat(clock.now())
            await clock.sleep(self.telemetry_interval_s)

    def learn(self, snap: HouseSnapshot, pv_limit_w: float | None) -> None:
        """Feed the forecaster with valid readings; score past forecasts."""
        t = snap.telemetry
        if self.forecaster is None or not (t.load_power_w.usable and t.pv_power_w.usable):
            return
        assert t.load_power_w.value is not None and t.pv_power_w.value is not None
        # the meter sees the RMs' storages and PV too; the fleet plans them as storages and PV, so
        # the load forecast must not hold them as well (a planned charge would count twice)
        storage_w, pv_w = self.device_power(t.measured_at)
        self.forecaster.add(t.measured_at, t.load_power_w.value - storage_w - pv_w, -t.pv_power_w.value - pv_w,
                            pv_limited=pv_limit_binding(t.pv_power_w.value, pv_limit_w))
        self.forecast_errors.settle(self.forecaster, t.measured_at)
        mae_load, mae_pv = self.forecast_errors.mae_w
        if mae_load is not None:
            self.metrics.forecast_error.labels("load").set(mae_load)
        if mae_pv is not None:
            self.metrics.forecast_error.labels("pv").set(mae_pv)

    def device_power(self, now: datetime) -> tuple[float, float]:
        """The other devices' measured storage and PV power now (W); a source that fails adds nothing
        (logged)."""
        storage_w = pv_w = 0.0
        for a, b in _answers(self.device_powers, now, "device power"):
            storage_w, pv_w = storage_w + a, pv_w + b
        return storage_w, pv_w

    def forecasts(self, now: datetime) -> Forecasts | None:
        """Load, PV and clear-sky PV forecasts (the last None without a site), made once per forecast slot."""
        if self.forecaster is None:
            return None
        slot = align_down(now, FORECAST_SLOT_S)
        if self._forecast is None or self._forecast[0] != slot:
            fc = self.forecaster.forecast(now, FORECAST_HORIZON_SLOTS)
            self.forecast_errors.record(fc)

            def power(values: Sequence[float] | np.ndarray, sign: float) -> PowerForecast:
                return PowerForecast(fc.start, fc.slot_s, tuple(round(sign * float(v), 1) for v in values))

            self._forecast = (slot, (power(fc.load_w, 1.0), power(fc.pv_w, -1.0),
                                     None if fc.pv_clear_sky_w is None else power(fc.pv_clear_sky_w, -1.0)))
        return self._forecast[1]

    def loads(self, now: datetime) -> LoadsFlexibility:
        """Every source's flexible loads; a source that fails is left out (logged), not the update."""
        switchable: list[SwitchableLoadFlexibility] = []
        shiftable: list[ShiftableRunFlexibility] = []
        for a, b in _answers(self.flexibility_sources, now, "flexibility"):
            switchable += a
            shiftable += b
        return tuple(switchable), tuple(shiftable)

    def with_devices(self, flex: Flexibility, now: datetime) -> Flexibility:
        """``flex`` with the other devices' storages and curtailable PV after the house's own (the
        aggregator knows the house's battery by its Hello, but an old one took the first); a
        device claiming one of the house's own ids is left out; a source that fails, too (logged)."""
        storages, curtailments = list(flex.storages), list(flex.curtailments)
        taken = {s.resource_id for s in storages} | {c.resource_id for c in curtailments}
        for more_storages, more_curtailments in _answers(self.device_sources, now, "device flexibility"):
            for s in more_storages:
                if s.resource_id not in taken:
                    taken.add(s.resource_id)
                    storages.append(s)
            for c in more_curtailments:
                if c.resource_id not in taken:
                    taken.add(c.resource_id)
                    curtailments.append(c)
        return replace(flex, storages=tuple(storages), curtailments=tuple(curtailments))

    def send_flexibility(self, snap: HouseSnapshot) -> None:
        now = snap.telemetry.measured_at
        switchable, shiftable = self.loads(now)
        flex = replace(self.with_devices(snap.flexibility, now), switchable_loads=switchable, shiftable_runs=shiftable)
        forecasts = self.forecasts(now)
        # SoC in 5 % steps and a new forecast per slot: the aggregator re-plans on every
        # update, so send only material changes (a load's mode or a run's state is one)
        key = (tuple((s.resource_id, round(s.soc_pct / 5)) for s in flex.storages),
               tuple(c.resource_id for c in flex.curtailments),
               self._forecast[0] if self._forecast else None,
               tuple((x.resource_id, x.active_mode_id) for x in switchable),
               tuple((r.resource_id, r.state, r.start, r.earliest_start, r.latest_end) for r in shiftable))
        if key != self.last_flex_sent:
            if forecasts is not None:
                flex = replace(flex, load_forecast=forecasts[0], pv_forecast=forecasts[1],
                               pv_clear_sky_forecast=forecasts[2])
            self.uplink.send(flex)
            self.last_flex_sent = key

    def record_telemetry(self, snap: HouseSnapshot | None) -> bool:
        """Give the latest sample to the uplink, once; False if there is nothing new."""
        if snap is None or snap.telemetry is self._last_recorded:
            return False
        self.uplink.send(snap.telemetry)
        self._last_recorded = snap.telemetry
        return True
