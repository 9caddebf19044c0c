"""computePodActions and friends: what the kubelet does to a pod's containers."""

from __future__ import annotations

from kubelet_fakes import ctr, pod, sandbox

from kubelet.sync import (
    compute_pod_actions,
    containers_to_remove,
    parse_time,
    restart_count_for,
    sandbox_changed,
)


def names(specs: list[dict]) -> list[str]:
    return [s["name"] for s in specs]


def test_new_pod_creates_sandbox_and_starts_all() -> None:
    a = compute_pod_actions(pod("a", "b"), [])
    assert a.create_sandbox and a.attempt == 0 and names(a.start) == ["a", "b"]


def test_new_pod_with_init_starts_first_init_only() -> None:
    a = compute_pod_actions(pod("a", inits=("i1", "i2")), [])
    assert a.create_sandbox and a.next_init["name"] == "i1" and not a.start


def test_steady_state_is_idle() -> None:
    a = compute_pod_actions(pod("a"), [sandbox(), ctr("a")])
    assert a.idle


def test_dead_sandbox_is_recreated_with_next_attempt() -> None:
    sb = sandbox("exited", attempt=2)
    a = compute_pod_actions(pod("a"), [sb, ctr("a", "exited", 137)])
    assert a.create_sandbox and a.kill_pod and a.attempt == 3 and a.sandbox_id == sb.id
    assert names(a.start) == ["a"]


def test_dead_sandbox_never_policy_all_ran_not_recreated() -> None:
    a = compute_pod_actions(pod("a", policy="Never"),
                            [sandbox("exited"), ctr("a", "exited", 1)])
    assert a.kill_pod and not a.create_sandbox and not a.start


def test_dead_sandbox_onfailure_skips_succeeded() -> None:
    a = compute_pod_actions(pod("a", "b", policy="OnFailure"),
                            [sandbox("exited"), ctr("a", "exited", 0), ctr("b", "exited", 2)])
    assert a.create_sandbox and names(a.start) == ["b"]


def test_missing_ip_recreates_sandbox_but_not_for_host_network() -> None:
    assert sandbox_changed(pod("a"), [sandbox()], has_ip=False)[0]
    assert not sandbox_changed(pod("a", hostNetwork=True), [sandbox()], has_ip=False)[0]


def test_two_running_sandboxes_recreate() -> None:
    assert sandbox_changed(pod("a"), [sandbox(attempt=0), sandbox(attempt=1)]) [:2] == (True, 2)


def test_restart_policies() -> None:
    for policy, code, restart in [("Always", 0, True), ("Always", 1, True),
                                  ("OnFailure", 0, False), ("OnFailure", 3, True),
                                  ("Never", 0, False), ("Never", 3, False)]:
        a = compute_pod_actions(pod("a", policy=policy), [sandbox(), ctr("a", "exited", code)])
        assert (names(a.start) == ["a"]) is restart, (policy, code)
        # Nothing left to run or keep: the pod's sandbox goes (upstream KillPod).
        assert a.kill_pod is (not restart)


def test_created_container_is_started_again() -> None:
    a = compute_pod_actions(pod("a", policy="Never"), [sandbox(), ctr("a", "created")])
    assert names(a.start) == ["a"]


def test_liveness_failure_kills_and_restarts() -> None:
    c = ctr("a")
    a = compute_pod_actions(pod("a"), [sandbox(), c],
                            probe_failure=lambda n, cid: "failed" if cid == c.id else None)
    assert names(a.start) == ["a"]
    assert a.kill[c.id].message == "Container a failed liveness probe, will be restarted"
    assert a.kill[c.id].reason == "LivenessProbe"


def test_liveness_failure_never_policy_kills_only() -> None:
    c = ctr("a")
    a = compute_pod_actions(pod("a", policy="Never"), [sandbox(), c],
                            probe_failure=lambda n, cid: "x")
    assert not a.start and a.kill[c.id].message == "Container a failed liveness probe"
    assert a.kill_pod


