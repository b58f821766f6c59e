"""The default scenario of ``vpp-sim``: 50 German homes built from real, cited data.

What is real and what is a modelling choice (details and licences in ``data/README.md``):

* Household load: SimBench household profiles H0-A, H0-B, H0-C, H0-G and H0-L
  (15 min, 2016; ODbL-1.0), each house scaled to its own annual consumption
  (2500-6000 kWh/yr) and shifted by a whole number of weeks so that houses sharing a
  profile do not move in lockstep.
* PV: SimBench PV feed-in profiles PV1..PV8 (15 min, 2016; ODbL-1.0), per kWp,
  calibrated by one factor to the German specific yield (``PV_SPECIFIC_YIELD``).
* Prices: the real hourly day-ahead price of the German bidding zone (ENTSO-E via
  Open Power System Data) for 2020-05-18 .. 2020-09-29, turned into a dynamic
  household tariff with the constants below; export earns the flat EEG feed-in tariff.
* Calendar: the scenario runs on the dates of the prices (UTC).  The fleet's days are
  Europe/Berlin days; the day-ahead prices of the next day are public at 13:00 there
  (EPEX SPOT publishes the DE-LU auction's results from about 12:45 CET/CEST).  Weather (PV) is
  taken from the same day of year of 2016 (both are leap years); load from the 2016
  day with the same weekday (``LOAD_DAY_OFFSET``).
* Houses, batteries, caps and feeder limits: drawn deterministically from ``seed``
  within the ranges documented here; feeder limits are a modelling choice.

Everything is vectorised and the files are parsed once per process, so building the
50-house scenario takes well under a second.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd

from .model import DEFAULT_INITIAL_SOC_PCT, House, PriceKnowledge, Scenario

DATA_DIR = Path(__file__).resolve().parent / "data"
LOAD_FILE = DATA_DIR / "simbench_household_load_2016.csv.gz"
PV_FILE = DATA_DIR / "simbench_pv_2016.csv.gz"
PRICE_FILE = DATA_DIR / "de_lu_day_ahead_2020-05-18_2020-09-29.csv"

DEFAULT_DAYS = 7  # what `vpp-sim run` simulates without --days
SLOT_S = 900
SLOTS_PER_DAY = 86400 // SLOT_S

# The fleet's site.  SimBench names no single location for its profiles; the PV
# profiles' solar noon (11:15-11:20 UTC) fits ~10 deg E, so the centre of Germany.
LATITUDE = 51.0
LONGITUDE = 10.0
TIMEZONE = "Europe/Berlin"
DAY_AHEAD_PUBLISHED = time(13)  # local, Europe/Berlin: 11:00 UTC in summer

# Calendar mapping.  The price year 2020 and the profile year 2016 are both leap years.
PROFILE_YEAR_START = datetime(2016, 1, 1, tzinfo=UTC)
PRICE_YEAR_START = datetime(2020, 1, 1, tzinfo=UTC)
# 2020-01-01 is a Wednesday, 2016-01-01 a Friday: the 2016 day 5 days later (2016-01-06)
# is again a Wednesday, so load day d of 2020 comes from day d + 5 of 2016.
LOAD_DAY_OFFSET = 5

# --- Tariff (EUR/kWh).  Basis in data/README.md. -----------------------------------
# Net price components of a German household on a dynamic (day-ahead indexed) tariff on
# top of the wholesale price, 2025: grid fee incl. metering ~10 ct, concession fee ~1.7 ct,
# electricity tax 2.05 ct, levies (KWKG 0.277 + Sec. 19 StromNEV 1.558 + offshore 0.816 ct)
# ~2.65 ct, supplier margin ~0.6 ct -> ~17 ct/kWh before VAT.
SURCHARGES_NET_PER_KWH = 0.17
VAT = 0.19
# EEG feed-in tariff, partial feed-in, PV <= 10 kWp, commissioned 2025-02-01 .. 2025-07-31
# (Bundesnetzagentur, EEG-Foerdersaetze): 8.03 ct/kWh, flat.
FEED_IN_TARIFF_PER_KWH = 0.0803

# --- PV calibration.  SimBench's PV profiles yield 575-697 kWh/kWp in 2016 (mean 651),
# well under what German rooftop PV delivers; one factor for all eight profiles scales
# their mean to 950 kWh/kWp/yr (German fleet 2016: ~38 TWh from ~40 GW), keeping the
# differences between them.  Production never exceeds the rated power.
PV_SPECIFIC_YIELD = 950.0  # kWh/kWp/yr

# --- Fleet ---------------------------------------------------------------------------
ANNUAL_LOAD_KWH = (2500.0, 6000.0)
PV_KWP = (4.0, 12.0)
SHARE_WITHOUT_PV = 0.08
SHARE_WITHOUT_BATTERY = 0.15  # houses without PV never have a battery
BATTERY_KWH = (5.0, 15.0)
BATTERY_KW = (2.5, 5.0)
# Site export caps: PV with a battery at 60 % of kWp (the rule of the KfW storage
# programmes), PV without at 70 % (EEG 2017 Sec. 9(2): small PV without remote control).
EXPORT_CAP_WITH_BATTERY = 0.60
EXPORT_CAP_WITHOUT_BATTERY = 0.70
IMPORT_LIMIT_W = 17_250.0  # main fuse 3 x 25 A x 230 V
HOUSES_PER_FEEDER = 17
# Feeder limits (modelling choice, constant in time): export at 40 % of the feeder's
# summed kWp, so the uncoordinated fleet exceeds it around noon on sunny days; import at
# 0.9 kW per house, just under these homes' coincident summer evening peak (1.0-1.2 kW per
# house on a 17-house feeder; winter 1.8-2.2 kW), so evening peaks exceed it now and then
# and grid-charging a whole feeder's batteries at once far exceeds it.
FEEDER_EXPORT_FRACTION_OF_KWP = 0.40
FEEDER_IMPORT_W_PER_HOUSE = 900.0


@functools.lru_cache(maxsize=1)
def _profiles() -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...], np.ndarray]:
    """(load names, (P, 35136) load shapes, pv names, (Q, 35136) PV per kWp, calibrated)."""
    load = pd.read_csv(LOAD_FILE, index_col=0)
    pv = pd.read_csv(PV_FILE, index_col=0)
    lw = np.ascontiguousarray(load.to_numpy(dtype=float).T)
    pw = pv.to_numpy(dtype=float).T
    yearly = pw.sum(axis=1) * SLOT_S / 3600.0  # kWh per kWp
    pw = np.minimum(pw * (PV_SPECIFIC_YIELD / yearly.mean()), 1.0)
    lw.setflags(write=False)
    pw.setflags(write=False)
    return tuple(load.columns), lw, tuple(pv.columns), np.ascontiguousarray(pw)


@functools.lru_cache(maxsize=1)
def _prices() -> tuple[datetime, np.ndarray]:
    """(first day, hourly day-ahead prices EUR/MWh) from the shipped file."""
    df = pd.read_csv(PRICE_FILE, index_col=0)
    first = datetime.fromisoformat(df.index[0]).replace(tzinfo=UTC)
    days = pd.to_datetime(df.index)
    if not (np.diff(days.values).astype("timedelta64[D]").astype(int) == 1).all():
        raise ValueError(f"{PRICE_FILE.name}: days are not contiguous")
    values = df.to_numpy(dtype=float).reshape(-1)
    values.setflags(write=False)
    return first, values


def day_ahead_eur_per_mwh() -> tuple[datetime, np.ndarray]:
    """The raw hourly day-ahead prices (EUR/MWh) and the UTC start of the first hour."""
    return _prices()


def import_price(day_ahead_eur_per_mwh: np.ndarray) -> np.ndarray:
    """Household import price (EUR/kWh, gross) on a dynamic tariff."""
    return (np.asarray(day_ahead_eur_per_mwh) / 1000.0 + SURCHARGES_NET_PER_KWH) * (1.0 + VAT)


def default_scenario(n_houses: int = 50, seed: int = 7) -> Scenario:
    """The default fleet: ``n_houses`` homes on ~17-house feeders, as many days as priced.

    Deterministic for (n_houses, seed).  Starts 2020-05-18 00:00 UTC (a Monday).
    """
    if n_houses < 1:
        raise ValueError("n_houses must be >= 1")
    load_names, load_shapes, pv_names, pv_per_kwp = _profiles()
    start, hourly = _prices()
    t = hourly.size * 3600 // SLOT_S
    year_slots = load_shapes.shape[1]

    rng = np.random.default_rng(seed)
    n = n_houses

    # Which houses have no PV / no battery: exact counts, random members.
    order = rng.permutation(n)
    n_no_pv = int(round(SHARE_WITHOUT_PV * n))
    n_no_batt = max(n_no_pv, int(round(SHARE_WITHOUT_BATTERY * n)))
    has_pv = np.ones(n, bool)
    has_pv[order[:n_no_pv]] = False
    has_batt = np.ones(n, bool)
    has_batt[order[:n_no_batt]] = False

    annual_kwh = np.round(rng.uniform(*ANNUAL_LOAD_KWH, n), -1)
    load_profile = (np.arange(n) + rng.integers(0, len(load_names))) % len(load_names)
    week_shift = rng.integers(-2, 3, n)
    kwp = np.where(has_pv, np.round(rng.uniform(*PV_KWP, n), 1), 0.0)
    pv_profile = rng.integers(0, len(pv_names), n)
    batt_kwh = np.where(has_batt, np.round(rng.uniform(*BATTERY_KWH, n), 1), 0.0)
    batt_kw = np.where(has_batt, np.clip(np.round(batt_kwh / 3.0 * 2.0) / 2.0, *BATTERY_KW), 0.0)

    # Slot indices into the 2016 profile year.
    first_slot = int((start - PRICE_YEAR_START).total_seconds()) // SLOT_S
    slots = first_slot + np.arange(t)
    pv_idx = slots % year_slots
    load_idx = (slots[None, :] + (LOAD_DAY_OFFSET + 7 * week_shift[:, None]) * SLOTS_PER_DAY) % year_slots

    shape_kwh = load_shapes.sum(axis=1) * SLOT_S / 3600.0  # per unit of the shape
    scale_w = annual_kwh * 1000.0 / shape_kwh[load_profile]  # W per unit of the shape
    load_w = load_shapes[load_profile[:, None], load_idx] * scale_w[:, None]
    pv_w = pv_per_kwp[pv_profile][:, pv_idx] * (kwp * 1000.0)[:, None]

    n_feeders = max(1, int(round(n / HOUSES_PER_FEEDER)))
    feeder_of = np.concatenate([np.full(len(c), i) for i, c in enumerate(np.array_split(np.arange(n), n_feeders))])
    feeder_ids = tuple(f"feeder-{i + 1}" for i in range(n_feeders))

    houses = []
    for i in range(n):
        if kwp[i] > 0:
            frac = EXPORT_CAP_WITH_BATTERY if has_batt[i] else EXPORT_CAP_WITHOUT_BATTERY
            cap = round(float(frac * kwp[i] * 1000.0), 1)
        else:
            cap = float("inf")
        houses.append(
            House(
                house_id=f"h{i + 1:03d}",
                pv_kwp=float(kwp[i]),
                battery_kwh=float(batt_kwh[i]),
                battery_kw=float(batt_kw[i]),
                export_cap_w=cap,
                import_limit_w=IMPORT_LIMIT_W,
                feeder=feeder_ids[feeder_of[i]],
                initial_soc_pct=DEFAULT_INITIAL_SOC_PCT,
            )
        )

    feeder_kwp = np.bincount(feeder_of, weights=kwp, minlength=n_feeders)
    feeder_n = np.bincount(feeder_of, minlength=n_feeders)
    export_limit = np.where(feeder_kwp > 0, FEEDER_EXPORT_FRACTION_OF_KWP * feeder_kwp * 1000.0, np.inf)
    import_limit = FEEDER_IMPORT_W_PER_HOUSE * feeder_n.astype(float)

    da = np.repeat(hourly, 3600 // SLOT_S)
    imp = import_price(da)
    exp = np.full(t, FEED_IN_TARIFF_PER_KWH)

    days = t // SLOTS_PER_DAY
    return Scenario(
        name="default",
        start=start,
        slot_s=SLOT_S,
        houses=tuple(houses),
        load_w=load_w,
        pv_w=pv_w,
        import_price_per_kwh=imp,
        export_price_per_kwh=exp,
        feeder_ids=feeder_ids,
        feeder_import_limit_w=np.repeat(import_limit[:, None], t, axis=1),
        feeder_export_limit_w=np.repeat(export_limit[:, None], t, axis=1),
        latitude=LATITUDE,
        longitude=LONGITUDE,
        currency="EUR",
        timezone=TIMEZONE,
        price_knowledge=PriceKnowledge("day_ahead", DAY_AHEAD_PUBLISHED, TIMEZONE),
        description=(
            f"{n} German homes on {n_feeders} feeders, {days} days from {start:%Y-%m-%d} (UTC), 15-min slots: "
            "SimBench 2016 household load and PV profiles, real 2020 DE-LU day-ahead prices on a dynamic "
            "tariff, flat EEG feed-in tariff; feeder limits bind for the uncoordinated fleet"
        ),
        sources={
            "load": "SimBench 1.6.3 (Univ. Kassel, TU Dortmund, RWTH Aachen, Fraunhofer IEE; simbench.de), "
            "LoadProfile.csv H0-A/B/C/G/L, 2016, ODbL-1.0",
            "pv": "SimBench 1.6.3 RESProfile.csv PV1..PV8, 2016, ODbL-1.0; calibrated to "
            f"{PV_SPECIFIC_YIELD:.0f} kWh/kWp/yr",
            "prices": "Day-ahead price DE-LU, hourly, 2020-05-18..2020-09-29: ENTSO-E Transparency Platform via "
            "Open Power System Data time_series (ODbL-1.0), as republished in github.com/flixOpt/flixopt "
            "docs/notebooks/data/raw/electricity_prices_de_2020.csv",
            "tariff": f"import = (day-ahead/1000 + {SURCHARGES_NET_PER_KWH} EUR/kWh net surcharges) x "
            f"{1 + VAT:.2f} VAT; export = EEG feed-in tariff {FEED_IN_TARIFF_PER_KWH * 100:.2f} ct/kWh "
            "(<= 10 kWp, 2025-02..07, Bundesnetzagentur)",
            "feeders": f"modelling choice: export limit {FEEDER_EXPORT_FRACTION_OF_KWP:.0%} of feeder kWp, "
            f"import limit {FEEDER_IMPORT_W_PER_HOUSE / 1000:.1f} kW per house, constant",
        },
    )

