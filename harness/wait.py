"""`until`: poll a condition until it holds, for tests and benchmarks of eventually-consistent
control loops.

A controller converges "eventually"; a test must wait for that without sleeping a fixed time
(slow on a fast machine, flaky on a loaded one). `until(check)` calls `check` (plain or async)
every `interval` seconds until it returns something truthy, and returns that; on timeout it
raises with the last value or exception, so the failure says what was still wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def until(check: Callable[[], Awaitable[T]], timeout: float = 30.0,
                interval: float = 0.2, what: str = "") -> T: ...


@overload
async def until(check: Callable[[], T], timeout: float = 30.0,
                interval: float = 0.2, what: str = "") -> T: ...


async def until(check: Callable[[], Any], timeout: float = 30.0,
                interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            last = result
            if result:
                return result
        except AssertionError as e:  # a check may assert, to say what is missing
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what or 'condition'} not met within {timeout}s; last: {last!r}")
        await asyncio.sleep(interval)
