#!/usr/bin/env python3
"""Regenerate the data files of the fleet simulator's default scenario.

Writes into ``simulator/fleet/data/`` (or ``--out``):

* ``simbench_household_load_2016.csv.gz`` -- five SimBench household active-power
  profiles (H0-A, H0-B, H0-C, H0-G, H0-L), 15 min, 2016, on a UTC grid.
* ``simbench_pv_2016.csv.gz`` -- the eight SimBench PV feed-in profiles (PV1..PV8),
  15 min, 2016, on a UTC grid.
* ``de_lu_day_ahead_2020-05-18_2020-09-29.csv`` -- hourly day-ahead prices of the
  German bidding zone, EUR/MWh, one UTC day per line.

Sources (see ``simulator/fleet/data/README.md`` for licences and attribution):

* SimBench 1.6.3 (PyPI ``simbench``, data under ODbL-1.0), file
  ``simbench/networks/1-complete_data-mixed-all-0-sw/{LoadProfile,RESProfile}.csv``.
  Pass the wheel (``pip download simbench==1.6.3 --no-deps``) or an unpacked copy.
* Open Power System Data "Time series" (ODbL-1.0), hourly day-ahead price DE-LU,
  as republished in the flixopt repository, file
  ``docs/notebooks/data/raw/electricity_prices_de_2020.csv``
  (columns ``time,price_eur_mwh``; time in UTC).

Processing:

* SimBench time stamps are local German time (CET/CEST): the 02:00-02:45 slots of
  2016-03-27 are missing and those of 2016-10-30 appear twice.  Household loads follow
  that clock (their morning rise stays at 06:15 label time across both clock changes),
  so they are localised to Europe/Berlin (the repeated hour resolved in file order)
  and converted to UTC.  The UTC year 2016 then lacks its last hour
  (2016-12-31 23:00-23:45 UTC, which is 2017-01-01 local); it is filled with the first
  hour of the file (2016-01-01 00:00-00:45 local), so the year wraps round.
* The PV profiles do not follow the clock change (see ``_rows_as_utc_year``): their
  rows are read as consecutive UTC quarter hours from 2016-01-01 00:00 UTC.
* Values are rounded to 5 significant digits; the profiles are otherwise unchanged
  (SimBench normalises each to its maximum, 1.0).
* Prices: the rows from 2020-05-18 00:00 to 2020-09-29 23:00 UTC, unchanged, written
  24 to a line.

Usage::

    python scripts/extract_scenario_data.py --simbench /tmp/dl/simbench/simbench-1.6.3-py3-none-any.whl \\
        --prices /path/to/electricity_prices_de_2020.csv
"""

from __future__ import annotations

import argparse
import gzip
import io
import zipfile
from pathlib import Path

import pandas as pd

SIMBENCH_DIR = "simbench/networks/1-complete_data-mixed-all-0-sw"
LOAD_COLUMNS = ["H0-A", "H0-B", "H0-C", "H0-G", "H0-L"]  # the single-household profiles
PV_COLUMNS = [f"PV{i}" for i in range(1, 9)]
PRICE_FIRST_DAY = "2020-05-18"
PRICE_LAST_DAY = "2020-09-29"

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "simulator" / "fleet" / "data"


def _open_simbench(source: Path, name: str) -> io.TextIOBase:
    if source.is_file() and source.suffix in (".whl", ".zip"):
        zf = zipfile.ZipFile(source)
        return io.TextIOWrapper(zf.open(f"{SIMBENCH_DIR}/{name}"), encoding="utf-8")
    for candidate in (source / SIMBENCH_DIR / name, source / name):
        if candidate.exists():
            return open(candidate, encoding="utf-8")
    raise FileNotFoundError(f"{name} not found in {source}")


