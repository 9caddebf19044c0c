"""`tkctl taint` (pure parts): kubectl's taint-spec parsing, its merge and its result words."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest

from api import errors
from tkctl import cli
from tkctl.cmd_taint import (
    MODIFIED,
    TAINTED,
    UNTAINTED,
    Taint,
    TaintError,
    node_names,
    parse_taint,
    parse_taints,
    reorganize,
    run,
    split_args,
)
from tkctl.commands import COMMANDS
from tkctl.context import Context, UsageError


def taint(key: str, value: str = "", effect: str = "NoSchedule", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "effect": effect, **extra}
    if value:
        out["value"] = value
    return out


# --- parsing --------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "want"), [
    ("dedicated=infra:NoSchedule", Taint("dedicated", "infra", "NoSchedule")),
    ("dedicated:PreferNoSchedule", Taint("dedicated", "", "PreferNoSchedule")),
    ("example.com/gpu=yes:NoExecute", Taint("example.com/gpu", "yes", "NoExecute")),
    ("dedicated=:NoSchedule", Taint("dedicated", "", "NoSchedule")),
    ("dedicated", Taint("dedicated")),
])
def test_parse_taint(spec: str, want: Taint) -> None:
    assert parse_taint(spec) == want


@pytest.mark.parametrize(("spec", "message"), [
    ("k=v:NoWay", "invalid taint effect: NoWay, unsupported taint effect"),
    ("k=v:noschedule", "invalid taint effect: noschedule, unsupported taint effect"),
    ("k=v=w:NoSchedule", "invalid taint spec: k=v=w:NoSchedule"),
    ("a:b:NoSchedule", "invalid taint spec: a:b:NoSchedule"),
    ("-bad:NoSchedule", "invalid taint spec: -bad:NoSchedule, name part must consist of"),
    ("k=-v:NoSchedule", "invalid taint spec: k=-v:NoSchedule, a valid label must be an empty "
                        "string"),
])
def test_parse_taint_errors_are_kubectls(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_taint(spec)
    assert str(e.value).startswith(message)


def test_parse_taints_splits_additions_and_removals() -> None:
    add, remove = parse_taints(["a=1:NoSchedule", "b:NoExecute-", "c-", "d:PreferNoSchedule"])
    assert add == [Taint("a", "1", "NoSchedule"), Taint("d", "", "PreferNoSchedule")]
    assert remove == [Taint("b", "", "NoExecute"), Taint("c")]
    # A value on a removal is ignored, as kubectl does.
    assert parse_taints(["a=1:NoSchedule-"])[1] == [Taint("a", "", "NoSchedule")]


def test_adding_needs_an_effect() -> None:
    with pytest.raises(UsageError) as e:
        parse_taints(["a=1"])  # no effect: the whole text is taken as the key
    assert str(e.value).startswith("invalid taint spec: a=1, name part must consist of")
    with pytest.raises(UsageError) as e:
        parse_taints(["a"])
    assert str(e.value) == "invalid taint spec: a"
    with pytest.raises(UsageError) as e:
        parse_taints(["a:"])
    assert str(e.value) == "invalid taint effect: , unsupported taint effect"


def test_duplicates_and_contradictions_are_refused() -> None:
    with pytest.raises(UsageError) as e:
        parse_taints(["a=1:NoSchedule", "a=2:NoSchedule"])
    assert str(e.value) == ("duplicated taints with the same key and effect: "
                            "{a 2 NoSchedule <nil>}")
    # Same key, other effect: two taints.
    assert len(parse_taints(["a=1:NoSchedule", "a=2:NoExecute"])[0]) == 2
    with pytest.raises(UsageError) as e:
        parse_taints(["a=1:NoSchedule", "a-"])
    assert str(e.value) == ('can not both modify and remove the following taint(s) in the same '
                            'command: {"a":""}')
    with pytest.raises(UsageError) as e:
        parse_taints(["a=1:NoSchedule", "a:NoSchedule-"])
    assert str(e.value).endswith('{"a":"NoSchedule"}')
    parse_taints(["a=1:NoSchedule", "a:NoExecute-"])  # different effects: fine


def test_split_args_wants_resources_first() -> None:
    assert split_args(["nodes", "w1", "a=b:NoSchedule", "c-"]) == (
        ["nodes", "w1"], ["a=b:NoSchedule", "c-"])
    assert split_args(["node/w1", "a:NoSchedule"]) == (["node/w1"], ["a:NoSchedule"])
    with pytest.raises(UsageError) as e:
        split_args(["nodes", "a:NoSchedule", "w2"])
    assert str(e.value) == "all resources must be specified before taint changes: w2"


def test_node_names_forms() -> None:
    assert node_names(["nodes", "w1", "w2"]) == ["w1", "w2"]
    assert node_names(["no", "w1"]) == ["w1"]
    assert node_names(["node/w1", "nodes/w2"]) == ["w1", "w2"]
    assert node_names(["nodes"]) == []  # with -l or --all
    with pytest.raises(UsageError) as e:
        node_names(["pods", "p"])
    assert str(e.value) == "invalid resource type pods, only node types are supported"
    with pytest.raises(UsageError, match="one or more resources must be specified"):
        node_names([])


# --- the merge ------------------------------------------------------------------------------

def test_add_to_an_untainted_node() -> None:
    op, new = reorganize("w1", [], [Taint("a", "1", "NoSchedule")], [], False)
    assert (op, new) == (TAINTED, [taint("a", "1")])


def test_existing_key_and_effect_needs_overwrite() -> None:
    current = [taint("a", "1"), taint("b", "x", "NoExecute")]
    with pytest.raises(TaintError) as e:
        reorganize("w1", current, [Taint("a", "2", "NoSchedule"),
                                   Taint("b", "", "NoExecute")], [], False)
    assert str(e.value) == ("node w1 already has a,b taint(s) with same effect(s) and "
                            "--overwrite is false")
    op, new = reorganize("w1", current, [Taint("a", "2", "NoSchedule")], [], True)
    assert (op, new) == (MODIFIED, [taint("a", "2"), taint("b", "x", "NoExecute")])


def test_same_key_other_effect_is_a_new_taint() -> None:
    op, new = reorganize("w1", [taint("a", "1")], [Taint("a", "1", "NoExecute")], [], False)
    assert op == TAINTED
    assert new == [taint("a", "1", "NoExecute"), taint("a", "1")]


def test_remove_by_key_and_effect_or_by_key() -> None:
    current = [taint("a", "1"), taint("a", "1", "NoExecute"), taint("b")]
    op, new = reorganize("w1", current, [], [Taint("a", "", "NoExecute")], False)
    assert (op, new) == (UNTAINTED, [taint("a", "1"), taint("b")])
    op, new = reorganize("w1", current, [], [Taint("a")], False)
    assert (op, new) == (UNTAINTED, [taint("b")])


def test_removing_a_missing_taint_fails_the_node() -> None:
    with pytest.raises(TaintError) as e:
        reorganize("w1", [taint("a", "1")], [], [Taint("a", "", "NoExecute")], False)
    assert str(e.value) == 'taint "a:NoExecute" not found'
    with pytest.raises(TaintError) as e:
        reorganize("w1", [], [], [Taint("x"), Taint("y", "", "NoSchedule")], False)
    assert str(e.value) == '[taint "x" not found, taint "y:NoSchedule" not found]'


def test_add_and_remove_together_is_modified() -> None:
    op, new = reorganize("w1", [taint("a")], [Taint("b", "", "NoSchedule")], [Taint("a")], False)
    assert (op, new) == (MODIFIED, [taint("b")])


def test_untouched_taints_keep_their_fields() -> None:
    current = [taint("node.kubernetes.io/unreachable", effect="NoExecute",
                     timeAdded="2024-01-01T00:00:00Z")]
    _, new = reorganize("w1", current, [Taint("a", "", "NoSchedule")], [], False)
    assert new[1] == current[0]


# --- the command line -----------------------------------------------------------------------

def test_taint_is_a_verb_and_create_ns_an_alias() -> None:
    command, args = cli.parse(["taint", "nodes", "w1", "a=b:NoSchedule", "--overwrite",
                               "--dry-run=client"], COMMANDS)
    assert command is not None and command.name == "taint"
    assert args.args == ["nodes", "w1", "a=b:NoSchedule"] and args.overwrite
    assert args.dry_run == "client"
    command, args = cli.parse(["taint", "nodes", "-l", "x=y", "a-"], COMMANDS)
    assert args.selector == "x=y" and args.args == ["nodes", "a-"]
    command, args = cli.parse(["create", "ns", "demo"], COMMANDS)
    assert command is not None and command.name == "create namespace" and args.name == "demo"


# --- the write: precondition + retry on Conflict ----------------------------------------------

class ScriptedClient:
    """A node store whose first patch loses a race: another writer added a taint meanwhile."""

    server = "test"

    def __init__(self) -> None:
        self.node: dict[str, Any] = {"metadata": {"name": "w1", "resourceVersion": "5"},
                                     "spec": {"taints": [taint("a")]}}
        self.patches: list[dict[str, Any]] = []

    async def get(self, resource: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.node)

    async def patch(self, resource: str, name: str, patch: dict[str, Any], *,
                    dry_run: bool = False) -> dict[str, Any]:
        self.patches.append(patch)
        if len(self.patches) == 1:  # the race: someone else's write bumped the version
            self.node["spec"]["taints"].append(taint("other", effect="NoExecute"))
            self.node["metadata"]["resourceVersion"] = "6"
        if patch["metadata"]["resourceVersion"] != self.node["metadata"]["resourceVersion"]:
            raise errors.Conflict(message=f'Operation cannot be fulfilled on nodes "{name}"')
        self.node["spec"]["taints"] = patch["spec"]["taints"]
        return copy.deepcopy(self.node)


async def test_conflict_rereads_and_merges_again() -> None:
    client = ScriptedClient()
    out = io.StringIO()
    ctx = Context(client=client, out=out, err=io.StringIO())  # type: ignore[arg-type]
    _, args = cli.parse(["taint", "nodes", "w1", "b=1:NoSchedule"], COMMANDS)
    await run(ctx, args)
    assert not ctx.failed and out.getvalue() == "node/w1 tainted\n"
    assert [p["metadata"]["resourceVersion"] for p in client.patches] == ["5", "6"]
    # The taint the other writer added survives.
    assert client.node["spec"]["taints"] == [taint("b", "1"), taint("a"),
                                             taint("other", effect="NoExecute")]
