"""The garbage collector's dependency graph and per-object decision, with no I/O."""

from __future__ import annotations

from api.core import Pod
from api.resources import RESOURCES
from controllers.garbagecollector import AbsentOwnerCache, object_state
from controllers.gc_graph import (
    FOREGROUND,
    ORPHAN,
    Decision,
    Graph,
    Identity,
    ObjectState,
    OwnerRef,
    decide,
    partition_dependents,
    references_diff,
)


def ident(name: str, uid: str | None = None, ns: str = "ns", kind: str = "ConfigMap") -> Identity:
    return Identity("v1", kind, ns, name, uid or f"uid-{name}")


def ref_to(owner: Identity, block: bool = True) -> OwnerRef:
    return OwnerRef(owner.api_version, owner.kind, owner.name, owner.uid, True, block)


def state(i: Identity, *owners: OwnerRef, deleting: bool = False,
          finalizers: tuple[str, ...] = ()) -> ObjectState:
    return ObjectState(i, tuple(owners), deleting, frozenset(finalizers))


OWNER = ident("owner")
DEP = ident("dep")


def test_dependent_links_to_its_owner_both_ways() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    fx = g.process("add", state(DEP, ref_to(OWNER)))
    assert fx.attempt_to_delete == []  # an observed owner needs no verification
    assert g.nodes[OWNER.uid].dependents == {DEP.uid}
    assert g.nodes[DEP.uid].owners == (ref_to(OWNER),)


def test_unknown_owner_becomes_a_virtual_node_to_verify() -> None:
    g = Graph()
    fx = g.process("add", state(DEP, ref_to(OWNER)))
    assert fx.attempt_to_delete == [OWNER.uid]
    virtual = g.nodes[OWNER.uid]
    assert not virtual.observed
    assert virtual.identity == OWNER  # coordinates from the reference, dependent's namespace


def test_observing_a_virtual_node_makes_it_real() -> None:
    g = Graph()
    g.process("add", state(DEP, ref_to(OWNER)))
    fx = g.process("add", state(OWNER))
    assert g.nodes[OWNER.uid].observed
    assert fx.attempt_to_delete == []  # the reference agreed with what was observed


def test_owner_deleted_enqueues_its_dependents_and_remembers_it_absent() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    g.process("add", state(DEP, ref_to(OWNER)))
    fx = g.process("delete", state(OWNER))
    assert OWNER.uid not in g.nodes
    assert fx.attempt_to_delete == [DEP.uid]
    assert fx.absent == [OWNER]


def test_dependent_deleted_unlinks_and_wakes_a_foreground_owner() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    g.process("add", state(DEP, ref_to(OWNER)))
    g.process("update", state(OWNER, deleting=True, finalizers=(FOREGROUND,)), state(OWNER))
    fx = g.process("delete", state(DEP, ref_to(OWNER)))
    assert g.nodes[OWNER.uid].dependents == set()
    assert fx.attempt_to_delete == [OWNER.uid]


def test_foreground_deletion_starts_once() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    g.process("add", state(DEP, ref_to(OWNER)))
    deleting = state(OWNER, deleting=True, finalizers=(FOREGROUND,))
    fx = g.process("update", deleting, state(OWNER))
    assert g.nodes[OWNER.uid].deleting_dependents
    assert fx.attempt_to_delete == [DEP.uid, OWNER.uid]
    again = g.process("update", deleting, deleting)  # a resync: no new transition
    assert again.attempt_to_delete == []


def test_orphan_deletion_goes_to_the_orphan_queue() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    fx = g.process("update", state(OWNER, deleting=True, finalizers=(ORPHAN,)), state(OWNER))
    assert fx.attempt_to_orphan == [OWNER.uid]
    assert fx.attempt_to_delete == []


