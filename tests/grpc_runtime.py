"""gRPC asyncio in the test process: one runtime for the whole run, and no server or channel
outliving the test that made it.

grpc.aio counts its live objects (servers, channels, server-side calls).  When the count
drops to zero it shuts its completion queue down and joins the queue's poller thread, which
returns only once every operation on the queue has finished.  A server that was never
stopped keeps a request for the next call pending on that queue for ever (dropping the
object does not shut the core server down: its ``__del__`` schedules ``shutdown`` on its
loop, which has closed by then: "Event loop is closed", an unraisable exception).  So the
next time the count reaches zero, in whichever later test that happens, the join never
returns: CI's 120 s hang in PollerCompletionQueue.shutdown in a test_replicas teardown,
and the unraisable exceptions that then failed unrelated tests.

Here: one reference held for the whole process (the queue is never shut down during the
run, and the poller thread is started once), and every server and channel a test makes is
tracked, so that one still running at the end of its test is stopped while its loop still
runs and reported as that test's failure.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import Any

import grpc

_FACTORIES = ("server", "insecure_channel", "secure_channel")
_made: list[weakref.ref[Any]] = []  # servers and channels made since the current test began
_installed = False


def _tracked(factory: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(factory)
    def make(*args: Any, **kwargs: Any) -> Any:
        obj = factory(*args, **kwargs)
        _made.append(weakref.ref(obj))
        return obj
    return make


def install() -> None:
    """Once per process: hold one grpc.aio reference, and track what the factories make."""
    global _installed
    if _installed:
        return
    _installed = True

    async def hold() -> None:  # init binds the running loop; any later loop binds itself too
        grpc.aio.init_grpc_aio()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(hold())
    finally:
        loop.close()
    for name in _FACTORIES:
        setattr(grpc.aio, name, _tracked(getattr(grpc.aio, name)))


def begin() -> None:
    _made.clear()


def made_any() -> bool:
    return bool(_made)


def _running(obj: Any) -> bool:
    inner = getattr(obj, "_server", None)
    if inner is not None:
        return bool(inner.is_running())
    inner = getattr(obj, "_channel", None)
    return inner is not None and not inner.closed()


async def stop_left_over(loop: asyncio.AbstractEventLoop) -> list[str]:
    """At the end of an async test, on its loop: stop and name the servers and channels it left."""
    problems = []
    for ref in list(_made):
        obj = ref()
        if obj is None or getattr(obj, "_loop", None) is not loop or not _running(obj):
            continue
        if isinstance(obj, grpc.aio.Server):
            problems.append("a grpc.aio server left running (stop it: it would hang grpc's shutdown)")
            await obj.stop(None)
        else:
            problems.append("a grpc.aio channel left open (close it)")
            await obj.close()
        del obj
    return problems


def left_running() -> list[str]:
    """At the end of any test: servers still running whose loop has closed (nothing can stop
    them now; those of a loop still open are stopped by ``stop_left_over``)."""
    return ["a grpc.aio server left running after its loop closed"
            for ref in _made if (obj := ref()) is not None and getattr(obj, "_server", None) is not None
            and _running(obj) and obj._loop.is_closed()]
