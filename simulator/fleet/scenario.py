"""Scenario folders: read (with errors that name the file, line and field) and write.

A scenario is a folder (see ``docs/scenario-format.md``)::

    scenario.toml        name, location, time zone, slot length, optional start/days; [tariff]
    houses.csv           id, pv_kwp, battery_kwh, battery_kw, export_cap_w, import_limit_w, feeder
    series/<id>.csv      timestamp, load_w, pv_production_w (or pv_production_w_per_kwp)
    prices.csv           timestamp, import_price_per_kwh, export_price_per_kwh (day_ahead, series)
    feeders.csv          feeder, import_limit_w, export_limit_w [, timestamp]

Every time series is a *step* series: a row's values hold from its timestamp
until the next row (the last row for one more typical step).  Values are
averaged over each simulation slot, so hourly prices, 15-minute load and
1-minute measurements can be mixed.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.fleet import scenario_checks as checks
from simulator.fleet.appliance_input import parse_appliances, with_appliances
from simulator.fleet.errors import ScenarioError
from simulator.fleet.model import DEFAULT_EFFICIENCY, DEFAULT_INITIAL_SOC_PCT, House, Scenario
from simulator.fleet.scenario_checks import GapFill, Plausibility

__all__ = ["ScenarioError", "load_run", "load_scenario", "write_scenario"]
from simulator.fleet.tariff_input import (
    PRICE_LIMIT_PER_KWH,
    Tariff,
    TariffError,
    parse_tariff,
    tariff_prices,
)
from vpp_common.localtime import zone

log = logging.getLogger(__name__)


def _limit(v: object) -> object:
    """Empty, 'inf' or 'none' mean no limit (None); anything else is left to the field's checks."""
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "inf", "+inf", "none", "-")):
        return None
    return v


class _HouseRow(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    pv_kwp: float = Field(ge=0, le=1000)
    battery_kwh: float = Field(ge=0, le=10000)
    battery_kw: float = Field(ge=0, le=10000)
    export_cap_w: float | None = None  # None: no limit (empty cell or no column); range: scenario_checks
    import_limit_w: float | None = None
    feeder: str = Field(min_length=1)
    initial_soc_pct: float = Field(DEFAULT_INITIAL_SOC_PCT, ge=0, le=100)
    efficiency: float = Field(DEFAULT_EFFICIENCY, gt=0.5, le=1.0)
    series: str | None = None  # file of this house's series; default series/<id>.csv

    _lim = field_validator("export_cap_w", "import_limit_w", mode="before")(lambda v: _limit(v))


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    timezone: str | None = None  # IANA zone of the fleet; absent: UTC, with a warning
    description: str = ""
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    slot_s: int = Field(900, ge=60, le=3600)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")  # ISO 4217: [tariff] unit is "<currency>/kWh"
    start: datetime | None = None  # default: the latest first timestamp of all files
    days: float | None = Field(None, gt=0)  # default: as far as every file reaches
    sources: dict[str, str] = {}
    warmup_days: float = Field(2.0, ge=0, le=366)  # simulated before `days`, not counted
    gap_fill: GapFill = "error"
    max_gap_h: float = Field(6.0, gt=0, le=24 * 366)
    checks: Plausibility = Plausibility()

    @field_validator("slot_s")
    @classmethod
    def _divides_day(cls, v: int) -> int:
        if 86400 % v:
            raise ValueError("must divide a day (e.g. 900 for 15 minutes)")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v)  # ValueError naming it
        return v

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2025-06-01T00:00:00Z")
        return v.astimezone(UTC) if v is not None else None


