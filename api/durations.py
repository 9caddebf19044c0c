"""Go durations (`10m`, `1h30m`, `500ms`), as upstream's flags and kubectl take them.

The apiserver's, the components' and tkctl's flags all take them; the parsing lives here, once,
and each caller words its own error (argparse's, kubectl's).
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_BARE = re.compile(r"\d+(?:\.\d+)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# Go's time.Duration is an int64 of nanoseconds: about 292 years.
MAX_SECONDS = (2**63 - 1) / 1e9


def parse_duration(text: str, *, bare_seconds: bool = True) -> float:
    """Seconds in `text`; a bare number is seconds when `bare_seconds`. ValueError otherwise,
    also for a duration longer than Go's can be (which would be `inf` here)."""
    if bare_seconds and _BARE.fullmatch(text):
        seconds = float(text)
    else:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"invalid duration {text!r}")
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if seconds > MAX_SECONDS:
        raise ValueError(f"invalid duration {text[:40]!r}: overflow")
    return seconds