def _local_to_utc_year(df: pd.DataFrame) -> pd.DataFrame:
    """SimBench local-time rows (CET/CEST) -> the UTC year 2016, 15-min, 35136 rows."""
    local = pd.to_datetime(df["time"], format="%d.%m.%Y %H:%M")
    # The repeated hour on 2016-10-30 comes first as CEST, then as CET ('infer' does that).
    idx = pd.DatetimeIndex(local).tz_localize("Europe/Berlin", ambiguous="infer").tz_convert("UTC")
    data = df.drop(columns=["time"]).set_index(idx)
    if data.index.has_duplicates:
        raise ValueError("duplicate UTC time stamps after conversion")
    grid = pd.date_range("2016-01-01 00:00", "2016-12-31 23:45", freq="15min", tz="UTC")
    out = data.reindex(grid)
    missing = out.isna().any(axis=1)
    # Only the last UTC hour of the year may be missing: wrap the first local hour round.
    if missing.sum() != 4 or not missing.iloc[-4:].all():
        raise ValueError(f"unexpected gaps after UTC conversion: {int(missing.sum())} slots")
    out.iloc[-4:] = data.iloc[:4].to_numpy()
    return out


def _rows_as_utc_year(df: pd.DataFrame) -> pd.DataFrame:
    """SimBench PV rows -> the UTC year 2016: row i is 2016-01-01 00:00 UTC + i * 15 min.

    The PV profiles carry the same local-time labels as the loads, but their values do
    not follow the clock change: the energy-weighted centre of the mean daily profile
    sits at 11.2-11.3 h of the row index in June, March and December alike (it would move
    by an hour with CEST), which is solar noon at 10 deg E in UTC (11:20).  So the rows are
    read as consecutive UTC quarter hours and the labels are ignored.
    """
    if len(df) != 366 * 96:
        raise ValueError(f"expected {366 * 96} rows, got {len(df)}")
    grid = pd.date_range("2016-01-01 00:00", periods=len(df), freq="15min", tz="UTC")
    return df.drop(columns=["time"]).set_index(grid)


def _write_csv_gz(df: pd.DataFrame, path: Path) -> None:
    body = df.round(5).to_csv(index_label="time_utc", date_format="%Y-%m-%dT%H:%MZ", float_format="%.5g")
    # mtime=0: the same input gives byte-identical output
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(body.encode())


def extract_simbench(source: Path, out: Path) -> None:
    with _open_simbench(source, "LoadProfile.csv") as f:
        cols = ["time"] + [f"{c}_pload" for c in LOAD_COLUMNS]
        load = pd.read_csv(f, sep=";", usecols=cols)[cols]
    load.columns = ["time"] + LOAD_COLUMNS
    _write_csv_gz(_local_to_utc_year(load), out / "simbench_household_load_2016.csv.gz")

    with _open_simbench(source, "RESProfile.csv") as f:
        pv = pd.read_csv(f, sep=";", usecols=["time"] + PV_COLUMNS)[["time"] + PV_COLUMNS]
    _write_csv_gz(_rows_as_utc_year(pv), out / "simbench_pv_2016.csv.gz")


def extract_prices(prices_csv: Path, out: Path) -> None:
    df = pd.read_csv(prices_csv)
    t = pd.to_datetime(df["time"], utc=True)
    s = pd.Series(df["price_eur_mwh"].to_numpy(float), index=t)
    s = s[(s.index >= f"{PRICE_FIRST_DAY} 00:00+00:00") & (s.index <= f"{PRICE_LAST_DAY} 23:00+00:00")]
    days = pd.date_range(PRICE_FIRST_DAY, PRICE_LAST_DAY, freq="D", tz="UTC")
    if len(s) != 24 * len(days) or s.isna().any():
        raise ValueError(f"expected {24 * len(days)} hourly prices, got {len(s)}")
    values = s.to_numpy().reshape(len(days), 24)
    lines = ["date_utc," + ",".join(f"h{h:02d}" for h in range(24))]
    for day, row in zip(days, values, strict=True):
        lines.append(day.strftime("%Y-%m-%d") + "," + ",".join(f"{v:g}" for v in row))
    (out / f"de_lu_day_ahead_{PRICE_FIRST_DAY}_{PRICE_LAST_DAY}.csv").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simbench", type=Path, help="simbench wheel (.whl) or an unpacked simbench tree")
    p.add_argument("--prices", type=Path, help="electricity_prices_de_2020.csv (time,price_eur_mwh)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.simbench is None and args.prices is None:
        p.error("give --simbench and/or --prices")
    if args.simbench is not None:
        extract_simbench(args.simbench, args.out)
    if args.prices is not None:
        extract_prices(args.prices, args.out)
    for f in sorted(args.out.iterdir()):
        print(f"{f.stat().st_size:>9}  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
