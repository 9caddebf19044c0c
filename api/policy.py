"""policy/v1 Eviction: the body of the `pods/eviction` subresource (`kubectl drain`).

An eviction is a delete that asks first: upstream checks PodDisruptionBudgets before deleting
the pod with the eviction's deleteOptions. tinykube has no PodDisruptionBudgets (see
docs/deviations.md), so an eviction is a graceful delete with those options.
"""

from __future__ import annotations

from typing import ClassVar

from api.meta import Int64, K8sModel, TypedObject


class Preconditions(K8sModel):
    uid: str | None = None
    resource_version: str | None = None


class DeleteOptions(K8sModel):
    grace_period_seconds: Int64 | None = None
    preconditions: Preconditions | None = None
    propagation_policy: str | None = None
    dry_run: list[str] | None = None


class Eviction(TypedObject):
    API_VERSION: ClassVar[str] = "policy/v1"
    KIND: ClassVar[str] = "Eviction"

    delete_options: DeleteOptions | None = None
