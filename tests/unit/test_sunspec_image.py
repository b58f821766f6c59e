"""SunSpec register images: layout from pysunspec2's definitions, codecs, markers, scale factors."""

from __future__ import annotations

import math
import struct

import pytest
import sunspec2.device as ss_device
from hypothesis import given
from hypothesis import strategies as st

from simulator.sunspec_image import (
    END_MODEL_ID,
    PAD_VALUE,
    SUNS_MARKER,
    ModelSpec,
    SunSpecImage,
    decode_raw,
    encode_raw,
    raw_range,
    scale,
    unscale,
)

HYBRID: list[int | ModelSpec] = [1, 103, 120, 124, ModelSpec(160, repeat={"module": 2}), 203, 802]


def walk_chain(image: SunSpecImage) -> list[tuple[int, int, int]]:
    """Walk the image as a client would: by each model's own L."""
    base = image.base_address
    regs = image.registers
    assert tuple(regs[0:2]) == SUNS_MARKER
    found: list[tuple[int, int, int]] = []
    addr = base + 2
    while True:
        model_id, length = regs[addr - base], regs[addr - base + 1]
        if model_id == END_MODEL_ID:
            assert length == 0
            return found
        found.append((model_id, addr, length))
        addr += 2 + length


def bytes_of(registers: list[int]) -> bytes:
    return b"".join(r.to_bytes(2, "big") for r in registers)


# -- layout ---------------------------------------------------------------


def test_layout_marker_chain_and_end() -> None:
    image = SunSpecImage(HYBRID)
    chain = walk_chain(image)
    assert [m for m, _, _ in chain] == [1, 103, 120, 124, 160, 203, 802]
    assert chain[0][1] == 40002
    assert [(m.model_id, m.address, m.length) for m in image.models] == chain
    assert image.end_address == chain[-1][1] + 2 + chain[-1][2] + 2


@pytest.mark.parametrize(("model_id", "name", "offset"), [
    # Offsets from the model's ID register, as the shared device notes list them.
    (103, "W", 14), (103, "W_SF", 15), (103, "WH", 24), (103, "St", 38),
    (120, "DERTyp", 2), (120, "WRtg", 3), (120, "WRtg_SF", 4), (120, "WHRtg", 19),
    (120, "MaxChaRte", 23), (120, "MaxDisChaRte", 25),
    (124, "WChaMax", 2), (124, "StorCtl_Mod", 5), (124, "MinRsvPct", 7), (124, "ChaState", 8),
    (124, "ChaSt", 11), (124, "OutWRte", 12), (124, "InWRte", 13), (124, "InOutWRte_RvrtTms", 15),
    (124, "ChaGriSet", 17), (124, "WChaMax_SF", 18), (124, "InOutWRte_SF", 25),
    (203, "W", 18), (203, "W_SF", 22),
    (802, "SoCRsvMin", 10), (802, "SoC", 11), (802, "CtrlHb", 19), (802, "W", 47),
])
def test_offsets_come_from_the_shipped_definitions(model_id: int, name: str, offset: int) -> None:
    image = SunSpecImage(HYBRID)
    loc = image.point(model_id, name)
    assert loc.offset == offset
    assert loc.address == image.model(model_id).address + offset


def test_lengths_match_pysunspec2() -> None:
    image = SunSpecImage([1, 103, 120, 124, 203, 802])
    for layout in image.models:
        model = ss_device.Model(layout.model_id)
        assert layout.length + 2 == model.len, layout.model_id


def test_repeating_group_with_configured_count() -> None:
    image = SunSpecImage([ModelSpec(160, repeat={"module": 2})], base_address=0)
    layout = image.model(160)
    # 8 fixed registers after ID/L plus 2 modules of 20 registers each.
    assert layout.length == 8 + 2 * 20
    assert image.get_raw(160, "N") == 2  # the count point announces the instances
    first, second = image.point(160, "DCW", 0), image.point(160, "DCW", 1)
    assert second.address - first.address == 20
    assert first.group == "module" and first.index == 0 and second.index == 1
    image.set_raw(160, "DCW_SF", 0)
    image.set(160, "DCW", 1500, 0)
    image.set(160, "DCW", 700, 1)
    assert (image.get(160, "DCW", 0), image.get(160, "DCW", 1)) == (1500.0, 700.0)
    # pysunspec2 derives the count from L and finds the same values.
    model = ss_device.Model(160, model_len=layout.length, data=bytes_of(image.read(layout.address, layout.length + 2)))
    assert model.error_info == ""
    assert [g.DCW.value for g in model.groups["module"]] == [1500, 700]


