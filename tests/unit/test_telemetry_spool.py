"""The telemetry spool: order, bound, survival across a restart, deletion on ack, bad files."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.uplink.spool import SpoolError, TelemetrySpool, spool_path
from edge_agent.uplink.telemetry_metrics import TelemetryCollector
from vpp_common.clock import UTC

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def fill(spool: TelemetrySpool, n: int, start: int = 0) -> list[int | None]:
    return [spool.append(T0 + timedelta(seconds=10 * i), f"sample-{i}".encode()) for i in range(start, start + n)]


def payloads(spool: TelemetrySpool) -> list[bytes]:
    return [p for _, p in spool.read(0, 1_000_000)]


def test_samples_come_back_in_order_and_page_after_a_seq(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "t.sqlite", capacity=100)
    fill(spool, 10)
    first = spool.read(0, 4)
    assert [p for _, p in first] == [f"sample-{i}".encode() for i in range(4)]
    rest = spool.read(first[-1][0], 100)
    assert [p for _, p in rest] == [f"sample-{i}".encode() for i in range(4, 10)]
    assert len(spool) == 10 and spool.appended == 10
    assert spool.oldest_measured_at() == T0.timestamp()
    spool.close()


def test_a_sample_is_deleted_only_when_acked_and_seqs_are_never_reused(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "t.sqlite", capacity=100)
    fill(spool, 3)
    seqs = [s for s, _ in spool.read(0, 10)]
    assert spool.delete([seqs[1]]) == 1
    assert spool.delete([seqs[1]]) == 0  # a second ack for the same sample changes nothing
    assert payloads(spool) == [b"sample-0", b"sample-2"] and len(spool) == 2
    assert spool.delete([seqs[0], seqs[2]]) == 2 and len(spool) == 0
    assert spool.oldest_measured_at() is None
    fill(spool, 1, start=3)  # an emptied spool goes on after the last seq: paging "after" stays right
    [(seq, _)] = spool.read(seqs[-1], 10)
    assert seq > seqs[-1]
    spool.close()


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "t.sqlite", capacity=5)
    evicted = fill(spool, 8)
    assert evicted[:5] == [None] * 5 and all(e is not None for e in evicted[5:])
    assert payloads(spool) == [f"sample-{i}".encode() for i in range(3, 8)]
    assert len(spool) == 5 and spool.dropped_full == 3
    assert spool.oldest_measured_at() == (T0 + timedelta(seconds=30)).timestamp()
    spool.close()


def test_what_was_not_acked_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "telemetry-h.sqlite"
    spool = TelemetrySpool(path, capacity=100)
    fill(spool, 5)
    spool.delete([s for s, _ in spool.read(0, 2)])
    spool.close()
    again = TelemetrySpool(path, capacity=100)
    assert payloads(again) == [f"sample-{i}".encode() for i in range(2, 5)] and len(again) == 3
    assert again.appended == 0  # counters are per process
    fill(again, 1, start=5)
    assert payloads(again)[-1] == b"sample-5"
    again.close()


def test_a_smaller_bound_after_a_restart_applies_at_the_next_sample(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "t.sqlite", capacity=100)
    fill(spool, 10)
    spool.close()
    small = TelemetrySpool(tmp_path / "t.sqlite", capacity=4)
    fill(small, 1, start=10)
    assert payloads(small) == [f"sample-{i}".encode() for i in range(7, 11)] and small.dropped_full == 7
    small.close()


def test_a_file_that_is_not_a_database_is_moved_aside_with_a_warning(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "telemetry.sqlite"
    path.write_bytes(b"this is not SQLite" * 500)
    with caplog.at_level(logging.WARNING):
        spool = TelemetrySpool(path, capacity=10)
    assert len(spool) == 0
    assert any("unreadable" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    kept = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not SQLite")
    fill(spool, 2)
    assert len(payloads(spool)) == 2
    spool.close()


def test_a_truncated_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite"
    spool = TelemetrySpool(path, capacity=1000)
    fill(spool, 300)
    spool.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\xff" * 100)  # a torn file: quick_check or the open fails
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    again = TelemetrySpool(path, capacity=1000)
    assert len(again) == 0 and any(".corrupt-" in p.name for p in tmp_path.iterdir())
    fill(again, 1)
    assert len(again) == 1
    again.close()


def test_an_unusable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolError, match="state_dir: cannot create"):
        TelemetrySpool(blocker / "sub" / "telemetry.sqlite")
    directory = tmp_path / "telemetry.sqlite"
    directory.mkdir()  # a directory where the file should be
    with pytest.raises(SpoolError, match="cannot open the telemetry spool"):
        TelemetrySpool(directory)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_spool_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite"
    TelemetrySpool(path).close()
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(SpoolError, match="cannot open the telemetry spool"):
            TelemetrySpool(path)
    finally:
        tmp_path.chmod(0o755)


def test_a_write_error_drops_the_sample_counts_it_and_does_not_raise(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "t.sqlite")
    spool._db.close()
    assert spool.append(T0, b"x") is None
    assert spool.dropped_error == 1 and len(spool) == 0


def test_in_memory_spool_for_simulations() -> None:
    spool = TelemetrySpool(None, capacity=3)
    fill(spool, 4)
    assert payloads(spool) == [b"sample-1", b"sample-2", b"sample-3"] and spool.dropped_full == 1


def test_spool_paths_per_house() -> None:
    assert spool_path(Path("/s"), "house-1") == Path("/s/telemetry-house-1.sqlite")
    assert spool_path(Path("/s"), "../etc/x y") == Path("/s/telemetry-.._etc_x_y.sqlite")
    assert spool_path(Path("/s"), None) == Path("/s/telemetry.sqlite")


def test_metrics_expose_the_counts_and_the_spooled_samples(tmp_path: Path) -> None:
    class Uplink:
        spool = TelemetrySpool(tmp_path / "t.sqlite", capacity=2)
        telemetry_recorded, telemetry_sent, telemetry_resent, telemetry_acked = 3, 5, 1, 1

    fill(Uplink.spool, 3)
    registry = CollectorRegistry()
    registry.register(TelemetryCollector(Uplink(), lambda: T0.timestamp() + 100))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("vpp_edge_telemetry_recorded_total", ())] == 3
    assert samples[("vpp_edge_telemetry_sent_total", ())] == 5
    assert samples[("vpp_edge_telemetry_resent_total", ())] == 1
    assert samples[("vpp_edge_telemetry_acked_total", ())] == 1
    assert samples[("vpp_edge_telemetry_dropped_total", (("reason", "spool_full"),))] == 1
    assert samples[("vpp_edge_telemetry_dropped_total", (("reason", "spool_error"),))] == 0
    assert samples[("vpp_edge_telemetry_unacked", ())] == 2
    assert samples[("vpp_edge_telemetry_oldest_unacked_age_seconds", ())] == 90  # sample-1 at T0 + 10 s
    Uplink.spool.close()


def test_cost_of_a_sample_on_the_event_loop(tmp_path: Path) -> None:
    """Append (commit) and delete-on-ack of one ~600 B sample, on disk: well under a millisecond."""
    spool = TelemetrySpool(tmp_path / "t.sqlite", capacity=10_000)
    payload = os.urandom(600)
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        spool.append(T0 + timedelta(seconds=i), payload)
    append_s = (time.perf_counter() - start) / n
    seqs = [s for s, _ in spool.read(0, n)]
    start = time.perf_counter()
    for s in seqs:
        spool.delete([s])
    delete_s = (time.perf_counter() - start) / n
    spool.close()
    print(f"append {append_s * 1e6:.0f} us, delete {delete_s * 1e6:.0f} us per sample")
    assert append_s < 2e-3 and delete_s < 2e-3
    with sqlite3.connect(tmp_path / "t.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
