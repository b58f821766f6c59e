"""Shared fixtures: leak detection, free ports, a throwaway redis-server.

Every test runs under ``no_leaks``: a test that leaves asyncio tasks, threads,
child processes or listening ports behind fails.  Waiting is always bounded
polling or awaiting an event, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest

from tests import grpc_runtime


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

async def until(pred: Callable[[], bool], what: str, timeout_s: float = 10.0) -> float:
    """Bounded wait for a condition no event announces (checked every 10 ms); the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _listening_ports() -> set[tuple[str, int]]:
    try:
        conns = psutil.Process().net_connections(kind="inet")
    except psutil.Error:
        return set()
    return {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}


# Processes that session-scoped fixtures own (they outlive single tests by design).
_SESSION_PIDS: set[int] = set()


def _process_helper(p: psutil.Process) -> bool:
    """multiprocessing's resource tracker: started once per interpreter, by design."""
    try:
        return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)
            if p.pid not in _SESSION_PIDS and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            and not _process_helper(p)}


# Process-wide threads that libraries start once and keep by design (not leaks):
# grpc.aio's completion-queue poller.
_PROCESS_THREADS = ("_poll_wrapper",)


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate()
            if t.ident is not None and not any(n in t.name for n in _PROCESS_THREADS)}


def _wait_until(pred, timeout_s: float = 3.0) -> bool:
    """Poll ``pred`` until true or the bound runs out (never an unbounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@pytest.fixture(scope="session", autouse=True)
def _process_wide() -> None:
    """One grpc.aio runtime for the run (tests/grpc_runtime.py), and the heap as it stands after
    collection frozen: the per-test ``gc.collect()`` below walks only what that test made (a
    collection over the whole heap took 0.1-0.8 s, for every test)."""
    grpc_runtime.install()
    gc.collect()
    gc.freeze()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Under pytest-xdist a test marked ``serial`` runs with no other test beside it (the live
    fleet run measures what it does under CPU load; a second worker would add to it).  Every
    test holds a shared lock on one file of the run, a ``serial`` test an exclusive one; a
    second lock, taken briefly by each test on its way in, lets a waiting ``serial`` test go
    before the other worker's next test.  Taken around the whole test, outside its timeout."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return (yield)
    base = os.path.join(tempfile.gettempdir(), f"vpp-pytest-{run}")
    serial = item.get_closest_marker("serial") is not None
    with open(f"{base}-gate.lock", "a") as gate, open(f"{base}-serial.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        return (yield)  # closing the files releases the locks


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    grpc_runtime.begin()
    threads = _threads()
    children = _children()
    ports = _listening_ports()
    if asyncio.iscoroutinefunction(getattr(request.node, "function", None)):
        request.getfixturevalue("_no_task_leaks")
    yield
    problems = grpc_runtime.left_running()
    # the test's garbage goes now: a finaliser that raises (an unraisable exception) fails this
    # test, not whichever later one the collector happens to run in
    gc.collect()
    gc.freeze()  # what outlives its test is not walked again: each collection costs only its test's objects
    if not _wait_until(lambda: _threads() <= threads):
        names = [t.name for t in threading.enumerate() if t.ident not in threads
                 and not any(n in t.name for n in _PROCESS_THREADS)]
        problems.append(f"threads left running: {names}")
    if not _wait_until(lambda: _children() <= children):
        left = [psutil.Process(pid).cmdline() for pid in _children() - children if psutil.pid_exists(pid)]
        problems.append(f"child processes left running: {left}")
    if not _wait_until(lambda: _listening_ports() <= ports):
        problems.append(f"ports left listening: {sorted(_listening_ports() - ports)}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def agent_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every agent of a test (in process or a child) keeps its telemetry spool in a directory of
    that test, not in ./state of the checkout (where one run's samples would reach the next)."""
    monkeypatch.setenv("VPP_AGENT_STATE_DIR", str(tmp_path_factory.mktemp("agent-state")))
    yield


@pytest.fixture
async def _no_task_leaks() -> AsyncIterator[None]:
    """Set up before (so torn down after) the test's own async fixtures."""
    before = asyncio.all_tasks()
    yield
    grpc_left = await grpc_runtime.stop_left_over(asyncio.get_running_loop())
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if left:  # grpc's internal tasks finish a few loop turns after a cancelled call: bounded grace
        await asyncio.wait(left, timeout=5.0)
        left = [t for t in left if not t.done()]
    if left:
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        pytest.fail(f"asyncio tasks left running: {[t.get_coro() for t in left]}", pytrace=False)
    if grpc_left:
        pytest.fail("; ".join(grpc_left), pytrace=False)


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` on a free loopback port (not the machine's 6379)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="vpp-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _SESSION_PIDS.add(proc.pid)
    try:
        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return proc.poll() is not None
        if not _wait_until(up, 10.0) or proc.poll() is not None:
            raise RuntimeError(f"redis-server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        yield RedisServer("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)
