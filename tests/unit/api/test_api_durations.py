"""api.durations: the one Go-duration parser behind every flag that takes a duration."""

from __future__ import annotations

import pytest

from api.durations import parse_duration


def test_go_durations() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2.5s") == 2.5


def test_bare_seconds_only_when_allowed() -> None:
    assert parse_duration("40") == 40.0
    with pytest.raises(ValueError):
        parse_duration("40", bare_seconds=False)


@pytest.mark.parametrize("bad", ["", "-1s", "-2", "1d", "10m5", "1e3", "s"])
def test_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