def test_object_first_seen_already_deleting_in_foreground() -> None:
    g = Graph()
    fx = g.process("add", state(OWNER, deleting=True, finalizers=(FOREGROUND,)))
    assert g.nodes[OWNER.uid].deleting_dependents
    assert fx.attempt_to_delete == [OWNER.uid]


def test_removing_a_blocking_reference_wakes_the_owner() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    g.process("add", state(DEP, ref_to(OWNER)))
    fx = g.process("update", state(DEP), state(DEP, ref_to(OWNER)))
    assert fx.attempt_to_delete == [OWNER.uid]
    assert g.nodes[OWNER.uid].dependents == set()


def test_unblocking_a_reference_wakes_the_owner() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    g.process("add", state(DEP, ref_to(OWNER)))
    fx = g.process("update", state(DEP, ref_to(OWNER, block=False)), state(DEP, ref_to(OWNER)))
    assert fx.attempt_to_delete == [OWNER.uid]
    assert g.blocking_dependents(g.nodes[OWNER.uid]) == []


def test_blocking_dependents_only_counts_block_owner_deletion() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    g.process("add", state(DEP, ref_to(OWNER)))
    g.process("add", state(ident("loose"), ref_to(OWNER, block=False)))
    assert [d.identity.name for d in g.blocking_dependents(g.nodes[OWNER.uid])] == ["dep"]


def test_owner_observed_in_another_namespace_is_reported() -> None:
    g = Graph()
    owner = ident("owner", ns="other")
    g.process("add", state(owner))
    dep = ident("dep", ns="ns")
    fx = g.process("add", state(dep, ref_to(owner)))
    assert fx.invalid_namespace == [(dep, ref_to(owner))]
    assert fx.attempt_to_delete == [dep.uid]


def test_dependent_seen_before_its_owner_in_another_namespace_is_reported() -> None:
    g = Graph()
    owner = ident("owner", ns="other")
    dep = ident("dep", ns="ns")
    g.process("add", state(dep, ref_to(owner)))
    fx = g.process("add", state(owner))
    assert fx.invalid_namespace == [(dep, ref_to(owner))]
    assert fx.attempt_to_delete == [dep.uid]
    assert g.nodes[owner.uid].identity == owner  # the observed coordinates win


def test_cluster_scoped_owner_of_namespaced_dependents_is_fine() -> None:
    g = Graph()
    node = Identity("v1", "Node", "", "n1", "uid-n1")
    g.process("add", state(node))
    fx = g.process("add", state(DEP, ref_to(node)))
    assert fx.invalid_namespace == [] and fx.attempt_to_delete == []


def test_virtual_delete_removes_a_virtual_node_and_enqueues_dependents() -> None:
    g = Graph()
    g.process("add", state(DEP, ref_to(OWNER)))
    fx = g.process("delete", ObjectState(OWNER), virtual=True)
    assert OWNER.uid not in g.nodes
    assert fx.attempt_to_delete == [DEP.uid]
    assert fx.absent == [OWNER]


def test_virtual_delete_keeps_a_node_other_dependents_name_differently() -> None:
    g = Graph()
    g.process("add", state(DEP, ref_to(OWNER)))
    other = ident("other-dep")
    renamed = OwnerRef("v1", "ConfigMap", "other-name", OWNER.uid, True, True)
    g.process("add", state(other, renamed))
    fx = g.process("delete", ObjectState(OWNER), virtual=True)
    node = g.nodes[OWNER.uid]
    assert node.identity.name == "other-name"  # now verified under the other coordinates
    assert fx.attempt_to_delete == [DEP.uid, OWNER.uid]
    assert fx.absent == [OWNER]


def test_virtual_delete_does_not_remove_an_observed_node_with_other_coordinates() -> None:
    g = Graph()
    g.process("add", state(OWNER))
    wrong = Identity("v1", "Secret", "ns", "owner", OWNER.uid)
    fx = g.process("delete", ObjectState(wrong), virtual=True)
    assert OWNER.uid in g.nodes
    assert fx.attempt_to_delete == []


