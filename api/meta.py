"""Object metadata and the base every Kubernetes-shaped model shares.

Every kind carries `apiVersion`, `kind` and `metadata`; this module holds those, with Kubernetes'
camelCase field names, so an upstream manifest maps onto our models field for field. Models accept
snake_case in Python (`ObjectMeta(owner_references=...)`) and camelCase from JSON, and always
serialize camelCase with unset optional fields left out (Kubernetes' `omitempty`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, core_schema

# --------------------------------------------------------------------------------------------
# Integers with upstream's Go types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoInt:
    """The Go integer type an upstream field has (`int32`, `int64`), as pydantic metadata.

    JSON numbers have no size, Python ints neither; Go's decoder refuses a number that does not
    fit the field (`json: cannot unmarshal number 1180591620717411303424 into Go struct field
    DeploymentSpec.spec.replicas of type int32`). Every integer field of every model is one of
    the `Int32` / `Int64` below, so that `replicas: 2^70` is refused at decode, naming the
    field, on every path into the models (JSON, YAML and protobuf bodies, both fronts), instead
    of reaching a controller that tries to create that many pods. The OpenAPI documents and the
    protobuf table read the same marker.
    """

    name: str
    min: int
    max: int

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: int) -> int:
        if not self.min <= value <= self.max:
            # The codec words it as a field error: `spec.replicas: Invalid value:
            # 1180591620717411303424: must be within the int32 range`.
            raise PydanticCustomError("go_int_range", "must be within the {go_type} range",
                                      {"go_type": self.name})
        return value


INT32 = GoInt("int32", -(2**31), 2**31 - 1)
INT64 = GoInt("int64", -(2**63), 2**63 - 1)
Int32 = Annotated[int, INT32]
Int64 = Annotated[int, INT64]
# intstr.IntOrString: its integer is an int32 (maxSurge, targetPort, probe ports).
IntOrString = Int32 | str


def go_int(metadata: Any) -> GoInt | None:
    """The GoInt among a field's or an `Annotated` type's metadata, if any."""
    return next((m for m in metadata if isinstance(m, GoInt)), None)


class K8sModel(BaseModel):
    """Base of every model: camelCase on the wire, snake_case in Python, unknown fields dropped.

    Unknown fields are dropped rather than rejected, as Kubernetes does by default; the apiserver
    reports them back as warnings (see `api.codec.unknown_fields`).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_assignment=False,
        # Like Kubernetes' JSON decoding: "80" is not an int, 1 is not a string, "true" not a bool.
        strict=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The Kubernetes JSON form: camelCase keys, None fields omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class OwnerReference(K8sModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ManagedFieldsEntry(K8sModel):
    """Which fields one manager owns (server-side apply; api/apply.py)."""

    manager: str | None = None
    operation: str | None = None
    api_version: str | None = None
    time: str | None = None
    fields_type: str | None = None
    fields_v1: dict[str, Any] | None = None
    subresource: str | None = None


class ObjectMeta(K8sModel):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: Int64 | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: Int64 | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[ManagedFieldsEntry] | None = None


class ListMeta(K8sModel):
    resource_version: str | None = None
    # `continue` is a Python keyword, hence the explicit alias.
    continue_: str | None = Field(default=None, alias="continue")
    remaining_item_count: Int64 | None = None


class TypedObject(K8sModel):
    """A top-level object. Subclasses set API_VERSION and KIND and add spec/status."""

    API_VERSION: ClassVar[str] = ""
    KIND: ClassVar[str] = ""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    def model_post_init(self, __context: Any) -> None:
        # apiVersion/kind are implied by the class; fill them so to_dict() is always complete.
        if self.api_version is None and self.API_VERSION:
            self.api_version = self.API_VERSION
        if self.kind is None and self.KIND:
            self.kind = self.KIND

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls.model_validate(data)

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""

    @property
    def key(self) -> str:
        """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKey)."""
        return f"{self.metadata.namespace}/{self.name}" if self.metadata.namespace else self.name


def format_rfc3339(when: _dt.datetime) -> str:
    """A time as Kubernetes writes timestamps: RFC 3339, UTC, second precision."""
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps."""
    return format_rfc3339(_dt.datetime.now(_dt.UTC))


def parse_rfc3339(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def object_key(obj: dict[str, Any]) -> str:
    """`namespace/name` of a JSON object, or `name` when cluster-scoped."""
    md = obj.get("metadata") or {}
    ns, name = md.get("namespace"), md.get("name", "")
    return f"{ns}/{name}" if ns else name


class LabelSelectorRequirement(K8sModel):
    """One `matchExpressions` entry: key, operator (In, NotIn, Exists, DoesNotExist), values."""

    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(K8sModel):
    """metav1.LabelSelector, the structured selector of apps/v1 kinds.

    A None selector selects nothing; an empty one (no matchLabels, no matchExpressions) selects
    everything. `api.selectors.from_label_selector` turns it into a matcher.
    """

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None
