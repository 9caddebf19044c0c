"""Reading `-f` arguments into objects: files, directories, `-` (stdin), YAML streams, JSON, Lists.

Upstream manifests must load unchanged, so this follows kubectl's resource builder: a directory
contributes its `.json`, `.yaml` and `.yml` files in name order (recursively with `-R`),
multi-document YAML yields one object per non-empty document, and a `*List` kind is expanded into
its items. Every problem becomes a `ManifestError` whose message names the file (and line, for
syntax errors) in kubectl's words, so the user sees one line, not a traceback.

A manifest is untrusted input like any request body (a file from the internet, a colleague's
`kubectl get -o yaml`): it is read with api.decoding's bounded decoders, so an alias bomb or a
50,000-deep nesting is one line of error instead of gigabytes or a RecursionError, and its
`metadata` is checked to be an object before anything looks inside it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from api import decoding

EXTENSIONS = (".json", ".yaml", ".yml")
STDIN = "STDIN"


class ManifestError(Exception):
    """A manifest that cannot be read; str() is the message without the `error: ` prefix."""


@dataclass
class Manifest:
    """One object to send, and where it came from (for `error when creating "x.yaml": ...`)."""

    obj: dict[str, Any]
    source: str


def load(
    paths: list[str], *, recursive: bool = False, stdin: TextIO | None = None
) -> list[Manifest]:
    """All objects named by the `-f` values, in order."""
    out: list[Manifest] = []
    for path in paths:
        for source, text in _read(path, recursive, stdin):
            out.extend(parse(text, source))
    return out


def _read(path: str, recursive: bool, stdin: TextIO | None) -> list[tuple[str, str]]:
    if path == "-":
        return [(STDIN, (stdin or sys.stdin).read())]
    if path.startswith(("http://", "https://")):
        raise ManifestError(f'reading manifests from URLs is not supported: "{path}"')
    p = Path(path)
    if not p.exists():
        raise ManifestError(f'the path "{path}" does not exist')
    if p.is_dir():
        return [(str(f), _read_file(f)) for f in _dir_files(p, recursive)]
    return [(path, _read_file(p))]


def _read_file(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"error reading {p}: {e}") from None


def _dir_files(root: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(f for f in root.glob(pattern) if f.is_file() and f.suffix in EXTENSIONS)


def parse(text: str, source: str) -> list[Manifest]:
    """The objects in one file's text: a JSON document or a stream of YAML documents."""
    docs = _json_docs(text, source) if text.lstrip().startswith(("{", "[")) else None
    if docs is None:
        docs = _yaml_docs(text, source)
    out: list[Manifest] = []
    for index, doc in enumerate(docs, 1):
        if doc is None:
            continue
        out.extend(_objects(doc, source, index))
    return out


def _json_docs(text: str, source: str) -> list[Any] | None:
    try:
        doc = decoding.loads_json(text)
    except decoding.LimitError as e:
        raise ManifestError(f"error parsing {source}: {e}") from None
    except decoding.DecodeError:
        return None  # might still be YAML flow style; let the YAML parser report
    return doc if isinstance(doc, list) else [doc]


def _yaml_docs(text: str, source: str) -> list[Any]:
    try:
        return decoding.load_yaml_all(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = e.problem or e.context or "invalid YAML"
        raise ManifestError(
            f"error parsing {source}: error converting YAML to JSON: yaml: {line}{problem}"
        ) from None
    except yaml.YAMLError as e:
        raise ManifestError(f"error parsing {source}: {e}") from None


def _objects(doc: Any, source: str, index: int) -> list[Manifest]:
    if not isinstance(doc, dict):
        what = decoding.json_type(doc)
        raise ManifestError(
            f'error validating "{source}": error validating data: document {index} is '
            f"{'an' if what[0] in 'aeiou' else 'a'} {what}, not an object"
        )
    missing = [f"{k} not set" for k in ("apiVersion", "kind") if not doc.get(k)]
    if missing:
        what = missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]"
        raise ManifestError(f'error validating "{source}": error validating data: {what}')
    for key in ("apiVersion", "kind"):
        if not isinstance(doc[key], str):
            raise ManifestError(_accessor_error(source, key, doc[key], "a string"))
    if "metadata" in doc and doc["metadata"] is None:
        # `metadata:` with nothing under it: null, which upstream's decoders take as absent.
        doc = {k: v for k, v in doc.items() if k != "metadata"}
    md = doc.get("metadata", {})
    if not isinstance(md, dict):
        raise ManifestError(_accessor_error(source, "metadata", md, "an object"))
    for key in ("name", "generateName", "namespace"):
        if md.get(key) is not None and not isinstance(md[key], str):
            raise ManifestError(_accessor_error(source, f"metadata.{key}", md[key], "a string"))
    kind = doc["kind"]
    if kind.endswith("List") and isinstance(doc.get("items"), list):
        out: list[Manifest] = []
        for item in doc["items"]:
            out.extend(_objects(item, source, index))
        return out
    return [Manifest(doc, source)]


def _accessor_error(source: str, field: str, value: Any, want: str) -> str:
    """kubectl's words when a field it reads has the wrong type: `unable to decode "x.yaml":
    .metadata accessor error: 5 is of the type number, expected an object`."""
    shown = value if isinstance(value, str | int | float | bool) and len(str(value)) <= 64 \
        else decoding.json_type(value)
    return (f'unable to decode "{source}": .{field} accessor error: {shown} is of the type '
            f"{decoding.json_type(value)}, expected {want}")
