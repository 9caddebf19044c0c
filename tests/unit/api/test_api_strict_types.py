"""JSON types are not coerced: Kubernetes rejects a string where an int belongs, and so do we."""

from __future__ import annotations

import pytest

from api import errors
from api.codec import decode
from api.resources import RESOURCES


def pod(port: object = 80, label: object = "web", tty: object = False) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": label}},
            "spec": {"containers": [{"name": "c", "image": "i", "tty": tty,
                                     "ports": [{"containerPort": port}]}]}}


def test_well_typed_pod_decodes() -> None:
    obj, warnings = decode(RESOURCES["pods"], pod())
    assert obj.to_dict()["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    assert warnings == []


@pytest.mark.parametrize(("body", "field"), [
    (pod(port="80"), "spec.containers[0].ports[0].containerPort"),
    (pod(port=True), "spec.containers[0].ports[0].containerPort"),
    (pod(label=1), "metadata.labels"),
    (pod(tty="true"), "spec.containers[0].tty"),
])
def test_wrong_json_types_are_invalid(body: dict[str, object], field: str) -> None:
    with pytest.raises(errors.Invalid) as e:
        decode(RESOURCES["pods"], body)
    assert any(c.field.startswith(field) for c in e.value.causes), e.value.causes
