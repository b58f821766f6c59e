"""What every console script shares: logging setup, running until a signal, exit codes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from vpp_common.config import ConfigError

EXIT_CONFIG = 2  # configuration error: the operator must act


def setup_logging(verbose: int, default: int = logging.INFO) -> None:
    level = default - 10 * verbose
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def run_until_signal(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
    """Start, wait for SIGINT/SIGTERM, stop (the component drains in ``stop``)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    try:
        await stopping.wait()
    finally:
        await stop()


def run_main(coro_factory: Callable[[], Awaitable[int | None]]) -> int:
    """Run ``coro_factory()``; a ConfigError prints its message and exits 2."""
    try:
        return asyncio.run(coro_factory()) or 0  # type: ignore[arg-type]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