def test_nested_repeating_groups_counted_by_points() -> None:
    # Model 705 (volt-var): curves (count NCrv) of points (count NPt), both top-level points.
    image = SunSpecImage([ModelSpec(705, repeat={"Crv": 2, "Pt": 3})], base_address=0)
    assert image.get_raw(705, "NCrv") == 2
    assert image.get_raw(705, "NPt") == 3
    last = image.point(705, "V", (1, 2), group="Crv.Pt")
    assert last.indices == (1, 2)
    layout = image.model(705)
    assert last.address < layout.end
    model = ss_device.Model(705, model_len=layout.length, data=bytes_of(image.read(layout.address, layout.length + 2)))
    assert model.error_info == ""
    assert model.len == layout.length + 2
    assert len(model.groups["Crv"]) == 2 and len(model.groups["Crv"][1].groups["Pt"]) == 3


def test_model1_length_override_65_keeps_chain_consistent() -> None:
    image = SunSpecImage([ModelSpec(1, length=65), 103], base_address=40000)
    chain = walk_chain(image)
    assert chain[0] == (1, 40002, 65)
    assert chain[1] == (103, 40002 + 2 + 65, 50)
    with pytest.raises(KeyError):
        image.point(1, "Pad")  # the 66th register is not there
    image.set_raw(1, "Mn", "VPP-Sim")
    image.set_raw(1, "DA", 7)
    # pysunspec2 accepts the legacy length and decodes the rest unchanged.
    model = ss_device.Model(1, model_len=65, data=bytes_of(image.read(40002, 67)))
    assert model.error_info == ""
    assert model.Mn.value == "VPP-Sim" and model.DA.value == 7


def test_longer_length_override_appends_pad() -> None:
    image = SunSpecImage([ModelSpec(124, length=30), 1], base_address=0)
    chain = walk_chain(image)
    assert chain[0] == (124, 2, 30) and chain[1][1] == 2 + 32
    natural_end = image.point(124, "InOutWRte_SF").address + 1
    assert image.read(natural_end, 30 + 4 - natural_end) == [PAD_VALUE] * (34 - natural_end)


def test_duplicate_models_refused() -> None:
    with pytest.raises(ValueError, match="once"):
        SunSpecImage([103, 103])


# -- codecs ---------------------------------------------------------------


@pytest.mark.parametrize(("ptype", "size", "marker"), [
    ("int16", 1, [0x8000]),
    ("uint16", 1, [0xFFFF]),
    ("count", 1, [0xFFFF]),
    ("acc16", 1, [0x0000]),
    ("enum16", 1, [0xFFFF]),
    ("bitfield16", 1, [0xFFFF]),
    ("sunssf", 1, [0x8000]),
    ("int32", 2, [0x8000, 0x0000]),
    ("uint32", 2, [0xFFFF, 0xFFFF]),
    ("acc32", 2, [0x0000, 0x0000]),
    ("enum32", 2, [0xFFFF, 0xFFFF]),
    ("bitfield32", 2, [0xFFFF, 0xFFFF]),
    ("float32", 2, [0x7FC0, 0x0000]),
    ("string", 4, [0, 0, 0, 0]),
    ("int64", 4, [0x8000, 0, 0, 0]),
    ("uint64", 4, [0xFFFF] * 4),
])
def test_not_implemented_markers(ptype: str, size: int, marker: list[int]) -> None:
    assert encode_raw(ptype, None, size) == marker
    assert decode_raw(ptype, marker) is None


@pytest.mark.parametrize(("ptype", "value", "registers"), [
    ("int16", -1, [0xFFFF]),
    ("int16", -32767, [0x8001]),
    ("int16", 32767, [0x7FFF]),
    ("uint16", 65534, [0xFFFE]),
    ("enum16", 82, [82]),
    ("bitfield16", 0b11, [3]),
    ("acc16", 65535, [0xFFFF]),
    ("sunssf", -2, [0xFFFE]),
    ("int32", -2, [0xFFFF, 0xFFFE]),
    ("int32", 0x12345678, [0x1234, 0x5678]),  # big-endian, high word first
    ("uint32", 0xFFFFFFFE, [0xFFFF, 0xFFFE]),
    ("acc32", 100_000, [0x0001, 0x86A0]),
    ("enum32", 7, [0, 7]),
    ("bitfield32", 0x80000001, [0x8000, 0x0001]),
    ("float32", 1.5, [0x3FC0, 0x0000]),
    ("string", "SunS", [0x5375, 0x6E53, 0, 0]),
])
def test_encode_decode_roundtrip(ptype: str, value: int | float | str, registers: list[int]) -> None:
    size = len(registers)
    assert encode_raw(ptype, value, size) == registers
    assert decode_raw(ptype, registers) == value