def test_spec_hash_change_restarts_even_under_never() -> None:
    c = ctr("a")
    a = compute_pod_actions(pod("a", policy="Never"), [sandbox(), c],
                            container_hash=lambda spec: "new", hash_of=lambda x: "old")
    assert names(a.start) == ["a"]
    assert a.kill[c.id].message == "Container a definition changed, will be restarted"


def test_container_not_in_spec_is_killed() -> None:
    stray = ctr("gone")
    a = compute_pod_actions(pod("a"), [sandbox(), ctr("a"), stray])
    assert stray.id in a.kill and not a.start


def test_init_containers_in_order() -> None:
    p = pod("a", inits=("i1", "i2"))
    a = compute_pod_actions(p, [sandbox(), ctr("i1", "running")])
    assert a.idle  # i1 still running
    a = compute_pod_actions(p, [sandbox(), ctr("i1", "exited", 0)])
    assert a.next_init["name"] == "i2"
    a = compute_pod_actions(p, [sandbox(), ctr("i1", "exited", 0), ctr("i2", "exited", 0)])
    assert names(a.start) == ["a"] and a.next_init is None


def test_failed_init_restarts_or_fails_pod() -> None:
    cs = [sandbox(), ctr("i1", "exited", 1)]
    a = compute_pod_actions(pod("a", inits=("i1",)), cs)
    assert a.next_init["name"] == "i1" and not a.kill_pod
    a = compute_pod_actions(pod("a", inits=("i1",), policy="Never"), cs)
    assert a.kill_pod and a.next_init is None


def test_terminating_pod_starts_nothing() -> None:
    p = pod("a")
    p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    a = compute_pod_actions(p, [sandbox(), ctr("a", "exited", 1)])
    assert not a.start
    assert not compute_pod_actions(p, []).create_sandbox


def test_restart_count_is_latest_plus_one() -> None:
    cs = [ctr("a", "exited", 1, restarts=0), ctr("a", "exited", 1, restarts=1)]
    assert restart_count_for("a", cs) == 2
    assert restart_count_for("b", cs) == 0


def test_gc_keeps_the_latest_dead_per_name() -> None:
    old = [ctr("a", "exited", 1, restarts=i) for i in range(3)]
    running = ctr("a", "running", restarts=3)
    sb_old, sb = sandbox("exited", 0), sandbox("running", 1)
    gone = containers_to_remove(pod("a"), [*old, running, sb_old, sb])
    assert {c.id for c in gone} == {old[0].id, old[1].id, sb_old.id}


def test_gc_keeps_newest_and_one_previous_dead() -> None:
    cs = [ctr("a", "exited", 1, restarts=i) for i in range(3)]
    assert [c.id for c in containers_to_remove(pod("a"), cs)] == [cs[0].id]


def test_parse_time_nanoseconds() -> None:
    diff = parse_time("2024-01-01T00:00:00.123456789Z") - parse_time("2024-01-01T00:00:00Z")
    assert abs(diff - 0.123456) < 1e-5
    assert parse_time("0001-01-01T00:00:00Z") == 0 and parse_time("") == 0


def _terminal(phase: str, policy: str) -> dict:
    p = pod("a", policy=policy)
    p["status"]["phase"] = phase
    return p


def test_terminal_pod_is_never_brought_back() -> None:
    # Docker lost the pod's containers (pruned, or the engine's data reset): a Failed or
    # Succeeded pod stays down whatever its restart policy says.
    for phase, policy in (("Failed", "Never"), ("Succeeded", "OnFailure"),
                          ("Failed", "OnFailure"), ("Succeeded", "Always")):
        a = compute_pod_actions(_terminal(phase, policy), [])
        assert not a.create_sandbox and not a.start and a.next_init is None, (phase, policy)
        a = compute_pod_actions(_terminal(phase, policy), [sandbox("exited")])
        assert not a.create_sandbox and not a.start, (phase, policy)


def test_terminal_pod_stops_what_still_runs() -> None:
    a = compute_pod_actions(_terminal("Failed", "Never"), [sandbox(), ctr("a", "exited", 1)])
    assert a.kill_pod and not a.start
    assert compute_pod_actions(_terminal("Succeeded", "OnFailure"),
                               [sandbox("exited"), ctr("a", "exited", 0)]).idle
