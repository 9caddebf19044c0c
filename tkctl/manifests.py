"""Reading `-f` arguments into objects: files, directories, `-` (stdin), YAML streams, JSON, Lists.

Upstream manifests must load unchanged, so this follows kubectl's resource builder: a directory
contributes its `.json`, `.yaml` and `.yml` files in name order (recursively with `-R`),
multi-document YAML yields one object per non-empty document, and a `*List` kind is expanded into
its items. Every problem becomes a `ManifestError` whose message names the file (and line, for
syntax errors) in kubectl's words, so the user sees one line, not a traceback.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

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
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None  # might still be YAML flow style; let the YAML parser report
    return doc if isinstance(doc, list) else [doc]


def _yaml_docs(text: str, source: str) -> list[Any]:
    try:
        return list(yaml.safe_load_all(text))
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
        raise ManifestError(
            f'error validating "{source}": error validating data: document {index} is a '
            f"{type(doc).__name__}, not an object"
        )
    missing = [f"{k} not set" for k in ("apiVersion", "kind") if not doc.get(k)]
    if missing:
        what = missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]"
        raise ManifestError(f'error validating "{source}": error validating data: {what}')
    kind = str(doc["kind"])
    if kind.endswith("List") and isinstance(doc.get("items"), list):
        out: list[Manifest] = []
        for item in doc["items"]:
            out.extend(_objects(item, source, index))
        return out
    return [Manifest(doc, source)]
