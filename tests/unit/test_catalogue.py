"""Catalogue files: every shipped entry validates, bad entries fail with the field, codecs round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.drivers.catalogue import (
    CatalogueError,
    PointDef,
    catalogue_ids,
    decode,
    encode,
    load_entry,
)
from edge_agent.drivers.catalogue_device import plan_blocks


def test_shipped_entries_validate_and_cite_sources() -> None:
    ids = catalogue_ids()
    assert {"victron_gx", "sungrow_sh", "huawei_sun2000_luna2000"} <= set(ids)
    for i in ids:
        e = load_entry(i)
        assert e.device.id == i
        assert e.device.source.startswith("https://")
        roles = {p.role for p in e.points.values()}
        assert {"soc_pct", "battery_power_w", "grid_power_w", "pv_power_w"} <= roles
        assert e.control is not None


def test_sungrow_has_input_and_holding_low_word_first() -> None:
    e = load_entry("sungrow_sh")
    assert e.points["battery_soc"].function == "input" and e.points["ems_mode"].function == "holding"
    assert e.word_order_of("battery_power") == "little"
    assert {b.function for b in plan_blocks(e)} == {"input", "holding"}


def test_victron_uses_two_unit_ids() -> None:
    e = load_entry("victron_gx")
    assert {b.unit_id for b in plan_blocks(e)} == {100, 227}


@pytest.mark.parametrize("typ, value, order, regs", [
    ("int32", -2, "big", [0xFFFF, 0xFFFE]),
    ("int32", -2, "little", [0xFFFE, 0xFFFF]),
    ("uint32", 70000, "big", [1, 4464]),
    ("int16", -1, "big", [0xFFFF]),
])
def test_codec(typ: str, value: int, order: str, regs: list[int]) -> None:
    p = PointDef(address=0, type=typ)  # type: ignore[arg-type]
    assert encode(p, value, order) == regs  # type: ignore[arg-type]
    assert decode(p, regs, order) == value  # type: ignore[arg-type]


def test_scale_and_sign() -> None:
    p = PointDef(address=0, type="int32", scale=0.1, sign=-1)
    assert decode(p, encode(p, 123.4, "big"), "big") == pytest.approx(123.4)
    assert encode(p, 10.0, "big") == [0xFFFF, 0xFF9C]  # raw -100


def test_unknown_model_and_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="unknown catalogue model"):
        load_entry("no_such_device")
    bad = tmp_path / "bad.toml"
    bad.write_text('[device]\nid="x"\nname="x"\nsource="https://x.example"\n'
                   '[points.a]\naddress=1\ntype="int32"\n[points.b]\naddress=2\ntype="uint16"\n')
    with pytest.raises(CatalogueError, match="overlap"):
        load_entry(bad)
    bad.write_text('[device]\nid="x"\nname="x"\nsource="https://x.example"\n'
                   '[points.a]\naddress=1\ntype="float"\n')
    with pytest.raises(CatalogueError, match="points.a.type"):
        load_entry(bad)
    bad.write_text('[device]\nid="x"\nname="x"\nsource="https://x.example"\n'
                   '[points.a]\naddress=1\ntype="uint16"\nfunction="input"\nwritable=true\n')
    with pytest.raises(CatalogueError, match="input registers"):
        load_entry(bad)
