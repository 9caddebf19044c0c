"""coordination.k8s.io/v1 Lease: node heartbeats and leader election.

Kubelets renew a Lease per node (cheaper than rewriting Node status) and controller replicas
compete for one to elect a leader. Times are MicroTime strings (RFC 3339 with microseconds).
"""

from __future__ import annotations

from typing import ClassVar

from api.meta import Int32, K8sModel, TypedObject


class LeaseSpec(K8sModel):
    holder_identity: str | None = None
    lease_duration_seconds: Int32 | None = None
    acquire_time: str | None = None  # MicroTime
    renew_time: str | None = None  # MicroTime
    lease_transitions: Int32 | None = None


class Lease(TypedObject):
    API_VERSION: ClassVar[str] = "coordination.k8s.io/v1"
    KIND: ClassVar[str] = "Lease"

    spec: LeaseSpec | None = None
