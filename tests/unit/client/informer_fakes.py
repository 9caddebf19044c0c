"""A scripted ListerWatcher for unit-testing the reflector and informer logic.

Each list call pops the next scripted result; each watch call pops the next script of events
(an exception in a script is raised at that point, a number is a pause of that many seconds;
the end of a script ends the stream). With no script left, a watch blocks until the test
cancels it (or the reflector abandons it as stalled). Integration tests use the real apiserver.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from client.apiclient import WatchEvent


def cm(name: str, rv: str, ns: str = "ns", data: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
        "data": {"v": data or rv},
    }


def ev(type_: str, obj: dict[str, Any]) -> WatchEvent:
    return WatchEvent(type_, obj)


def bookmark(rv: str) -> WatchEvent:
    return WatchEvent("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": rv}})


ListResult = tuple[list[dict[str, Any]], str] | Exception
Script = list[WatchEvent | Exception | float]


class FakeLW:
    def __init__(self) -> None:
        self.lists: deque[ListResult] = deque()
        self.watches: deque[Script] = deque()
        self.list_calls = 0
        self.list_timeouts: list[float | None] = []
        self.watch_timeouts: list[tuple[int, float | None]] = []
        self.watch_rvs: list[str] = []
        self.watch_kwargs: list[dict[str, Any]] = []
        self.watching = asyncio.Event()  # set whenever a watch blocks with no script left

    async def list_all(
        self, resource: str, namespace: str | None = None, *, label_selector: str = "",
        field_selector: str = "", page_size: int = 500, timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        self.list_calls += 1
        self.list_timeouts.append(timeout)
        result = self.lists.popleft()
        if isinstance(result, Exception):
            raise result
        return result

    async def watch(
        self, resource: str, namespace: str | None = None, *, resource_version: str = "",
        label_selector: str = "", field_selector: str = "", allow_bookmarks: bool = False,
        timeout_seconds: int = 0, request_timeout: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        self.watch_rvs.append(resource_version)
        self.watch_timeouts.append((timeout_seconds, request_timeout))
        self.watch_kwargs.append({"namespace": namespace, "label_selector": label_selector,
                                  "field_selector": field_selector,
                                  "allow_bookmarks": allow_bookmarks})
        if not self.watches:
            self.watching.set()
            await asyncio.Event().wait()
        for item in self.watches.popleft():
            await asyncio.sleep(0)
            if isinstance(item, Exception):
                raise item
            if isinstance(item, float | int):
                await asyncio.sleep(item)
                continue
            yield item

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until the consumer has used up every script and is blocked in a watch."""
        self.watching.clear()
        await asyncio.wait_for(self.watching.wait(), timeout)