@dataclass(frozen=True)
class _Series:
    """One step series: times (ns since epoch) and columns of values; ``end`` = where the last value stops."""

    file: str
    t_ns: np.ndarray
    cols: dict[str, np.ndarray]
    end_ns: int

    def slot_means(self, col: str, start: datetime, slot_s: int, n: int) -> np.ndarray:
        """Mean of the step function over each slot (exact: the integral is piecewise linear)."""
        s0 = pd.Timestamp(start).value
        i0 = int(np.searchsorted(self.t_ns, s0))
        grid = s0 + np.arange(n + 1, dtype=np.int64) * slot_s * 10**9
        nxt = self.end_ns if i0 + n >= len(self.t_ns) else int(self.t_ns[i0 + n])
        if np.array_equal(self.t_ns[i0:i0 + n], grid[:n]) and nxt >= grid[n]:
            return self.cols[col][i0:i0 + n].astype(float)  # a row per slot: its value, exactly
        t = np.append(self.t_ns, self.end_ns).astype(np.float64)
        v = self.cols[col]
        cum = np.concatenate([[0.0], np.cumsum(v * np.diff(t))])
        edges = s0 + np.arange(n + 1, dtype=np.float64) * slot_s * 1e9
        f = np.interp(edges, t, cum)
        return np.diff(f) / (slot_s * 1e9)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ScenarioError(path, "file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, comment="#")
    except Exception as exc:
        raise ScenarioError(path, f"cannot read as CSV: {exc}") from exc
    df.columns = [c.strip() for c in df.columns]
    if df.empty:
        raise ScenarioError(path, "no rows")
    return df


def _need(df: pd.DataFrame, path: Path, cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ScenarioError(path, f"missing column(s) {', '.join(missing)}; has {', '.join(df.columns)}")


def _floats(df: pd.DataFrame, path: Path, col: str, *, allow_inf: bool = False, min_value: float | None = None,
            offset_line: int = 2) -> np.ndarray:
    raw = df[col].astype(str).str.strip()
    if allow_inf:
        raw = raw.mask(raw.str.lower().isin(["", "inf", "none", "-"]), "inf")
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(vals) | (~np.isfinite(vals) if not allow_inf else np.isneginf(vals))
    if bad.any():
        i = int(np.argmax(bad))
        raise ScenarioError(path, f"not a finite number: {df[col].iloc[i]!r}", i + offset_line, col)
    if min_value is not None and (vals < min_value).any():
        i = int(np.argmax(vals < min_value))
        raise ScenarioError(path, f"must be >= {min_value:g}, got {vals[i]:g}", i + offset_line, col)
    return vals


def _times(df: pd.DataFrame, path: Path, col: str = "timestamp", *, increasing: bool = True) -> np.ndarray:
    ts = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
    if ts.isna().any():
        i = int(np.argmax(ts.isna().to_numpy()))
        raise ScenarioError(path, f"not an ISO 8601 time with offset: {df[col].iloc[i]!r}", i + 2, col)
    naive = ~df[col].astype(str).str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
    if naive.any():
        i = int(np.argmax(naive.to_numpy()))
        raise ScenarioError(path, f"needs a UTC offset (e.g. 2025-06-01T00:00:00Z): {df[col].iloc[i]!r}", i + 2, col)
    ns = ts.dt.as_unit("ns").astype("int64").to_numpy()  # pandas 3 may parse to us
    d = np.diff(ns)
    if increasing and (d <= 0).any():
        i = int(np.argmax(d <= 0))
        raise ScenarioError(path, "timestamps must increase", i + 3, col)
    return ns


def _series(path: Path, cols: tuple[str, ...], meta: _Meta, df: pd.DataFrame | None = None,
            check: Callable[[dict[str, np.ndarray]], None] | None = None, **kw: object) -> _Series:
    """A step series: ``check`` sees the rows as given, then gaps are filled by the folder's policy."""
    df = _read_csv(path) if df is None else df
    _need(df, path, ("timestamp", *cols))
    t = _times(df, path)
    vals = {c: _floats(df, path, c, **kw) for c in cols}  # type: ignore[arg-type]
    if check is not None:
        check(vals)
    step = checks.typical_step_ns(t)
    t, vals = checks.fill_gaps(str(path), t, vals, step, meta.gap_fill, meta.max_gap_h)
    return _Series(str(path), t, vals, int(t[-1]) + step)


def _loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """pydantic's error location as the field's name in the file: ``tariff.period[1].to``."""
    out = prefix
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _read_meta(path: Path) -> tuple[_Meta, Tariff]:
    """scenario.toml: [scenario] and [tariff] (numbers read as decimals: a price's unit is
    converted exactly, see ``simulator.fleet.tariff_input``)."""
    if not path.is_file():
        raise ScenarioError(path, "file not found")
    try:
        raw = tomllib.loads(path.read_text(), parse_float=Decimal)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(path, f"not valid TOML: {exc}") from exc
    if "scenario" in raw:
        unknown = [k for k in raw if k not in ("scenario", "tariff", "appliances")]
        if unknown:
            raise ScenarioError(path, "unknown table or key (scenario.toml has [scenario], [tariff] and "
                                "[[appliances]])", None, unknown[0])
        meta_raw = raw["scenario"]
    else:
        meta_raw = {k: v for k, v in raw.items() if k not in ("tariff", "appliances")}
    tariff_raw = raw.get("tariff")
    try:
        meta = _Meta.model_validate(meta_raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ScenarioError(path, err["msg"].removeprefix("Value error, "), None, _loc(err["loc"])) from exc
    try:
        if tariff_raw is not None and not isinstance(tariff_raw, dict):
            raise TariffError("tariff", "must be a table [tariff]")
        tariff = parse_tariff(tariff_raw, meta.currency, meta.timezone or "UTC")
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ScenarioError(path, err["msg"].removeprefix("Value error, "), None, _loc(err["loc"], "tariff")) from exc
    except TariffError as exc:
        raise ScenarioError(path, str(exc), None, exc.field) from exc
    if meta.timezone is None:
        log.warning("%s: no timezone in [scenario]: the fleet's days (similar-day forecasts, price publication, "
                    "the report) are UTC days; set e.g. timezone = \"Europe/Berlin\"", path)
    return meta, tariff


# prices.csv: the columns' names say per kWh, but the number's unit is [tariff] unit either way
PRICE_COLUMNS = (("import_price_per_kwh", "export_price_per_kwh"), ("import_price", "export_price"))


def _price_column(df: pd.DataFrame, path: Path, col: str, exp10: int) -> np.ndarray:
    """A price column in currency/kWh: each number's decimal text x 10**exp10, rounded once
    (the same price in EUR/MWh, EUR/kWh or ct/kWh gives the same float)."""
    out = np.empty(len(df))
    for i, text in enumerate(df[col].astype(str).tolist()):
        try:
            d = Decimal(text.strip())
        except InvalidOperation:
            d = Decimal("nan")
        if not d.is_finite():
            raise ScenarioError(path, f"not a finite number: {text!r}", i + 2, col)
        out[i] = float(d.scaleb(exp10))
        if abs(out[i]) > PRICE_LIMIT_PER_KWH:
            raise ScenarioError(path, f"{text.strip()} is {out[i]:g} per kWh, beyond {PRICE_LIMIT_PER_KWH:g} "
                                "(wrong [tariff] unit?)", i + 2, col)
    return out


def _price_series(path: Path, tariff: Tariff, meta: _Meta) -> _Series:
    df = _read_csv(path)
    cols = next((c for c in PRICE_COLUMNS if set(c) <= set(df.columns)), PRICE_COLUMNS[0])
    _need(df, path, ("timestamp", *cols))
    t = _times(df, path)
    vals = {key: _price_column(df, path, col, tariff.exp10) for key, col in zip(("import", "export"), cols, strict=True)}
    # plausibility on what the numbers mean (currency/kWh), named by the file's columns
    checks.check_prices(str(path), dict(zip(cols, vals.values(), strict=True)), meta.checks)
    step = checks.typical_step_ns(t)
    t, vals = checks.fill_gaps(str(path), t, vals, step, meta.gap_fill, meta.max_gap_h)
    return _Series(str(path), t, vals, int(t[-1]) + step)


def load_scenario(folder: str | Path, days: float | None = None) -> Scenario:
    """The folder's data from its start with no warm-up: ``days`` (default scenario.toml's) from the start."""
    return load_run(folder, days, warmup_days=0.0)[0]


def load_run(folder: str | Path, days: float | None = None, warmup_days: float | None = None
             ) -> tuple[Scenario, int]:
    """Read and check a scenario folder for a run: (the scenario over the warm-up and the days counted
    after it, the warm-up in slots).  ``days`` and ``warmup_days`` override scenario.toml's."""
    root = Path(folder)
    if not root.is_dir():
        raise ScenarioError(root, "not a folder (a scenario is a folder: see docs/scenario-format.md)")
    meta_path = root / "scenario.toml"
    meta, tariff = _read_meta(meta_path)

    houses_path = root / "houses.csv"
    hdf = _read_csv(houses_path)
    _need(hdf, houses_path, ("id", "pv_kwp", "battery_kwh", "battery_kw", "feeder"))
    rows: list[_HouseRow] = []
    for i, rec in enumerate(hdf.to_dict("records")):
        rec = {k: v for k, v in rec.items() if not (v == "" and k in ("initial_soc_pct", "efficiency", "series"))}
        try:
            rows.append(_HouseRow.model_validate(rec))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ScenarioError(houses_path, err["msg"], i + 2, ".".join(str(p) for p in err["loc"])) from exc
        checks.check_house(str(houses_path), i + 2, rows[-1].model_dump(), meta.checks)
    seen: set[str] = set()
    for i, r in enumerate(rows):
        if r.id in seen:
            raise ScenarioError(houses_path, f"duplicate house id {r.id!r}", i + 2, "id")
        seen.add(r.id)

    prices_path = root / "prices.csv"
    prices = _price_series(prices_path, tariff, meta) if tariff.needs_prices_file else None
    if prices is None and prices_path.exists():
        log.warning("%s: not read: [tariff] kind %r prices every slot itself", prices_path, tariff.kind)
    series: list[tuple[_HouseRow, _Series, str]] = []
    for r in rows:
        p = root / (r.series or f"series/{r.id}.csv")
        df = _read_csv(p)  # once: a year of 15-min rows per house
        pv_col = "pv_production_w" if "pv_production_w" in df.columns else "pv_production_w_per_kwp"
        if pv_col not in df.columns:
            raise ScenarioError(p, "needs a column pv_production_w or pv_production_w_per_kwp")
        house = {"pv_kwp": r.pv_kwp, "battery_kw": r.battery_kw, "import_limit_w": r.import_limit_w or math.inf}
        check = partial(checks.check_house_series, str(p), house=house, lim=meta.checks)
        series.append((r, _series(p, ("load_w", pv_col), meta, df, check=check, min_value=0.0), pv_col))

    feeders_path = root / "feeders.csv"
    fdf = _read_csv(feeders_path)
    _need(fdf, feeders_path, ("feeder", "import_limit_w", "export_limit_w"))
    f_imp = _floats(fdf, feeders_path, "import_limit_w", allow_inf=True)
    f_exp = _floats(fdf, feeders_path, "export_limit_w", allow_inf=True)
    for col, arr in (("import_limit_w", f_imp), ("export_limit_w", f_exp)):
        if (arr <= 0).any():
            i = int(np.argmax(arr <= 0))
            raise ScenarioError(feeders_path, f"must be > 0 (empty = no limit), got {arr[i]:g}", i + 2, col)
        checks.check_feeder_limits(str(feeders_path), col, arr, meta.checks)
    timed = "timestamp" in fdf.columns
    feeder_names = fdf["feeder"].astype(str).str.strip()
    feeder_ids = tuple(dict.fromkeys(feeder_names))
    for r_i, r in enumerate(rows):
        if r.feeder not in feeder_ids:
            raise ScenarioError(houses_path, f"feeder {r.feeder!r} is not in feeders.csv", r_i + 2, "feeder")

    # the common window: from the latest first timestamp to the earliest end
    all_series = ([prices] if prices is not None else []) + [s for _, s, _ in series]
    start_ns = max(int(s.t_ns[0]) for s in all_series)
    end_ns = min(s.end_ns for s in all_series)
    slot_ns = meta.slot_s * 10**9
    start_ns = -(-start_ns // slot_ns) * slot_ns  # first whole slot
    if meta.start is not None:
        want = pd.Timestamp(meta.start).value
        late = [s.file for s in all_series if s.t_ns[0] > want]
        if late:
            raise ScenarioError(late[0], f"starts after the scenario start {meta.start.isoformat()}")
        start_ns = want
    n_slots = (end_ns - start_ns) // slot_ns
    if n_slots <= 0:
        raise ScenarioError(root, "the files share no common time window")
    warm = meta.warmup_days if warmup_days is None else warmup_days
    if not (math.isfinite(warm) and warm >= 0):
        raise ValueError(f"the warm-up must be >= 0 days, got {warm}")
    warm_slots = int(round(warm * 86400 / meta.slot_s))
    want_days = days if days is not None else meta.days
    short = min(all_series, key=lambda s: s.end_ns)
    ends = f"ends {pd.Timestamp(short.end_ns, tz=UTC).isoformat()}: only {n_slots * meta.slot_s / 86400:.2f}"
    if want_days is not None:
        want_slots = warm_slots + int(round(want_days * 86400 / meta.slot_s))
        if want_slots > n_slots:
            asked = f"{warm:g} days of warm-up + {want_days:g} days" if warm_slots else f"{want_days:g} days"
            raise ScenarioError(short.file, f"{ends} of the {asked} asked for")
        n_slots = want_slots
    elif warm_slots >= n_slots:
        raise ScenarioError(short.file, f"{ends} days, all taken by the {warm:g} days of warm-up (warmup_days in "
                            "scenario.toml, --warmup-days)")
    start = pd.Timestamp(start_ns, tz=UTC).to_pydatetime()

    load = np.empty((len(rows), n_slots))
    pv = np.empty((len(rows), n_slots))
    for i, (r, s, pv_col) in enumerate(series):
        load[i] = s.slot_means("load_w", start, meta.slot_s, n_slots)
        pv[i] = s.slot_means(pv_col, start, meta.slot_s, n_slots) * (r.pv_kwp if pv_col.endswith("per_kwp") else 1.0)

    f_ids_idx = {f: i for i, f in enumerate(feeder_ids)}
    imp_lim = np.full((len(feeder_ids), n_slots), np.inf)
    exp_lim = np.full((len(feeder_ids), n_slots), np.inf)
    if timed:
        t_f = _times(fdf, feeders_path, increasing=False)  # rows of several feeders interleave
        slot_of = ((t_f - start_ns) // slot_ns).clip(0, n_slots)
        for i in np.argsort(slot_of, kind="stable"):  # each row holds from its time on
            f = f_ids_idx[feeder_names.iloc[i]]
            imp_lim[f, slot_of[i]:] = f_imp[i]
            exp_lim[f, slot_of[i]:] = f_exp[i]
    else:
        for i, name in enumerate(feeder_names):
            if (feeder_names == name).sum() > 1:
                raise ScenarioError(feeders_path, f"feeder {name!r} listed twice (add a timestamp column for "
                                    "limits that change over time)", i + 2, "feeder")
            imp_lim[f_ids_idx[name]] = f_imp[i]
            exp_lim[f_ids_idx[name]] = f_exp[i]

    houses = tuple(House(r.id, r.pv_kwp, r.battery_kwh, r.battery_kw, _no_limit(r.export_cap_w),
                         _no_limit(r.import_limit_w), r.feeder, r.initial_soc_pct, r.efficiency) for r in rows)
    tz = meta.timezone or "UTC"
    if prices is not None:
        imp = prices.slot_means("import", start, meta.slot_s, n_slots)
        exp = prices.slot_means("export", start, meta.slot_s, n_slots)
    else:
        imp, exp = tariff_prices(tariff, start, meta.slot_s, n_slots, tz)
    sc = Scenario(
        name=meta.name, start=start, slot_s=meta.slot_s, houses=houses, load_w=load, pv_w=pv,
        import_price_per_kwh=imp, export_price_per_kwh=exp,
        feeder_ids=feeder_ids, feeder_import_limit_w=imp_lim, feeder_export_limit_w=exp_lim,
        latitude=meta.latitude, longitude=meta.longitude, currency=meta.currency,
        description=meta.description, sources=dict(meta.sources), timezone=tz, price_knowledge=tariff.knowledge,
    )
    try:
        sc.validate()
        sc = with_appliances(sc, parse_appliances(_toml(meta_path).get("appliances")))
    except ValueError as exc:
        raise ScenarioError(meta_path if "appliances" in str(exc) else root, str(exc)) from exc
    return sc, warm_slots


def _toml(path: Path) -> dict[str, object]:
    """scenario.toml again (read and checked by ``_read_meta``): its [[appliances]]."""
    return tomllib.loads(path.read_text(), parse_float=Decimal)


def _no_limit(v: float | None) -> float:
    return math.inf if v is None else v


def _num(v: float) -> str:
    """The shortest text that reads back as the same float (a round trip keeps the Scenario)."""
    r = repr(float(v))
    return r[:-2] if r.endswith(".0") else r


def _fmt_limit(v: float) -> str:
    return "" if math.isinf(v) else _num(v)


def _tariff_toml(sc: Scenario) -> str:
    pk = sc.price_knowledge
    if pk.kind == "in_advance":  # the prices as a series; the tariff they came from is not kept
        return f'[tariff]\nkind = "series"\nunit = "{sc.currency}/kWh"\n'
    return (f'[tariff]\nkind = "day_ahead"\nunit = "{sc.currency}/kWh"\npublished = "{pk.published:%H:%M}"\n'
            f"market_timezone = {json.dumps(pk.market_timezone)}\n")


def write_scenario(sc: Scenario, folder: str | Path, *, warmup_days: float = 2.0) -> Path:
    """Write ``sc`` as a scenario folder (the format ``load_run`` reads): its first ``warmup_days`` are
    the warm-up."""
    root = Path(folder)
    (root / "series").mkdir(parents=True, exist_ok=True)
    src = "\n".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in sc.sources.items())
    (root / "scenario.toml").write_text(
        "# vpp-sim scenario: see docs/scenario-format.md\n[scenario]\n"
        f"name = {json.dumps(sc.name)}\ndescription = {json.dumps(sc.description)}\nlatitude = {sc.latitude!r}\n"
        f"longitude = {sc.longitude!r}\ntimezone = {json.dumps(sc.timezone)}\nslot_s = {sc.slot_s}\n"
        f"currency = {json.dumps(sc.currency)}\nstart = {sc.start.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"warmup_days = {warmup_days:g}   # simulated first, not counted\n\n"
        f"[scenario.sources]\n{src}\n\n{_tariff_toml(sc)}"
    )
    with (root / "houses.csv").open("w") as f:
        f.write("id,pv_kwp,battery_kwh,battery_kw,export_cap_w,import_limit_w,feeder,initial_soc_pct,efficiency\n")
        for h in sc.houses:
            f.write(f"{h.house_id},{_num(h.pv_kwp)},{_num(h.battery_kwh)},{_num(h.battery_kw)},"
                    f"{_fmt_limit(h.export_cap_w)},{_fmt_limit(h.import_limit_w)},{h.feeder},{_num(h.initial_soc_pct)},"
                    f"{_num(h.efficiency)}\n")
    stamps = [(sc.start + timedelta(seconds=i * sc.slot_s)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(sc.t)]
    for i, h in enumerate(sc.houses):
        body = "\n".join(f"{t},{_num(lo)},{_num(pv)}" for t, lo, pv in
                         zip(stamps, sc.load_w[i].tolist(), sc.pv_w[i].tolist(), strict=True))
        (root / "series" / f"{h.house_id}.csv").write_text("timestamp,load_w,pv_production_w\n" + body + "\n")
    body = "\n".join(f"{t},{_num(a)},{_num(b)}" for t, a, b in
                     zip(stamps, sc.import_price_per_kwh.tolist(), sc.export_price_per_kwh.tolist(), strict=True))
    (root / "prices.csv").write_text("timestamp,import_price_per_kwh,export_price_per_kwh\n" + body + "\n")
    const = all((np.unique(a).size == 1) for a in (*sc.feeder_import_limit_w, *sc.feeder_export_limit_w))
    with (root / "feeders.csv").open("w") as f:
        if const:
            f.write("feeder,import_limit_w,export_limit_w\n")
            for k, fid in enumerate(sc.feeder_ids):
                f.write(f"{fid},{_fmt_limit(sc.feeder_import_limit_w[k, 0])},{_fmt_limit(sc.feeder_export_limit_w[k, 0])}\n")
        else:
            f.write("timestamp,feeder,import_limit_w,export_limit_w\n")
            for k, fid in enumerate(sc.feeder_ids):
                prev: tuple[float, float] | None = None
                for s in range(sc.t):
                    cur = (float(sc.feeder_import_limit_w[k, s]), float(sc.feeder_export_limit_w[k, s]))
                    if cur != prev:
                        f.write(f"{stamps[s]},{fid},{_fmt_limit(cur[0])},{_fmt_limit(cur[1])}\n")
                        prev = cur
    return root
