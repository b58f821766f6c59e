#!/usr/bin/env python3
"""Build the weather files of the evaluation set (``vpp-sim eval``) from pvlib's TMY files.

Writes ``simulator/fleet/data/eval/<climate>.csv.gz`` (or ``--out``): one row per hour of
a typical (non-leap) year in the site's local *standard* time, hour-beginning, columns

* ``pv_w_per_kwp``: AC output of 1 kWp of rooftop PV (W, integer), PVWatts model;
* ``temp_air_c``: dry-bulb air temperature (deg C, one decimal).

pvlib is needed here only: the simulator reads these small files at run time.
Sources and licences: ``simulator/fleet/data/README.md``.

PV model (the same for every climate, orientation per climate below): plane-of-array
irradiance from the TMY's GHI/DNI/DHI (Hay-Davies transposition, albedo 0.2), at each
hour's middle; cell temperature by the SAPM model for a close-mount glass/polymer roof
array (wind speed from the TMY); PVWatts DC with gamma -0.37 %/K; 14 % system losses
(PVWatts default: soiling, wiring, mismatch, ...); PVWatts inverter, DC/AC ratio 1.1.

Usage::

    /work/main/.venv/bin/python scripts/build_eval_data.py            # into simulator/fleet/data/eval
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

# climate -> (pvlib data file, reader, tilt deg, azimuth deg (180 = south)).  Tilts near the
# usual roof pitch for each region (low in Florida, steeper in the north).
CLIMATES = {
    "miami_fl": ("12839.tm2", "tmy2", 20.0, 180.0),
    "greensboro_nc": ("723170TYA.CSV", "tmy3", 25.0, 180.0),
    "sand_point_ak": ("703165TY.csv", "tmy3", 35.0, 180.0),
}
LOSSES = 0.14
GAMMA_PDC = -0.0037
DC_AC_RATIO = 1.1


def _read(name: str, kind: str) -> tuple[pd.DataFrame, dict]:
    import pvlib
    from pvlib import iotools

    path = os.path.join(os.path.dirname(pvlib.__file__), "data", name)
    if kind == "tmy2":
        df, meta = iotools.read_tmy2(path)
        # TMY2 values are in their own units (tenths); pvlib labels hour-ending hour h as h-1
        out = pd.DataFrame({"ghi": df["GHI"], "dni": df["DNI"], "dhi": df["DHI"], "temp_air": df["DryBulb"] / 10.0,
                            "wind_speed": df["Wspd"] / 10.0})
        offset_h = 0
    else:
        df, meta = iotools.read_tmy3(path, map_variables=True)
        out = df[["ghi", "dni", "dhi", "temp_air", "wind_speed"]].copy()
        offset_h = 1  # TMY3 labels an hour by its end
    out = out.reset_index(drop=True)
    if len(out) != 8760:
        raise ValueError(f"{name}: {len(out)} rows, expected 8760")
    meta = dict(meta, offset_h=offset_h)
    return out, meta


def climate_table(name: str, kind: str, tilt: float, azimuth: float) -> tuple[pd.DataFrame, dict]:
    from pvlib import inverter, irradiance, location, pvsystem, temperature

    w, meta = _read(name, kind)
    tz = f"Etc/GMT{-int(meta['TZ']):+d}"  # local standard time all year (POSIX sign is inverted)
    mid = pd.date_range("2019-01-01 00:30", periods=8760, freq="h", tz=tz)  # hour middles, a non-leap year
    site = location.Location(float(meta["latitude"]), float(meta["longitude"]), tz=tz,
                             altitude=float(meta["altitude"]))
    sun = site.get_solarposition(mid)
    dni_extra = irradiance.get_extra_radiation(mid)
    poa = irradiance.get_total_irradiance(tilt, azimuth, sun["apparent_zenith"], sun["azimuth"],
                                          w["dni"].to_numpy(), w["ghi"].to_numpy(), w["dhi"].to_numpy(),
                                          dni_extra=dni_extra.to_numpy(), albedo=0.2, model="haydavies")
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=float), nan=0.0).clip(0.0)
    params = temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]
    t_cell = temperature.sapm_cell(poa_global, w["temp_air"].to_numpy(), w["wind_speed"].to_numpy(), **params)
    pdc = pvsystem.pvwatts_dc(poa_global, t_cell, 1000.0, GAMMA_PDC) * (1 - LOSSES)
    pac = inverter.pvwatts(pdc, 1000.0 / DC_AC_RATIO)
    pac = np.nan_to_num(np.asarray(pac, dtype=float), nan=0.0).clip(0.0)
    table = pd.DataFrame({"hour": np.arange(8760), "pv_w_per_kwp": np.round(pac).astype(int),
                          "temp_air_c": np.round(w["temp_air"].to_numpy(dtype=float), 1)})
    return table, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "simulator/fleet/data/eval")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for climate, (name, kind, tilt, azimuth) in CLIMATES.items():
        table, meta = climate_table(name, kind, tilt, azimuth)
        head = (f"# {climate}: pvlib data/{name} ({kind.upper()}), lat {meta['latitude']:.3f}, "
                f"lon {meta['longitude']:.3f}, UTC{int(meta['TZ']):+d} standard time, hour-beginning; "
                f"PV tilt {tilt:g} azimuth {azimuth:g}; scripts/build_eval_data.py\n")
        body = head + table.to_csv(index=False, lineterminator="\n")
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
            gz.write(body.encode())
        target = args.out / f"{climate}.csv.gz"
        target.write_bytes(buf.getvalue())
        print(f"{target}: {len(buf.getvalue()) / 1024:.0f} kB, {table.pv_w_per_kwp.sum() / 1000:.0f} kWh/kWp/yr, "
              f"temp {table.temp_air_c.min():.1f}..{table.temp_air_c.max():.1f} C")


if __name__ == "__main__":
    main()