@pytest.mark.parametrize(("ptype", "value"), [
    ("int16", -32768),  # the marker is not a value
    ("int16", 32768),
    ("uint16", 0xFFFF),
    ("uint16", -1),
    ("enum16", 0xFFFF),
    ("sunssf", 11),
    ("int32", -0x80000000),
    ("uint32", 0xFFFFFFFF),
    ("acc32", 2**32),
    ("acc32", -1),
    ("float32", math.nan),
    ("float32", math.inf),
    ("float32", 1e40),
    ("int16", 1.5),
    ("string", ""),
    ("string", "way too long for four registers"),
])
def test_encode_refuses_out_of_range(ptype: str, value: int | float | str) -> None:
    with pytest.raises(ValueError):
        encode_raw(ptype, value, 4 if ptype == "string" else None)


def test_float32_bits() -> None:
    regs = encode_raw("float32", -230.25)
    assert bytes_of(regs) == struct.pack(">f", -230.25)
    assert decode_raw("float32", regs) == -230.25


@given(st.integers(min_value=-0x7FFF, max_value=0x7FFF), st.integers(min_value=-4, max_value=4))
def test_scale_unscale_roundtrip(raw: int, sf: int) -> None:
    assert unscale(scale(raw, sf), sf) == raw


@pytest.mark.parametrize("ptype", ["int16", "uint16", "int32", "uint32", "acc32", "sunssf"])
def test_raw_range_excludes_marker(ptype: str) -> None:
    lo, hi = raw_range(ptype)
    encode_raw(ptype, lo)
    encode_raw(ptype, hi)
    with pytest.raises(ValueError):
        encode_raw(ptype, hi + 1)


# -- values in an image ---------------------------------------------------


def test_fresh_image_is_all_not_implemented() -> None:
    image = SunSpecImage(HYBRID)
    for layout in image.models:
        for loc in layout.points:
            if loc.name in ("ID", "L") or loc.type == "pad" or (loc.model_id, loc.name) == (160, "N"):
                continue
            assert image.get_raw(layout.model_id, loc.name, loc.indices or None, group=loc.group) is None, loc
    assert image.read(image.point(103, "W").address, 1) == [0x8000]
    assert image.read(image.point(103, "WH").address, 2) == [0, 0]
    assert image.read(image.point(802, "NCyc").address, 2) == [0xFFFF, 0xFFFF]
    assert image.read(image.point(1, "SN").address, 16) == [0] * 16


def test_scale_factor_encoding_and_decoding() -> None:
    image = SunSpecImage([103, 124])
    with pytest.raises(ValueError, match="scale factor"):
        image.set(103, "W", 1000)  # W_SF not set yet
    image.set_raw(103, "W_SF", -1)
    image.set(103, "W", -1234.5)
    assert image.get_raw(103, "W") == -12345
    assert image.get(103, "W") == -1234.5
    image.set_raw(103, "W_SF", 2)  # the device changes its scale factor
    assert image.get(103, "W") == -1234500.0
    image.set(103, "W", 12300)
    assert image.get_raw(103, "W") == 123
    with pytest.raises(ValueError):
        image.set(103, "W", 4_000_000)  # raw 40000 does not fit int16
    image.clear(103, "W_SF")
    assert image.get_raw(103, "W") == 123
    assert image.get(103, "W") is None  # a value without its scale factor is no value
    image.set_raw(124, "InOutWRte_SF", -2)
    image.set(124, "InWRte", -40.0)
    assert image.get_raw(124, "InWRte") == -4000
    assert image.get(124, "InWRte") == -40.0


def test_pysunspec2_reads_what_the_image_wrote() -> None:
    image = SunSpecImage(HYBRID)
    image.set_raw(103, "W_SF", 0)
    image.set(103, "W", 4321)
    image.set_raw(103, "WH_SF", 0)
    image.set(103, "WH", 123_456)
    image.set_raw(1, "SN", "ABC-123")
    image.set_raw(802, "SoC_SF", -1)
    image.set(802, "SoC", 57.3)
    for model_id, checks in ((103, {"W": 4321, "WH": 123456}), (1, {"SN": "ABC-123"}), (802, {"SoC": 57.3})):
        layout = image.model(model_id)
        model = ss_device.Model(model_id, model_len=layout.length,
                                data=bytes_of(image.read(layout.address, layout.length + 2)))
        assert model.error_info == ""
        for name, expected in checks.items():
            assert model.points[name].cvalue == pytest.approx(expected)
    assert ss_device.Model(103, model_len=50, data=bytes_of(image.read(image.model(103).address, 52))).VA.value is None


def test_id_and_length_are_not_settable() -> None:
    image = SunSpecImage([103])
    with pytest.raises(ValueError):
        image.set_raw(103, "L", 3)


def test_point_at_and_unknown_points() -> None:
    image = SunSpecImage([124], base_address=0)
    loc = image.point(124, "InWRte")
    assert image.point_at(loc.address) == loc
    assert image.point_at(0) is None  # the SunS marker is no point
    with pytest.raises(KeyError):
        image.point(124, "NoSuchPoint")
    with pytest.raises(KeyError):
        image.point(103, "W")