def test_references_diff() -> None:
    a, b, c = ref_to(ident("a")), ref_to(ident("b")), ref_to(ident("c"))
    b2 = ref_to(ident("b"), block=False)
    added, removed, changed = references_diff([a, b], [b2, c])
    assert added == [c] and removed == [a] and changed == [(b, b2)]


def test_partition_dependents_by_coordinates() -> None:
    g = Graph()
    g.process("add", state(DEP, ref_to(OWNER)))
    g.process("add", state(ident("x"), OwnerRef("v1", "Secret", "owner", OWNER.uid)))
    deps = g.dependents_of(g.nodes[OWNER.uid])
    matching, nonmatching = partition_dependents(deps, OWNER)
    assert [d.identity.name for d in matching] == ["dep"]
    assert [d.identity.name for d in nonmatching] == ["x"]


# --- decide ------------------------------------------------------------------------------

A, B = ref_to(ident("a")), ref_to(ident("b"))


def _plain(solid: list[OwnerRef], dangling: list[OwnerRef], waiting: list[OwnerRef]) -> Decision:
    return decide(solid, dangling, waiting, has_dependents=False,
                  dependent_deleting_dependents=False, finalizers=frozenset())


def test_decide_solid_owner_keeps_the_object() -> None:
    assert _plain([A], [], []) == Decision()
    assert _plain([A], [B], []) == Decision(remove_owner_uids=(B.uid,))
    assert _plain([A], [], [B]) == Decision(remove_owner_uids=(B.uid,))


def test_decide_no_owner_left_deletes_in_background() -> None:
    d = decide([], [A], [], has_dependents=True, dependent_deleting_dependents=False,
               finalizers=frozenset())
    assert d == Decision(delete_policy="Background")


def test_decide_honours_a_propagation_already_requested() -> None:
    for fin, policy in ((ORPHAN, "Orphan"), (FOREGROUND, "Foreground")):
        d = decide([], [A], [], has_dependents=False, dependent_deleting_dependents=False,
                   finalizers=frozenset({fin}))
        assert d.delete_policy == policy


def test_decide_waiting_owner_with_dependents_propagates_foreground() -> None:
    d = decide([], [], [A], has_dependents=True, dependent_deleting_dependents=False,
               finalizers=frozenset())
    assert d == Decision(delete_policy="Foreground")
    cycle = decide([], [], [A], has_dependents=True, dependent_deleting_dependents=True,
                   finalizers=frozenset())
    assert cycle == Decision(unblock=True, delete_policy="Foreground")


def test_decide_waiting_owner_without_dependents_deletes_in_background() -> None:
    d = decide([], [], [A], has_dependents=False, dependent_deleting_dependents=False,
               finalizers=frozenset())
    assert d == Decision(delete_policy="Background")


# --- the collector's pure helpers -------------------------------------------------------------


def test_absent_owner_cache_is_a_bounded_lru() -> None:
    cache = AbsentOwnerCache(size=2)
    a, b, c = ident("a"), ident("b"), ident("c")
    cache.add(a)
    cache.add(b)
    assert a in cache  # touching a makes b the oldest
    cache.add(c)
    assert a in cache and c in cache and b not in cache


def test_object_state_reads_metadata() -> None:
    pod = Pod.model_validate({"metadata": {
        "name": "p", "namespace": "ns", "uid": "u1", "deletionTimestamp": "2024-01-01T00:00:00Z",
        "finalizers": [FOREGROUND],
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                             "uid": "u0", "controller": True, "blockOwnerDeletion": True}]}})
    st = object_state(RESOURCES["pods"], pod)
    assert st.identity == Identity("v1", "Pod", "ns", "p", "u1")
    assert st.owners == (OwnerRef("apps/v1", "ReplicaSet", "rs", "u0", True, True),)
    assert st.deleting and st.finalizers == frozenset({FOREGROUND})
