"""tk-scheduler: flags → Scheduler, under the `kube-scheduler` lease in kube-system."""

from __future__ import annotations

import argparse
import sys

from client.events import EventRecorder
from client.flags import (
    Parser,
    add_client_flags,
    add_leader_election_flags,
    check_leader_election,
    duration,
    make_client,
    run_elected_component,
    run_main,
    setup_logging,
)
from scheduler.plugins import LEAST_ALLOCATED, SCORING_STRATEGIES
from scheduler.queue import DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF
from scheduler.scheduler import DEFAULT_SCHEDULER_NAME, Scheduler

PROG = "tk-scheduler"
# Events are one per scheduled pod: a burst of thousands must queue, not be dropped.
EVENT_QUEUE = 20_000


def parse(argv: list[str]) -> tuple[argparse.Namespace, Parser]:
    p = Parser(prog=PROG, description="Assigns pending pods to nodes.")
    add_client_flags(p)
    add_leader_election_flags(p, default_name="kube-scheduler")
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help="schedule only pods whose spec.schedulerName is this")
    p.add_argument("--scoring", default=LEAST_ALLOCATED, choices=SCORING_STRATEGIES,
                   help="NodeResourcesFit scoring strategy (default LeastAllocated)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0, metavar="PERCENT",
                   help="stop filtering once this share of nodes fits (0: adaptive, as upstream)")
    p.add_argument("--pod-initial-backoff", type=duration, default=DEFAULT_INITIAL_BACKOFF,
                   metavar="DURATION", help="first retry delay of an unschedulable pod")
    p.add_argument("--pod-max-backoff", type=duration, default=DEFAULT_MAX_BACKOFF,
                   metavar="DURATION", help="longest retry delay of an unschedulable pod")
    a = p.parse_args(argv)
    check_leader_election(p, a)
    if not 0 <= a.percentage_of_nodes_to_score <= 100:
        p.error("--percentage-of-nodes-to-score: must be between 0 and 100 "
                f"(got {a.percentage_of_nodes_to_score})")
    if a.pod_initial_backoff <= 0:
        p.error("--pod-initial-backoff: must be greater than 0")
    if a.pod_max_backoff < a.pod_initial_backoff:
        p.error("--pod-max-backoff: must not be less than --pod-initial-backoff")
    if not a.scheduler_name:
        p.error("--scheduler-name: must not be empty")
    return a, p


async def _run(a: argparse.Namespace, p: Parser) -> None:
    client = make_client(p, a, PROG)
    recorder = EventRecorder(client, a.scheduler_name, max_queue=EVENT_QUEUE)

    async def work() -> None:
        sched = Scheduler(
            client, recorder, scheduler_name=a.scheduler_name, scoring=a.scoring,
            percentage_of_nodes_to_score=a.percentage_of_nodes_to_score,
            initial_backoff=a.pod_initial_backoff, max_backoff=a.pod_max_backoff)
        await sched.run()

    await run_elected_component(client, a, work, PROG, recorder.close)


def main() -> None:
    a, p = parse(sys.argv[1:])
    setup_logging(a.verbose)
    run_main(_run(a, p), PROG)


if __name__ == "__main__":
    main()
