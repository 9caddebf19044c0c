"""Content negotiation: what a body is (Content-Type) and what the client wants back (Accept).

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io,application/json` to print a
table, client-go's metadata informers for `...;as=PartialObjectMetadataList`, and the
discovery client for `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`,
each with a plain `application/json` fallback. Bodies come as JSON or YAML (`kubectl create
--raw` and curl users send YAML) or Kubernetes protobuf (kubectl's typed clientset: `create
configmap`, `auth can-i`, ...; see api.protobuf), patches in one of four patch media types. Pure:
no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from api import decoding, errors, protobuf

# Patch media types → the registry's patch types.
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}
_BODY_TYPES = ("application/json", "application/yaml", "*/*", "")


@dataclass(frozen=True)
class MediaType:
    """One entry of an Accept header: `type/subtype;as=Table;g=meta.k8s.io;v=v1`."""

    mime: str
    params: dict[str, str]

    @property
    def as_kind(self) -> str:
        return self.params.get("as", "")


def parse_accept(header: str) -> list[MediaType]:
    out = []
    for item in (header or "").split(","):
        fields = [f.strip() for f in item.split(";")]
        if not fields[0]:
            continue
        params = {}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        if params.get("q") == "0":
            continue
        out.append(MediaType(fields[0].lower(), params))
    return out or [MediaType("*/*", {})]


def _json_like(mime: str) -> bool:
    return mime in ("application/json", "application/*", "*/*")


def choose(header: str, allowed: tuple[str, ...] = ()) -> str:
    """The representation to answer in: one of `allowed` (the `as=` kinds this endpoint can
    produce in group meta.k8s.io, e.g. "Table") or "" for the plain JSON object. NotAcceptable
    when the client takes neither (protobuf only, say)."""
    for mt in parse_accept(header):
        if not _json_like(mt.mime):
            continue
        kind = mt.as_kind
        if not kind:
            return ""
        group = mt.params.get("g", "")
        if kind in allowed and group in ("meta.k8s.io", "apidiscovery.k8s.io") and \
                mt.params.get("v", "v1") in ("v1", "v2", "v2beta1"):
            return kind
    raise errors.NotAcceptable(
        message=f"only the following media types are accepted: application/json, "
        f"application/yaml (with as={','.join(allowed) or 'nothing'}); got {header!r}")


def accept_param(header: str, kind: str, name: str, default: str = "") -> str:
    """A parameter (`v` of `as=APIGroupDiscoveryList`) of the first Accept entry of `kind`."""
    for mt in parse_accept(header):
        if mt.as_kind == kind:
            return mt.params.get(name, default)
    return default


def mime_of(content_type: str) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def decode_body(raw: bytes, content_type: str) -> bytes:
    """A request body as the registry's JSON bytes: JSON passes through, YAML and protobuf are
    converted. A malformed body or an unknown Content-Type is a clean 4xx naming what is wrong."""
    mime = mime_of(content_type)
    if mime == protobuf.MEDIA_TYPE:
        return json.dumps(protobuf.decode(raw)).encode()
    if mime not in _BODY_TYPES:
        raise errors.UnsupportedMediaType(
            message=f'the body of the request was in an unknown format - accepted media types '
            f'include: application/json, application/yaml, {protobuf.MEDIA_TYPE} '
            f'(got "{mime}")')
    if mime == "application/yaml":
        return json.dumps(load_yaml(raw)).encode()
    try:
        # Parsed later (the request handler, or DeleteOptions here); bounded now, so that no
        # parse of it meets a nesting beyond Python's recursion.
        decoding.check_json_depth(raw)
    except decoding.LimitError as e:
        raise errors.BadRequest(message=f"the body is not valid JSON: {e}") from None
    return raw


def load_yaml(raw: bytes) -> Any:
    """A YAML (or JSON) body as JSON data: api.decoding's bounded loader (depth, aliases,
    only what JSON can hold); BadRequest saying what is wrong and where otherwise."""
    try:
        data = decoding.load_yaml(raw)
    except yaml.YAMLError as e:
        problem, _ = decoding.yaml_problem(e)
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise errors.BadRequest(message=f"the body is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise errors.BadRequest(message="the body must be a YAML mapping (an object), not "
                                f"{decoding.json_type(data)}")
    return data


def patch_type(content_type: str) -> str:
    mime = mime_of(content_type)
    kind = PATCH_TYPES.get(mime)
    if kind is None:
        raise errors.UnsupportedMediaType(
            message=f'the body of the request was in an unknown format - accepted media types '
            f'include: {", ".join(t for t in PATCH_TYPES if "cbor" not in t)} '
            f'(got "{mime}")')
    return kind
