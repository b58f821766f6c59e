"""Scale factors outside SunSpec's -10..10 and not-implemented markers (issue 19): a point whose
scale factor is out of range reads None (and is named in ``bad_scale``), never 1.2e-17 W; markers
read None, never a number."""

from __future__ import annotations

import pytest

from edge_agent.drivers.sunspec_points import decode_model, encode_write, top_level_points
from simulator.sunspec_image import SunSpecImage


def _decode(img: SunSpecImage, model_id: int):  # type: ignore[no-untyped-def]
    m = img.model(model_id)
    return decode_model(model_id, m.address, img.read(m.address, m.length + 2))


def _raw_sf(img: SunSpecImage, model_id: int, name: str, sf: int) -> None:
    """Write a scale factor the image builder refuses (it keeps to -10..10, as a device should)."""
    img.write(img.point(model_id, name).address, [sf & 0xFFFF])


def test_scale_factor_minus_20_is_not_a_value() -> None:
    img = SunSpecImage([103, 203])
    img.set_raw(103, "W_SF", 0)
    img.set(103, "W", 1234.0)
    assert _decode(img, 103)["W"] == 1234.0
    _raw_sf(img, 103, "W_SF", -20)
    values = _decode(img, 103)
    assert values["W"] is None  # was 1.234e-17, read as valid
    assert values.bad_scale == ("W (W_SF=-20)",)
    _raw_sf(img, 103, "W_SF", 11)
    assert _decode(img, 103)["W"] is None
    _raw_sf(img, 103, "W_SF", 10)  # the edge of the range is a scale factor
    assert _decode(img, 103)["W"] == 1234e10 and _decode(img, 103).bad_scale == ()


def test_not_implemented_markers_read_none() -> None:
    img = SunSpecImage([120, 124, 213])
    img.set_raw(124, "ChaState_SF", 0)
    img.set_raw(124, "ChaState", None)  # uint16 0xFFFF
    img.set_raw(120, "WRtg_SF", 0)
    img.set_raw(120, "WRtg", None)  # uint16 0xFFFF
    img.set_raw(213, "W", None)  # float32 NaN
    assert img.read(img.point(124, "ChaState").address, 1) == [0xFFFF]
    assert _decode(img, 124)["ChaState"] is None
    assert _decode(img, 120)["WRtg"] is None
    assert _decode(img, 213)["W"] is None
    img.set_raw(124, "ChaState", 55)
    img.set_raw(124, "ChaState_SF", None)  # sunssf 0x8000: a value without its scale
    assert _decode(img, 124)["ChaState"] is None


def test_a_write_with_an_out_of_range_scale_factor_is_refused() -> None:
    img = SunSpecImage([124])
    img.set_raw(124, "InOutWRte_SF", 0)
    _raw_sf(img, 124, "InOutWRte_SF", 20)  # 50 % would encode as raw 0: silently idle
    current = _decode(img, 124)
    _offset, pdef = top_level_points(124)["InWRte"]
    with pytest.raises(ValueError, match="outside -10..10"):
        encode_write(124, "InWRte", 50.0, pdef, current)
