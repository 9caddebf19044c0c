"""tk-controller-manager's flags: bad input is one line naming the flag, exit status 2."""

from __future__ import annotations

import pytest

from controllers.__main__ import parse


@pytest.mark.parametrize(("argv", "flag"), [
    (["--concurrent-syncs", "0"], "--concurrent-syncs"),
    (["--concurrent-syncs", "x"], "--concurrent-syncs"),
    (["--concurrent-gc-syncs", "0"], "--concurrent-gc-syncs"),
    (["--controllers", "nosuch"], "--controllers"),
    (["--controllers", "-nodeipam"], "--controllers"),
    (["--controllers", ""], "--controllers"),
    (["--node-monitor-period", "0"], "--node-monitor-period"),
    (["--node-monitor-grace-period", "0s"], "--node-monitor-grace-period"),
    (["--node-startup-grace-period", "-1"], "--node-startup-grace-period"),
    (["--node-cidr-mask-size", "8"], "--node-cidr-mask-size"),
    (["--leader-elect-renew-deadline", "20s"], "--leader-elect-renew-deadline"),
])
def test_bad_flag_is_one_line_naming_it(capsys: pytest.CaptureFixture[str], argv: list[str],
                                        flag: str) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("tk-controller-manager: error: ") and flag in err, err


def test_controllers_selection() -> None:
    a, _ = parse(["--controllers", "*,-nodeipam", "--concurrent-gc-syncs", "3",
                  "--node-monitor-period", "500ms"])
    assert "nodeipam" not in a.selected and "garbagecollector" in a.selected
    assert a.concurrent_gc_syncs == 3 and a.node_monitor_period == 0.5
