"""The evaluation set of ``vpp-sim eval``: scenarios across climates, tariffs, seasons, fleet mixes
and binding feeder limits (``docs/evaluation.md``).

``names()`` lists them, ``build(name)`` returns ``(Scenario, EvalMeta)``.  Two are marked
"tuning" (parameters may be chosen on them); the others are "held out" (report only).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from simulator.fleet.evalset.build import GERMANY, EvalMeta, Spec
from simulator.fleet.evalset.build import build as _build
from simulator.fleet.model import Scenario

TUNING, HELD_OUT = "tuning", "held out"

SPECS: tuple[Spec, ...] = (
    # Like the fleet of issue 18 (not its data): hot humid sunny US, 15 homes, 3 feeders of 5,
    # 6.4 kWh / 5 kW batteries, export limit 30 % of feeder kWp, import 2 kW per house, TOU 16-21.
    Spec("us_hot_tou_summer", HELD_OUT, "miami_fl", "summer", "America/New_York", date(2020, 7, 11),
         "time_of_use", 15, 5, seed=101, binds=("import", "export"), share_hvac=1.0,
         hvac_kw_per_k=(0.09, 0.16), annual_base_kwh=(4000.0, 7000.0),
         description="15 homes in Miami FL (TMY), air conditioning, TOU 16-21 weekday peak"),
    Spec("us_hot_dayahead_summer", HELD_OUT, "miami_fl", "summer", "America/New_York", date(2020, 8, 22),
         "day_ahead", 15, 5, seed=102, binds=("import", "export"), share_hvac=1.0,
         hvac_kw_per_k=(0.09, 0.16), annual_base_kwh=(4000.0, 7000.0),
         description="the same kind of fleet in Miami FL under the European day-ahead price"),
    Spec("us_mixed_tou_winter", TUNING, "greensboro_nc", "winter", "America/New_York", date(2021, 1, 16),
         "time_of_use", 20, 5, seed=103, binds=("import", "export"), share_no_pv=0.1, share_no_battery=0.2, n_ev=3,
         share_hvac=0.8, hvac_kw_per_k=(0.12, 0.22), feeder_import_w_per_house=2500.0,
         description="20 homes in Greensboro NC in January, heat pumps, 3 EVs, some without PV or battery"),
    Spec("de_dayahead_summer", TUNING, GERMANY, "summer", "Europe/Berlin", date(2020, 6, 6),
         "day_ahead", 24, 8, seed=104, binds=("export",), pv_kwp=(4.0, 12.0), share_no_pv=0.08,
         share_no_battery=0.15, battery=None, annual_base_kwh=(2500.0, 6000.0), site_import_w=17_250.0,
         site_export_fraction=0.6, feeder_export_fraction=0.40, feeder_import_w_per_house=None,
         description="24 German homes (SimBench) in June on the day-ahead tariff"),
    Spec("de_flat_summer", HELD_OUT, GERMANY, "summer", "Europe/Berlin", date(2020, 8, 15),
         "flat", 30, 10, seed=105, binds=(), pv_kwp=(4.0, 12.0), share_no_pv=0.1, share_no_battery=0.2,
         battery=None, n_ev=4, ev_charger_w=11_000.0, annual_base_kwh=(2500.0, 6000.0), site_import_w=17_250.0,
         site_export_fraction=0.6, feeder_export_fraction=None, feeder_import_w_per_house=None,
         description="30 German homes (SimBench) in August, flat price with feed-in, 4 EVs, no feeder limit"),
    Spec("cold_tou_winter", HELD_OUT, "sand_point_ak", "winter", "America/Anchorage", date(2021, 2, 6),
         "time_of_use", 18, 6, seed=106, binds=("import",), pv_kwp=(4.0, 8.0), share_no_pv=0.15,
         share_no_battery=0.15, battery=(10.0, 5.0), n_ev=2, share_hvac=1.0, hvac_kw_per_k=(0.12, 0.2),
         feeder_import_w_per_house=2500.0,
         description="18 homes in a cold maritime climate (Sand Point AK, 55 N) in February, heat pumps"),
)
_BY_NAME = {s.name: s for s in SPECS}


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def spec(name: str) -> Spec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown eval scenario {name!r}; known: {', '.join(_BY_NAME)}") from None


def write_meta(meta: EvalMeta, folder: str | Path) -> Path:
    """``eval.toml`` beside an exported scenario: what the report says of it (its role in the set,
    climate, season, the limits that bind, the tariff's source).  The scenario's own time zone
    and tariff are in its scenario.toml; the loader does not read this file."""
    t = meta.tariff
    lines = ["# vpp-sim eval: this scenario's place in the evaluation set (docs/evaluation.md)",
             "[eval]", f'role = "{meta.role}"', f'climate = "{meta.climate}"', f'season = "{meta.season}"',
             f'tariff = "{t.kind}"',
             f"binds = [{', '.join(repr(b).replace(chr(39), chr(34)) for b in meta.binds)}]",
             f"source = {json.dumps(t.source)}", ""]
    path = Path(folder) / "eval.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def build(name: str) -> tuple[Scenario, EvalMeta]:
    return _build(spec(name))
