"""`until`: poll a condition until it holds, for tests and benchmarks of eventually-consistent
control loops.

A controller converges "eventually"; a test must wait for that without sleeping a fixed time
(slow on a fast machine, flaky on a loaded one). `until(check)` calls `check` (plain or async)
every `interval` seconds until it returns something truthy, and returns that; on timeout it
raises with the last value or exception, so the failure says what was still wrong. `gone` is
the check for a deletion (graceful ones finish only when a node or finalizer says so).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from api import errors

if TYPE_CHECKING:
    from client.apiclient import ApiClient

T = TypeVar("T")


# A check returns something falsy (often None) until it holds; `until` returns only the truthy
# result, so it is typed without the None.
@overload
async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 30.0,
                interval: float = 0.2, what: str = "") -> T: ...


@overload
async def until(check: Callable[[], T | None], timeout: float = 30.0,
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


async def gone(client: ApiClient, resource: str, name: str, namespace: str | None = None) -> bool:
    """True once the object is not found: the check to wait on for a deletion to finish."""
    try:
        await client.get(resource, name, namespace)
    except errors.NotFound:
        return True
    return False
