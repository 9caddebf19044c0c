"""Back-off (flowcontrol semantics) with an explicit clock."""

from __future__ import annotations

import pytest

from kubelet.backoff import Backoff, go_duration


def test_doubles_to_the_cap() -> None:
    b = Backoff(10, 300, 600)
    delays = [b.next("k", float(t)) for t in range(8)]
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_in_backoff_counts_from_last_update() -> None:
    b = Backoff(10, 300, 600)
    assert b.in_backoff("k", 0.0) == 0
    b.next("k", 100.0)
    assert b.in_backoff("k", 100.0) == 10
    assert b.in_backoff("k", 104.0) == 6
    assert b.in_backoff("k", 110.0) == 0


def test_in_backoff_since_finish_time() -> None:
    # Crash loops: the delay counts from when the container last exited.
    b = Backoff(10, 300, 600)
    b.next("k", 100.0)          # first restart (immediate), delay now 10s
    assert b.in_backoff("k", 105.0, since=103.0) == 8
    assert b.in_backoff("k", 113.0, since=103.0) == 0


def test_reset_after_long_run() -> None:
    b = Backoff(10, 300, 600)
    for t in range(5):
        b.next("k", float(t))
    assert b.get("k") == 160
    # The container ran for more than reset_after: it starts over.
    assert b.next("k", 5.0 + 601) == 10
    b.next("k", 700.0)
    assert b.in_backoff("k", 1400.0, since=1400.0) == 0  # expired entry: not in back-off


def test_reset_and_gc() -> None:
    b = Backoff(1, 8, 20)
    b.next("a", 0.0)
    b.next("b", 15.0)
    b.reset("a")
    assert "a" not in b and b.in_backoff("a", 0.0) == 0
    b.next("a", 0.0)
    b.gc(30.0)
    assert "a" not in b and "b" in b
    assert len(b) == 1


def test_keys_are_independent() -> None:
    b = Backoff(10, 300, 600)
    b.next("x", 0.0)
    b.next("x", 1.0)
    assert b.next("y", 1.0) == 10


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 10, 10)
    with pytest.raises(ValueError):
        Backoff(20, 10, 10)


@pytest.mark.parametrize(("s", "text"), [(10, "10s"), (80, "1m20s"), (300, "5m0s"),
                                         (0.5, "500ms"), (3725, "1h2m5s")])
def test_go_duration(s: float, text: str) -> None:
    assert go_duration(s) == text
