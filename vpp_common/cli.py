"""What every console script shares: logging setup, running until a signal, exit codes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from vpp_common.config import ConfigError

EXIT_CONFIG = 2  # configuration error: the operator must act (systemd: RestartPreventExitStatus=2)
EXIT_START = 1  # could not start for a reason outside the config (a busy port): worth a restart


class StartupError(Exception):
    """The process cannot start for a reason an operator can read in one line (no traceback),
    but that may pass (another process still holds the port): exit 1, a supervisor retries."""


def setup_logging(verbose: int, default: int = logging.INFO) -> None:
    level = default - 10 * verbose
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def run_until_signal(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]],
                           failed: Callable[[], Awaitable[BaseException]] | None = None) -> None:
    """Start, wait for SIGINT/SIGTERM, stop (the component drains in ``stop``).

    ``failed``, if given, returns the error that ends the component on its own after a start
    (e.g. a device found misconfigured once it answered): it is stopped, then that error raised.
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stopping.wait())]
    if failed is not None:
        waits.append(asyncio.ensure_future(failed()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        await stop()
    if len(waits) > 1 and waits[1].done() and not waits[1].cancelled() and not stopping.is_set():
        error: BaseException = waits[1].result()
        raise error


def run_main(coro_factory: Callable[[], Awaitable[int | None]]) -> int:
    """Run ``coro_factory()``; a ConfigError prints its message and exits 2."""
    try:
        return asyncio.run(coro_factory()) or 0  # type: ignore[arg-type]
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_START
    except KeyboardInterrupt:
        return 130
