"""`tkctl wait --for=...`: parsing the condition and judging objects against it."""

from __future__ import annotations

import pytest

from tkctl.cmd_wait import condition_check
from tkctl.context import UsageError

POD = {"metadata": {"name": "web"},
       "status": {"phase": "Running",
                  "conditions": [{"type": "Ready", "status": "True"},
                                 {"type": "Initialized", "status": "False"}],
                  "containerStatuses": [{"name": "a", "ready": True,
                                         "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}


def test_condition_defaults_to_true_and_ignores_case() -> None:
    check = condition_check("condition=ready")
    assert check is not None and check(POD)
    not_init = condition_check("condition=Initialized")
    assert not_init is not None and not not_init(POD)
    init_false = condition_check("condition=Initialized=false")
    assert init_false is not None and init_false(POD)
    missing = condition_check("condition=ContainersReady")
    assert missing is not None and not missing(POD) and not missing(None)


def test_jsonpath_fields_and_indexes() -> None:
    phase = condition_check("jsonpath={.status.phase}=Running")
    assert phase is not None and phase(POD)
    ready = condition_check("jsonpath='{.status.containerStatuses[0].ready}'=true")
    assert ready is not None and ready(POD)
    reason = condition_check(
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=CrashLoopBackOff")
    assert reason is not None and reason(POD)
    out_of_range = condition_check("jsonpath={.status.containerStatuses[3].ready}=true")
    assert out_of_range is not None and not out_of_range(POD)


def test_jsonpath_filters_and_what_a_path_must_select() -> None:
    ready = condition_check('jsonpath={.status.conditions[?(@.type=="Ready")].status}=True')
    assert ready is not None and ready(POD)
    init = condition_check("jsonpath='{.status.conditions[?(@.type==\"Initialized\")].status}'"
                           "=True")
    assert init is not None and not init(POD)
    several = condition_check("jsonpath={.status.conditions[*].status}=True")
    assert several is not None
    with pytest.raises(UsageError, match="matches more than one value"):
        several(POD)
    nested = condition_check("jsonpath={.status.containerStatuses[0].state}=x")
    assert nested is not None
    with pytest.raises(UsageError, match="nested object or list"):
        nested(POD)


def test_delete_has_no_predicate() -> None:
    assert condition_check("delete") is None


@pytest.mark.parametrize("spec, words", [
    ("", "--for must be set"),
    ("ready", "unrecognized condition"),
    ("jsonpath={.status.phase}", "jsonpath wait format"),
    ("jsonpath=status.phase=Running", "jsonpath wait format"),
    ("jsonpath={.status.phase=1", "jsonpath wait format"),
    ("jsonpath={.status[?(@.x <> 1)]}=1", "error parsing jsonpath"),
])
def test_bad_for_names_the_problem(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words.replace("[", r"\[")):
        condition_check(spec)
