"""`tkctl get --sort-by`, and the time order `get events` prints in by default.

Events listed by name come out in an order that means nothing to a reader (names are the
involved object's name plus a hex timestamp); what anyone wants is "what happened, in order", so
`get events` sorts by lastTimestamp (falling back to eventTime, firstTimestamp, creation time),
like `kubectl events`. `--sort-by` takes kubectl's JSONPath subset for one field:
`.metadata.name`, `{.status.phase}`, `.spec.containers[0].image`.
"""

from __future__ import annotations

import re
from typing import Any

from tkctl.context import UsageError

Obj = dict[str, Any]
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(expr: str) -> list[str | int]:
    """`{.a.b[0].c}` or `.a.b[0].c` into ['a', 'b', 0, 'c']; UsageError if malformed."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if not text.startswith("."):
        raise UsageError(f"couldn't parse --sort-by {expr!r}: want a JSONPath field such as "
                         "'.metadata.name'")
    steps: list[str | int] = []
    pos = 1
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise UsageError(f"couldn't parse --sort-by {expr!r} at {text[pos:]!r}")
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
        if pos < len(text) and text[pos] == ".":
            pos += 1
    if not steps:
        raise UsageError(f"couldn't parse --sort-by {expr!r}")
    return steps


def _get(obj: Any, path: list[str | int]) -> Any:
    for step in path:
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and step < len(obj) else None
        else:
            obj = obj.get(step) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def _key(value: Any) -> tuple[int, Any]:
    # Missing values first, then numbers by value, then everything else as text (RFC 3339
    # timestamps sort correctly as text).
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (2, str(value))
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value))


def sort_by(objs: list[Obj], expr: str) -> list[Obj]:
    path = parse_path(expr)
    return sorted(objs, key=lambda o: _key(_get(o, path)))


def event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
               or (ev.get("metadata") or {}).get("creationTimestamp") or "")


def sort_events(events: list[Obj]) -> list[Obj]:
    """Oldest first, by when each event last happened (stable for equal times)."""
    return sorted(events, key=event_time)
