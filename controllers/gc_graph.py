"""The garbage collector's dependency graph: who owns whom, by uid, with no I/O.

Upstream's GraphBuilder, reduced to a pure data structure. The collector feeds it one event at a
time — an object added, updated or deleted as an informer saw it, or a *virtual* delete that the
collector itself verified with a live GET — and the graph answers with `Effects`: which nodes the
collector must now examine (attemptToDelete), which owners must orphan their dependents
(attemptToOrphan), which identities are known absent, and which dependents name an owner in
another namespace (event OwnerRefInvalidNamespace).

Invariants:
- every uid named in some node's `owners` has a node: a real one, or a *virtual* one (not yet
  observed by an informer, coordinates taken from the first ownerReference that named it) that
  the collector verifies and, if absent, removes with a virtual delete;
- `a in nodes[b].dependents` exactly when `nodes[a].owners` has a reference with uid b;
- the graph never deletes anything by itself: every decision that writes goes through a live
  read in the collector, so a lagging informer costs a retry, never a wrong deletion.

`decide` is the collector's per-object decision (attemptToDeleteItem's switch), also pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"

EventType = Literal["add", "update", "delete"]


@dataclass(frozen=True)
class Identity:
    """An object's coordinates: upstream's objectReference (an OwnerReference + namespace)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        # Upstream's objectReference.String(), which appears in event messages.
        return (f"[{self.api_version}/{self.kind}, namespace: {self.namespace}, "
                f"name: {self.name}, uid: {self.uid}]")


@dataclass(frozen=True)
class OwnerRef:
    """One metadata.ownerReferences entry."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False
    block_owner_deletion: bool = False

    def identity(self, namespace: str) -> Identity:
        """The owner as seen from a dependent in `namespace` (owners share the namespace)."""
        return Identity(self.api_version, self.kind, namespace, self.name, self.uid)

    def matches(self, ident: Identity) -> bool:
        """Upstream's ownerReferenceMatchesCoordinates: same uid, name, kind and apiVersion."""
        return (self.uid, self.name, self.kind, self.api_version) == (
            ident.uid, ident.name, ident.kind, ident.api_version)


@dataclass(frozen=True)
class ObjectState:
    """What the graph needs to know of an object: its metadata, nothing else."""

    identity: Identity
    owners: tuple[OwnerRef, ...] = ()
    deleting: bool = False  # metadata.deletionTimestamp is set
    finalizers: frozenset[str] = frozenset()


@dataclass(eq=False)
class Node:
    identity: Identity
    owners: tuple[OwnerRef, ...] = ()
    dependents: set[str] = field(default_factory=set)
    observed: bool = True  # False: a virtual node, known only from ownerReferences
    being_deleted: bool = False
    deleting_dependents: bool = False  # being deleted with the foregroundDeletion finalizer


@dataclass
class Effects:
    """What the collector must do after an event; uids may repeat (the queues dedup)."""

    attempt_to_delete: list[str] = field(default_factory=list)
    attempt_to_orphan: list[str] = field(default_factory=list)
    absent: list[Identity] = field(default_factory=list)
    invalid_namespace: list[tuple[Identity, OwnerRef]] = field(default_factory=list)


def references_diff(
    old: Iterable[OwnerRef], new: Iterable[OwnerRef],
) -> tuple[list[OwnerRef], list[OwnerRef], list[tuple[OwnerRef, OwnerRef]]]:
    """(added, removed, changed (old, new)) between two ownerReferences lists, keyed by uid."""
    before = {r.uid: r for r in old}
    added: list[OwnerRef] = []
    changed: list[tuple[OwnerRef, OwnerRef]] = []
    for ref in new:
        prev = before.pop(ref.uid, None)
        if prev is None:
            added.append(ref)
        elif prev != ref:
            changed.append((prev, ref))
    return added, list(before.values()), changed


def _starts(old: ObjectState | None, new: ObjectState, finalizer: str) -> bool:
    """True when this event is the one where deletion with `finalizer` begins."""
    if not new.deleting or finalizer not in new.finalizers:
        return False
    return old is None or not old.deleting or finalizer not in old.finalizers


