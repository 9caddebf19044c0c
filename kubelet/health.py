"""Whether the container runtime is healthy enough for the node to be Ready: judged over
minutes, as upstream's kubelet judges it, never on one ping.

Why this exists: the Ready condition drives eviction (the node lifecycle controller taints a
NotReady node and evicts its pods). The kubelet used to call its node NotReady as soon as one
Docker ping took longer than 5 s; on a loaded host that flapped nodes NotReady again and again
and evicted healthy pods (issue 20). Upstream's kubelet never looks at a single call:

- `runtimeState` (pkg/kubelet/runtime.go): `updateRuntimeUp` asks the runtime every 5 s, each
  request bounded by `--runtime-request-timeout` (2 min); the runtime is "down" only when no
  check has succeeded for `maxWaitForContainerRuntime` (30 s). A failed or slow check in
  between changes nothing; a runtime hung for good is still caught, because the judgement is
  the age of the last success, not the outcome of the call in flight.
- the PLEG health check (pkg/kubelet/pleg/generic.go `Healthy`): unhealthy only when the
  relist has not completed for `RelistThreshold` (3 min): "PLEG is not healthy: pleg was last
  seen active 3m0.5s ago; threshold is 3m0s".

`RuntimeHealth` is that judgement alone: no I/O, a `Clock` (client/workqueue.py) so tests drive
it with `FakeClock.advance()`. `NodeManager` (kubelet/node.py) feeds it the outcome of its
runtime checks and reads `errors()` into the Ready condition; the Kubelet's PLEG relist loop
reports each successful relist.

One deliberate difference: upstream says "pleg has yet to be successful" from the moment the
kubelet starts until its first relist. Here the PLEG's first relist waits for the pod informer
(adoption after a restart needs the pods first), so the PLEG is judged from when it starts
(`pleg_started`), and "yet to be successful" only once a whole threshold has passed without a
relist: a node is not reported NotReady for the seconds its informers take to sync.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from client.workqueue import Clock, RealClock

log = logging.getLogger("kubelet.health")

# Upstream's values (see the module docstring); tk-kubelet's flags default to them.
RUNTIME_REQUEST_TIMEOUT = 120.0  # --runtime-request-timeout
RUNTIME_DOWN_THRESHOLD = 30.0    # maxWaitForContainerRuntime
PLEG_RELIST_THRESHOLD = 180.0    # genericPlegRelistThreshold
RUNTIME_CHECK_PERIOD = 5.0       # updateRuntimeUp's period

RUNTIME_DOWN = "container runtime is down"
RUNTIME_NOT_CHECKED = "container runtime status check may not have completed yet"


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it, to the millisecond: 3m0s, 3m0.5s, 1h2m3s,
    250ms, 0s (upstream's PLEG message prints the elapsed time this way)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, frac = divmod(rest, 1000)
    sec = f"{s}.{frac:03d}".rstrip("0") + "s" if frac else f"{s}s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


@dataclass(frozen=True)
class HealthThresholds:
    """How patient the judgement is; upstream's defaults."""

    runtime_request_timeout: float = RUNTIME_REQUEST_TIMEOUT
    runtime_down_after: float = RUNTIME_DOWN_THRESHOLD
    pleg_relist_threshold: float = PLEG_RELIST_THRESHOLD
    runtime_check_period: float = RUNTIME_CHECK_PERIOD

    def __post_init__(self) -> None:
        for name in ("runtime_request_timeout", "runtime_down_after", "pleg_relist_threshold",
                     "runtime_check_period"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


class RuntimeHealth:
    """upstream's runtimeState plus the PLEG health check, over a clock.

    Invariants: a check's outcome only moves `last_sync` forward (a success) or counts a
    failure; `errors()` depends only on the ages of the last success and the last relist, so
    no single check, however slow or failed, can make the node NotReady unless the runtime
    has not answered for longer than `runtime_down_after`.
    """

    def __init__(self, thresholds: HealthThresholds | None = None, *,
                 clock: Clock | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.clock: Clock = clock or RealClock()
        self.last_sync: float | None = None      # the last successful runtime check
        self.checked = False                     # whether any check has finished
        self.failures = 0                        # consecutive failed checks
        self.pleg_start: float | None = None     # when the PLEG started (None: no PLEG)
        self.last_relist: float | None = None    # the last successful relist

    # --- what the checks report -----------------------------------------------------------

    def runtime_ok(self) -> None:
        """A runtime check succeeded now."""
        if self.failures:
            log.info("container runtime answers again (after %d failed check%s)",
                     self.failures, "" if self.failures == 1 else "s")
        self.checked = True
        self.failures = 0
        self.last_sync = self.clock.now()

    def runtime_failed(self, error: BaseException | str) -> None:
        """A runtime check failed or timed out now. Logged once per streak of failures (the
        Ready condition says it again if the streak lasts long enough to matter)."""
        self.checked = True
        self.failures += 1
        if self.failures == 1:
            log.warning("container runtime check failed: %s (the node is NotReady only if it "
                        "does not answer for %s)", error,
                        go_duration(self.thresholds.runtime_down_after))
        else:
            log.debug("container runtime check failed again (%d): %s", self.failures, error)

    def pleg_started(self) -> None:
        """The PLEG starts relisting: from now on it is judged."""
        if self.pleg_start is None:
            self.pleg_start = self.clock.now()

    def relisted(self) -> None:
        """The PLEG completed a relist now."""
        self.pleg_started()
        self.last_relist = self.clock.now()

    # --- the judgement --------------------------------------------------------------------

    def runtime_errors(self) -> list[str]:
        """The runtime's part of the Ready condition: empty when healthy (upstream's
        runtimeState.runtimeErrors)."""
        now = self.clock.now()
        out: list[str] = []
        if self.last_sync is None:
            # Upstream says "may not have completed yet" until the first success; once a check
            # has actually failed, saying what we know is more useful.
            out.append(RUNTIME_DOWN if self.checked else RUNTIME_NOT_CHECKED)
        elif now - self.last_sync > self.thresholds.runtime_down_after:
            out.append(RUNTIME_DOWN)
        pleg = self.pleg_error(now)
        if pleg is not None:
            out.append(f"PLEG is not healthy: {pleg}")
        return out

    def pleg_error(self, now: float) -> str | None:
        threshold = self.thresholds.pleg_relist_threshold
        if self.pleg_start is None:
            return None
        if self.last_relist is None:
            if now - self.pleg_start > threshold:
                return "pleg has yet to be successful"
            return None
        elapsed = now - self.last_relist
        if elapsed > threshold:
            return (f"pleg was last seen active {go_duration(elapsed)} ago; threshold is "
                    f"{go_duration(threshold)}")
        return None
