"""Filters, scores and the choice of a node: upstream's default plugins, as plain functions.

A decision is upstream's scheduling cycle, minus the plugin framework's indirection:

1. **Filter** nodes, walking them round-robin from where the last decision stopped and stopping
   once enough feasible nodes are found (`num_feasible_nodes_to_find`, upstream's adaptive
   percentageOfNodesToScore). Per node the filters run in upstream's order and the first one that
   fails decides the node's reasons: NodeUnschedulable, NodeName, TaintToleration (NoSchedule and
   NoExecute), NodeAffinity (nodeSelector and required terms), NodePorts, NodeResourcesFit.
2. **Score** the feasible nodes, each plugin normalized to 0..100 and weighted as upstream's
   default profile: NodeResourcesFit (LeastAllocated or MostAllocated) 1,
   NodeResourcesBalancedAllocation 1, TaintToleration (PreferNoSchedule) 3, NodeAffinity
   (preferred terms) 2, and spreading of a controller's pods 2 (upstream's SelectorSpread /
   default PodTopologySpread, counted here by controller uid).
3. **Select** the highest total; ties are broken at random, as upstream's selectHost does.

When no node fits, `FitError` carries upstream's message: `0/3 nodes are available: 1 Insufficient
cpu, 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.` (reason histogram,
sorted as strings). No I/O.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from api.podutil import tolerates
from scheduler.framework import NodeInfo, PodInfo

MAX_NODE_SCORE = 100
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
SCORING_STRATEGIES = (LEAST_ALLOCATED, MOST_ALLOCATED)

# Upstream's reason strings, word for word (they end up in events and `describe pod`).
ERR_NO_NODES = "no nodes available to schedule pods"
ERR_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_NODE_NAME = "node(s) didn't match the requested node name"
ERR_TAINT = "node(s) had untolerated taint {%s: %s}"
ERR_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
ERR_PORTS = "node(s) didn't have free ports for the requested pod ports"
ERR_TOO_MANY_PODS = "Too many pods"
ERR_INSUFFICIENT = "Insufficient %s"

WEIGHT_FIT, WEIGHT_BALANCED, WEIGHT_TAINT, WEIGHT_AFFINITY, WEIGHT_SPREAD = 1, 1, 3, 2, 2


class FitError(Exception):
    """No node fits: `reasons` counts, per reason, the nodes it excluded."""

    def __init__(self, num_nodes: int, reasons: Counter[str]) -> None:
        self.num_nodes = num_nodes
        self.reasons = reasons
        super().__init__(fit_error_message(num_nodes, reasons))


def fit_error_message(num_nodes: int, reasons: Counter[str]) -> str:
    """framework.FitError.Error(): "0/N nodes are available: <count reason, ...>."."""
    if num_nodes == 0:
        return ERR_NO_NODES
    histogram = sorted(f"{count} {reason}" for reason, count in reasons.items())
    msg = f"0/{num_nodes} nodes are available:"
    if histogram:
        msg += f" {', '.join(histogram)}."
    return msg


# --- filters -----------------------------------------------------------------------------------

def filter_node(p: PodInfo, n: NodeInfo) -> list[str] | None:
    """None if `p` fits on `n`, else the reasons of the first filter that rejects it."""
    if n.unschedulable and not p.tolerates_unschedulable:
        return [ERR_UNSCHEDULABLE]
    if p.node_name and p.node_name != n.name:
        return [ERR_NODE_NAME]
    if n.hard_taints:
        taint = untolerated_taint(p, n)
        if taint is not None:
            return [taint]
    if (p.node_selector or p.required_terms is not None) and not matches_node_affinity(p, n):
        return [ERR_AFFINITY]
    if p.host_ports and n.used_ports and n.ports_conflict(p.host_ports):
        return [ERR_PORTS]
    if len(n.pods) < n.alloc_pods and (not p.cpu or p.cpu + n.req_cpu <= n.alloc_cpu) \
            and (not p.mem or p.mem + n.req_mem <= n.alloc_mem):
        return None  # the common case, without building a list
    return insufficient_resources(p, n)


def untolerated_taint(p: PodInfo, n: NodeInfo) -> str | None:
    for t in n.hard_taints:
        if not any(tolerates(tol, t) for tol in p.tolerations):
            return ERR_TAINT % (t.key, t.value or "")
    return None


def matches_node_affinity(p: PodInfo, n: NodeInfo) -> bool:
    """nodeSelector (every pair) AND required node affinity (any term)."""
    labels = n.labels
    for k, v in p.node_selector.items():
        if labels.get(k) != v:
            return False
    if p.required_terms is None:
        return True
    return any(t.matches(labels, n.name) for t in p.required_terms)


def insufficient_resources(p: PodInfo, n: NodeInfo) -> list[str] | None:
    """NodeResourcesFit: pod count always; cpu and memory only if the pod requests any."""
    reasons: list[str] = []
    if len(n.pods) + 1 > n.alloc_pods:
        reasons.append(ERR_TOO_MANY_PODS)
    if p.cpu and n.alloc_cpu < p.cpu + n.req_cpu:
        reasons.append(ERR_INSUFFICIENT % "cpu")
    if p.mem and n.alloc_mem < p.mem + n.req_mem:
        reasons.append(ERR_INSUFFICIENT % "memory")
    return reasons or None


def num_feasible_nodes_to_find(num_all: int, percentage: int) -> int:
    """Upstream's numFeasibleNodesToFind; percentage 0 means adaptive (50% - nodes/125, >= 5%)."""
    if num_all < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all
    if percentage <= 0:
        percentage = max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND, 50 - num_all // 125)
    if percentage >= 100:
        return num_all
    return max(MIN_FEASIBLE_NODES_TO_FIND, num_all * percentage // 100)


def find_feasible(p: PodInfo, nodes: Sequence[NodeInfo], start: int,
                  limit: int) -> tuple[list[NodeInfo], Counter[str], int]:
    """Walk `nodes` from `start` (wrapping) until `limit` fit or all were seen.

    Returns the feasible nodes, the reason histogram of the rejected ones, and how many nodes
    were examined (the next decision starts after them, so every node gets its turn).
    """
    feasible: list[NodeInfo] = []
    reasons: Counter[str] = Counter()
    total = len(nodes)
    examined = 0
    for i in range(total):
        n = nodes[(start + i) % total]
        examined += 1
        failed = filter_node(p, n)
        if failed is None:
            feasible.append(n)
            if len(feasible) >= limit:
                break
        else:
            for r in failed:
                reasons[r] += 1
    return feasible, reasons, examined


# --- scores ------------------------------------------------------------------------------------

def resource_score(p: PodInfo, n: NodeInfo, strategy: str) -> tuple[int, int]:
    """(NodeResourcesFit score, BalancedAllocation score), both 0..100, on non-zero requests.

    Written out without helper calls: it runs for every feasible node of every decision.
    """
    cpu, mem = n.nz_cpu + p.nz_cpu, n.nz_mem + p.nz_mem
    ac, am = n.alloc_cpu, n.alloc_mem
    if strategy == MOST_ALLOCATED:
        s_cpu = min(cpu, ac) * MAX_NODE_SCORE // ac if ac > 0 else 0
        s_mem = min(mem, am) * MAX_NODE_SCORE // am if am > 0 else 0
    else:
        s_cpu = (ac - cpu) * MAX_NODE_SCORE // ac if 0 < ac and cpu <= ac else 0
        s_mem = (am - mem) * MAX_NODE_SCORE // am if 0 < am and mem <= am else 0
    f_cpu = cpu / ac if ac and cpu < ac else 1.0
    f_mem = mem / am if am and mem < am else 1.0
    # With two resources upstream's standard deviation is half their difference.
    return (s_cpu + s_mem) // 2, int((1.0 - abs(f_cpu - f_mem) / 2) * MAX_NODE_SCORE)


def intolerable_prefer_taints(p: PodInfo, n: NodeInfo) -> int:
    return sum(1 for t in n.prefer_taints
               if not any(tolerates(tol, t) for tol in p.prefer_tolerations))


def preferred_affinity(p: PodInfo, n: NodeInfo) -> int:
    return sum(w for w, term in p.preferred_terms if term.matches(n.labels, n.name))


def _normalize(raw: list[int], reverse: bool) -> list[int]:
    """framework's DefaultNormalizeScore."""
    top = max(raw, default=0)
    if top == 0:
        return [MAX_NODE_SCORE if reverse else 0 for _ in raw]
    if reverse:
        return [MAX_NODE_SCORE - MAX_NODE_SCORE * s // top for s in raw]
    return [MAX_NODE_SCORE * s // top for s in raw]


def score_nodes(p: PodInfo, nodes: Sequence[NodeInfo], strategy: str) -> list[int]:
    """The weighted total score of each node (same order as `nodes`)."""
    totals = []
    for n in nodes:
        fit, balanced = resource_score(p, n, strategy)
        totals.append(WEIGHT_FIT * fit + WEIGHT_BALANCED * balanced)
    if any(n.prefer_taints for n in nodes):
        taint = _normalize([intolerable_prefer_taints(p, n) for n in nodes], reverse=True)
    else:
        taint = [MAX_NODE_SCORE] * len(nodes)
    affinity = _normalize([preferred_affinity(p, n) for n in nodes], reverse=False) \
        if p.preferred_terms else [0] * len(nodes)
    if p.owner_uid is not None:
        spread = _normalize([n.owner_counts.get(p.owner_uid, 0) for n in nodes], reverse=True)
    else:
        spread = [MAX_NODE_SCORE] * len(nodes)
    return [t + WEIGHT_TAINT * a + WEIGHT_AFFINITY * b + WEIGHT_SPREAD * c
            for t, a, b, c in zip(totals, taint, affinity, spread, strict=True)]


def select_host(nodes: Sequence[NodeInfo], scores: Sequence[int],
                rng: random.Random) -> NodeInfo:
    """The best-scored node; ties broken uniformly at random (as upstream's selectHost)."""
    best = max(scores)
    ties = [i for i, s in enumerate(scores) if s == best]
    return nodes[ties[0] if len(ties) == 1 else rng.choice(ties)]


class Algorithm:
    """One scheduling decision at a time over a node list, remembering where filtering stopped."""

    def __init__(self, strategy: str = LEAST_ALLOCATED, percentage_of_nodes_to_score: int = 0,
                 rng: random.Random | None = None) -> None:
        if strategy not in SCORING_STRATEGIES:
            raise ValueError(f"unknown scoring strategy {strategy!r}")
        self.strategy = strategy
        self.percentage = percentage_of_nodes_to_score
        self.rng = rng or random.Random()
        self.next_start = 0

    def schedule(self, p: PodInfo, nodes: Sequence[NodeInfo]) -> NodeInfo:
        """The node for `p`, or FitError saying why there is none."""
        if not nodes:
            raise FitError(0, Counter())
        limit = num_feasible_nodes_to_find(len(nodes), self.percentage)
        start = self.next_start % len(nodes)
        feasible, reasons, examined = find_feasible(p, nodes, start, limit)
        self.next_start = (start + examined) % len(nodes)
        if not feasible:
            raise FitError(len(nodes), reasons)
        if len(feasible) == 1:
            return feasible[0]
        return select_host(feasible, score_nodes(p, feasible, self.strategy), self.rng)
