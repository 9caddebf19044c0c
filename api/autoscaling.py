"""autoscaling/v1 Scale: the body of the `scale` subresource (`kubectl scale`).

It lets a client change only the replica count of a Deployment, ReplicaSet or
ReplicationController without knowing its kind; status.selector is the serialized label selector.
"""

from __future__ import annotations

from typing import ClassVar

from api.meta import Int32, K8sModel, TypedObject


class ScaleSpec(K8sModel):
    replicas: Int32 | None = None


class ScaleStatus(K8sModel):
    replicas: Int32 = 0
    selector: str | None = None


class Scale(TypedObject):
    API_VERSION: ClassVar[str] = "autoscaling/v1"
    KIND: ClassVar[str] = "Scale"

    spec: ScaleSpec | None = None
    status: ScaleStatus | None = None
