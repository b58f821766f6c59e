"""The fleet's prices and the grid signal each house gets: the horizon's prices from the
tariff or a price series, plus the house's temporary limits and live feeder envelope."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from aggregator.config import PlanningConfig
from aggregator.dispatch.tariff import TouTariff
from aggregator.feeder_control import FeederEnvelope
from vpp_common.clock import Clock
from vpp_common.config import ConfigError
from vpp_common.messages import GridSignal, LimitOverride, SiteLimits
from vpp_common.tariff import PriceSeries, PriceSource
from vpp_common.timeslots import align_down


def with_limits(base: GridSignal, override: LimitOverride | None, env: FeederEnvelope | None) -> GridSignal:
    """The fleet's signal plus a house's temporary limits and feeder envelope (both only ever
    tighten); ``base`` itself if it has neither."""
    if override is None and env is None:
        return base
    if env is None:
        assert override is not None
        return GridSignal(issued_at=base.issued_at, currency=base.currency, prices=base.prices,
                          limits=override.limits, limits_valid_until=override.valid_until)
    limits, until = env.limits, env.valid_until
    if override is not None:  # both only ever tighten
        limits = SiteLimits(min(limits.max_import_w, override.limits.max_import_w),
                            min(limits.max_export_w, override.limits.max_export_w))
        until = min(until, override.valid_until)
    return GridSignal(issued_at=base.issued_at, currency=base.currency, prices=base.prices,
                      limits=limits, limits_valid_until=until, limits_are_feeder_envelope=True)


class FleetPrices:
    """The prices every house shares: a TOU tariff, or a price series (``prices_file``) that
    replaces it and becomes known day by day."""

    def __init__(self, tariff: TouTariff, config: PlanningConfig, clock: Clock) -> None:
        self._cfg = config
        self._clock = clock
        self.tariff: PriceSource = tariff
        self._series: PriceSeries | None = None
        if config.prices_file is not None:  # a price series replaces the TOU tariff
            try:
                published, market_tz = config.price_publication()
                self._series = PriceSeries.load(config.prices_file, slot_s=config.slot_s, published=published,
                                                market_timezone=market_tz)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"planning.prices_file: {exc}") from None
            self.tariff = self._series
        self._price_cache: tuple[datetime, np.ndarray] | None = None
        self._signal_cache: GridSignal | None = None

    def horizon(self, start: datetime, now: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Import and export prices of the horizon from ``start`` as known at ``now`` (a price
        series may end the horizon early: ``horizon_within_known_prices``)."""
        cfg = self._cfg
        if self._series is None:
            return self.tariff.prices(start, cfg.slot_s, cfg.horizon_slots)
        known = self._series.known_until(now)
        n = cfg.horizon_slots
        if cfg.horizon_within_known_prices:
            n = min(n, max(0, math.floor((known - start).total_seconds() / cfg.slot_s)))
        return self._series.prices(start, cfg.slot_s, n, known_until=known)

    def import_prices(self, start: datetime) -> np.ndarray:
        """Import prices of the horizon from ``start``: the same for every house in a cycle."""
        if self._price_cache is None or self._price_cache[0] != start:
            imp, _ = self.horizon(start, self._clock.now())
            imp.setflags(write=False)
            self._price_cache = (start, imp)
        return self._price_cache[1]

    def grid_signal(self) -> GridSignal:
        """Prices of the horizon from the current slot: one object per slot start, shared by
        every connecting house (a reconnect storm must not rebuild it thousands of times)."""
        start = align_down(self._clock.now(), self._cfg.slot_s)
        if self._signal_cache is None or self._signal_cache.prices[0].start != start:
            self._signal_cache = GridSignal(
                issued_at=self._clock.now(), currency=self.tariff.currency,
                prices=self.tariff.price_slots(start, self._cfg.slot_s, self._cfg.horizon_slots))
        return self._signal_cache
