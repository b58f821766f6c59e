"""What the house tells the aggregator, and the forecasts it learns for that: a telemetry sample
per interval, flexibility (SoC, ratings, load and PV forecasts) when it changes materially."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import numpy as np

from edge_agent.energy_manager.decide import pv_limit_binding
from edge_agent.energy_manager.forecast import (
    FORECAST_HORIZON_SLOTS,
    FORECAST_SLOT_S,
    ForecastErrors,
    HistoryForecaster,
    Site,
)
from edge_agent.metrics import AgentMetrics
from edge_agent.resources.house import HouseSnapshot
from edge_agent.uplink.client import UplinkClient
from vpp_common.clock import Clock
from vpp_common.messages import PowerForecast
from vpp_common.timeslots import align_down

Forecasts = tuple[PowerForecast, PowerForecast, PowerForecast | None]  # load, PV, clear-sky PV


class HouseReports:
    def __init__(self, uplink: UplinkClient, metrics: AgentMetrics, telemetry_interval_s: float) -> None:
        self.uplink, self.metrics = uplink, metrics
        self.telemetry_interval_s = telemetry_interval_s  # until the aggregator's Welcome says otherwise
        self.forecaster: HistoryForecaster | None = None  # made once the nameplate is known
        self.forecast_errors = ForecastErrors()
        self._forecast: tuple[datetime, Forecasts] | None = None  # (slot, forecasts made in it)
        self.last_flex_sent: object = None  # None: the next flexibility goes out whatever it is
        self._last_recorded: object = None  # the last telemetry sample given to the uplink

    def start_forecasts(self, site: Site | None, timezone: str = "UTC") -> None:
        """The forecaster, once the nameplate is known (the clear-sky PV model needs the PV peak);
        ``timezone``: the house's days for the similar-day load."""
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
        self.forecaster.add(t.measured_at, t.load_power_w.value, -t.pv_power_w.value,
                            pv_limited=pv_limit_binding(t.pv_power_w.value, pv_limit_w))
        self.forecast_errors.settle(self.forecaster, t.measured_at)
        mae_load, mae_pv = self.forecast_errors.mae_w
        if mae_load is not None:
            self.metrics.forecast_error.labels("load").set(mae_load)
        if mae_pv is not None:
            self.metrics.forecast_error.labels("pv").set(mae_pv)

    def forecasts(self, now: datetime) -> Forecasts | None:
        """Load, PV and clear-sky PV forecasts (the last None without a site), made once per forecast slot."""
        if self.forecaster is None:
            return None
        slot = align_down(now, FORECAST_SLOT_S)
        if self._forecast is None or self._forecast[0] != slot:
            fc = self.forecaster.forecast(now, FORECAST_HORIZON_SLOTS)
            self.forecast_errors.record(fc)

            def power(values: np.ndarray, sign: float) -> PowerForecast:
                return PowerForecast(fc.start, fc.slot_s, tuple(round(sign * float(v), 1) for v in values))

            self._forecast = (slot, (power(fc.load_w, 1.0), power(fc.pv_w, -1.0),
                                     None if fc.pv_clear_sky_w is None else power(fc.pv_clear_sky_w, -1.0)))
        return self._forecast[1]

    def send_flexibility(self, snap: HouseSnapshot) -> None:
        flex = snap.flexibility
        forecasts = self.forecasts(snap.telemetry.measured_at)
        # SoC in 5 % steps and a new forecast per slot: the aggregator re-plans on every
        # update, so send only material changes
        key = (tuple((s.resource_id, round(s.soc_pct / 5)) for s in flex.storages),
               self._forecast[0] if self._forecast else None)
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
