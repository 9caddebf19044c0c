"""Per-key exponential back-off: how long the kubelet waits before restarting a crashed container
(CrashLoopBackOff) or pulling an image again (ImagePullBackOff).

This is upstream's `k8s.io/client-go/util/flowcontrol.Backoff`, which the kubelet uses for both:
each key (pod uid + container name, or pod uid + image) has a current delay that starts at
`initial` and doubles on every `next()` up to `maximum`; an entry whose last update is older than
`reset_after` (a container that ran for ten minutes before it crashed again) starts over at
`initial`. Times are plain seconds supplied by the caller, so tests pass an explicit clock and
the kubelet passes wall-clock times (a container's `finishedAt`) or monotonic ones alike — as long
as one key always uses the same clock.

Upstream's two questions map onto `in_backoff`:
- `IsInBackOffSinceUpdate(key, now)` (image pulls): `in_backoff(key, now)`, the remaining seconds
  counted from the last `next()`;
- `IsInBackOffSince(key, finishedAt)` (crash loops): `in_backoff(key, now, since=finishedAt)`,
  the remaining seconds counted from when the container last exited.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    """Exponential back-off per string key (see the module docstring)."""

    def __init__(self, initial: float = 10.0, maximum: float = 300.0,
                 reset_after: float = 600.0) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("back-off needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, when: float) -> bool:
        # flowcontrol.hasExpired: idle for longer than the reset window.
        return when - entry.last_update > self.reset_after

    def next(self, key: str, now: float) -> float:
        """Advance the key's back-off at `now` and return the new delay: `initial` for a new
        (or expired) key, else twice the previous delay, at most `maximum`."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            entry = _Entry(self.initial, now)
            self._entries[key] = entry
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last_update = now
        return entry.delay

    def get(self, key: str) -> float:
        """The key's current delay (0 if it has none): the `back-off 10s` of status messages."""
        entry = self._entries.get(key)
        return entry.delay if entry is not None else 0.0

    def in_backoff(self, key: str, now: float, since: float | None = None) -> float:
        """Seconds until the key may act again, 0 if it may act now.

        Counted from the last `next()`, or from `since` (a container's finish time) when given;
        an entry idle for longer than `reset_after` is not in back-off.
        """
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        start = entry.last_update if since is None else since
        if self._expired(entry, start if since is not None else now):
            return 0.0
        return max(0.0, start + entry.delay - now)

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def gc(self, now: float) -> None:
        """Forget entries idle for longer than the reset window (they would start over anyway)."""
        for key in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


def go_duration(seconds: float) -> str:
    """A delay as Go prints a time.Duration: 10s, 1m20s, 5m0s (upstream's status messages)."""
    total = round(seconds)
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"