def partition_dependents(dependents: Iterable[Node], owner: Identity) -> tuple[
        list[Node], list[Node]]:
    """(matching, nonmatching): dependents whose reference to `owner.uid` does / does not agree
    with `owner`'s coordinates (a dependent with two such references can be in both)."""
    matching: list[Node] = []
    nonmatching: list[Node] = []
    for dep in dependents:
        match = mismatch = False
        if owner.namespace and owner.namespace != dep.identity.namespace:
            mismatch = True  # a namespaced owner is only ever in its dependents' namespace
        else:
            for ref in dep.owners:
                if ref.uid == owner.uid:
                    if ref.matches(owner):
                        match = True
                    else:
                        mismatch = True
        if match:
            matching.append(dep)
        if mismatch:
            nonmatching.append(dep)
    return matching, nonmatching


class Graph:
    """uid → Node, updated only through `process` (see the module docstring)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, uid: str) -> Node | None:
        return self.nodes.get(uid)

    def dependents_of(self, node: Node) -> list[Node]:
        return [self.nodes[d] for d in sorted(node.dependents) if d in self.nodes]

    def blocking_dependents(self, node: Node) -> list[Node]:
        """Dependents whose reference to `node` has blockOwnerDeletion: foreground deletion of
        `node` waits for them."""
        uid = node.identity.uid
        return [d for d in self.dependents_of(node)
                if any(r.uid == uid and r.block_owner_deletion for r in d.owners)]

    # --- events ---------------------------------------------------------------------------

    def process(self, kind: EventType, state: ObjectState, old: ObjectState | None = None,
                *, virtual: bool = False) -> Effects:
        """Apply one event; `virtual` marks a delete the collector verified itself."""
        fx = Effects()
        node = self.nodes.get(state.identity.uid)
        if kind == "delete":
            if node is not None:
                self._delete(node, state.identity, virtual, fx)
            return fx
        if node is not None and not node.observed:
            node = self._observe(node, state.identity, fx)
        if node is None:
            node = Node(state.identity, state.owners, being_deleted=state.deleting,
                        deleting_dependents=state.deleting and FOREGROUND in state.finalizers)
            self.nodes[node.identity.uid] = node
            self._add_dependent_to_owners(node, state.owners, fx)
        else:
            self._update_owners(node, state.owners, fx)
            if state.deleting:
                node.being_deleted = True
        self._transitions(old, state, node, fx)
        return fx

    def _observe(self, node: Node, seen: Identity, fx: Effects) -> Node:
        """A virtual node's object shows up in an informer: adopt the observed coordinates and
        have every dependent that named it otherwise re-checked."""
        if seen != node.identity:
            _, suspects = partition_dependents(self.dependents_of(node), seen)
            for dep in suspects:
                if seen.namespace and dep.identity.namespace != seen.namespace:
                    self._report_invalid_namespace(dep, seen.uid, fx)
                fx.attempt_to_delete.append(dep.identity.uid)
            node.identity = seen
        node.observed = True
        return node

    def _report_invalid_namespace(self, dep: Node, owner_uid: str, fx: Effects) -> None:
        for ref in dep.owners:
            if ref.uid == owner_uid:
                fx.invalid_namespace.append((dep.identity, ref))
                return

    def _add_dependent_to_owners(self, node: Node, owners: Iterable[OwnerRef],
                                 fx: Effects) -> None:
        suspicious = False
        for ref in owners:
            owner = self.nodes.get(ref.uid)
            if owner is None:
                # Unknown owner: a virtual node, verified by the collector (attemptToDelete).
                owner = Node(ref.identity(node.identity.namespace), observed=False)
                self.nodes[ref.uid] = owner
                owner.dependents.add(node.identity.uid)
                fx.attempt_to_delete.append(ref.uid)
                continue
            owner.dependents.add(node.identity.uid)
            if suspicious:
                continue
            ons = owner.identity.namespace
            if ons and ons != node.identity.namespace:
                if owner.observed:
                    self._report_invalid_namespace(node, ref.uid, fx)
                suspicious = True
            elif not ref.matches(owner.identity):
                suspicious = True
            elif not ons and ons != node.identity.namespace and not owner.observed:
                # A virtual cluster-scoped owner of a namespaced dependent could be a missing
                # namespaced object referenced from elsewhere: verify the dependent.
                suspicious = True
        if suspicious:
            fx.attempt_to_delete.append(node.identity.uid)

    def _remove_dependent_from_owners(self, node: Node, owners: Iterable[OwnerRef]) -> None:
        for ref in owners:
            owner = self.nodes.get(ref.uid)
            if owner is not None:
                owner.dependents.discard(node.identity.uid)

    def _update_owners(self, node: Node, owners: tuple[OwnerRef, ...], fx: Effects) -> None:
        added, removed, changed = references_diff(node.owners, owners)
        if not (added or removed or changed):
            return
        # An owner waiting in foreground for this dependent may be unblocked now.
        for ref in removed:
            if ref.block_owner_deletion and ref.uid in self.nodes:
                fx.attempt_to_delete.append(ref.uid)
        for before, after in changed:
            if before.block_owner_deletion and not after.block_owner_deletion \
                    and after.uid in self.nodes:
                fx.attempt_to_delete.append(after.uid)
        node.owners = owners
        self._add_dependent_to_owners(node, added, fx)
        self._remove_dependent_from_owners(node, removed)

    def _transitions(self, old: ObjectState | None, new: ObjectState, node: Node,
                     fx: Effects) -> None:
        if _starts(old, new, ORPHAN):
            fx.attempt_to_orphan.append(node.identity.uid)
            return
        if _starts(old, new, FOREGROUND):
            node.deleting_dependents = True
            fx.attempt_to_delete.extend(sorted(node.dependents))
            fx.attempt_to_delete.append(node.identity.uid)

    def _delete(self, node: Node, deleted: Identity, virtual: bool, fx: Effects) -> None:
        if virtual and not self._virtual_delete_removes(node, deleted, fx):
            return
        del self.nodes[node.identity.uid]
        self._remove_dependent_from_owners(node, node.owners)
        if node.dependents:
            fx.absent.append(deleted if virtual else node.identity)
        fx.attempt_to_delete.extend(sorted(node.dependents))
        for ref in node.owners:
            owner = self.nodes.get(ref.uid)
            if owner is not None and owner.deleting_dependents:
                # Its foreground deletion may have been waiting for this one.
                fx.attempt_to_delete.append(ref.uid)

    def _virtual_delete_removes(self, node: Node, deleted: Identity, fx: Effects) -> bool:
        """A verified absence at `deleted`'s coordinates: whether the node goes.

        Dependents that name the uid with other coordinates keep the node (their claim has not
        been checked yet); the ones that agree with `deleted` are re-examined at once.
        """
        matching, nonmatching = partition_dependents(self.dependents_of(node), deleted)
        if node.observed:
            if node.identity == deleted:
                return True
        elif not nonmatching:
            return True
        if matching:
            fx.absent.append(deleted)
            fx.attempt_to_delete.extend(d.identity.uid for d in matching)
        if not node.observed and node.identity == deleted:
            alternate = _alternate_identity(nonmatching, deleted)
            if alternate is not None:
                node.identity = alternate
                fx.attempt_to_delete.append(node.identity.uid)
        return False


def _alternate_identity(dependents: Iterable[Node], absent: Identity) -> Identity | None:
    """Another coordinate set under which some dependent names `absent.uid` (deterministic)."""
    candidates = sorted(
        {ref.identity(dep.identity.namespace) for dep in dependents for ref in dep.owners
         if ref.uid == absent.uid} - {absent},
        key=lambda i: (i.namespace, i.api_version, i.kind, i.name))
    return candidates[0] if candidates else None


# --- the per-object decision -----------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What attemptToDeleteItem does with one object whose owners were classified."""

    remove_owner_uids: tuple[str, ...] = ()  # patch these out of ownerReferences
    unblock: bool = False  # first set blockOwnerDeletion=false on its own ownerReferences
    delete_policy: str = ""  # "Background" | "Foreground" | "Orphan"; "" = do not delete


def decide(solid: list[OwnerRef], dangling: list[OwnerRef], waiting: list[OwnerRef], *,
           has_dependents: bool, dependent_deleting_dependents: bool,
           finalizers: frozenset[str]) -> Decision:
    """Upstream's switch in attemptToDeleteItem.

    - some owner is solid (exists, not waiting in foreground): keep the object, drop only the
      references to absent owners and to owners waiting for it (so they can finish);
    - owners waiting in foreground and dependents of its own: delete it in foreground too, so
      its dependents go first; if one of those is itself waiting (a cycle), unblock first;
    - otherwise nothing owns it any more: delete, honouring a propagation it already carries.
    """
    if solid:
        gone = tuple(r.uid for r in (*dangling, *waiting))
        return Decision(remove_owner_uids=gone)
    if waiting and has_dependents:
        return Decision(unblock=dependent_deleting_dependents, delete_policy="Foreground")
    if ORPHAN in finalizers:
        return Decision(delete_policy="Orphan")
    if FOREGROUND in finalizers:
        return Decision(delete_policy="Foreground")
    return Decision(delete_policy="Background")
