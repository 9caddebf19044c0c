"""Loading `-f` arguments: files, directories, stdin, YAML streams, JSON, Lists, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tkctl.manifests import ManifestError, load, parse

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
spec:
  replicas: 3
"""
SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: web
"""


def names(items: list) -> list[str]:
    return [m.obj["metadata"]["name"] for m in items]


def test_multi_document_yaml_skips_empty_documents(tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(f"---\n{DEPLOY}---\n\n---\n# only a comment\n---\n{SVC}---\n")
    items = load([str(f)])
    assert names(items) == ["nginx-deployment", "web"]
    assert {m.source for m in items} == {str(f)}


def test_directory_reads_manifest_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(SVC)
    (tmp_path / "a.yaml").write_text(DEPLOY)
    (tmp_path / "notes.txt").write_text("not: a manifest")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.json").write_text(json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}))
    assert names(load([str(tmp_path)])) == ["nginx-deployment", "web"]
    assert names(load([str(tmp_path)], recursive=True)) == ["nginx-deployment", "web", "cm"]


def test_stdin() -> None:
    items = load(["-"], stdin=io.StringIO(DEPLOY))
    assert names(items) == ["nginx-deployment"]
    assert items[0].source == "STDIN"


def test_json_and_list_kinds_are_expanded() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}}]}
    assert names(parse(json.dumps(doc), "x.json")) == ["a", "b"]
    yaml_list = "apiVersion: v1\nkind: PodList\nitems:\n- {apiVersion: v1, kind: Pod, " \
                "metadata: {name: c}}\n"
    assert names(parse(yaml_list, "x.yaml")) == ["c"]


def test_bad_yaml_names_file_and_line() -> None:
    with pytest.raises(ManifestError) as e:
        parse("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels: a: b\n", "bad.yaml")
    msg = str(e.value)
    assert msg.startswith("error parsing bad.yaml: error converting YAML to JSON: yaml: line 5:")
    assert "\n" not in msg


def test_missing_path_and_missing_kind(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match='the path "nope.yaml" does not exist'):
        load(["nope.yaml"])
    with pytest.raises(ManifestError, match=r'error validating "m.yaml": .*kind not set'):
        parse("apiVersion: v1\nmetadata: {name: x}\n", "m.yaml")
    with pytest.raises(ManifestError, match=r"\[apiVersion not set, kind not set\]"):
        parse("metadata: {name: x}\n", "m.yaml")
    with pytest.raises(ManifestError, match="not an object"):
        parse("- just\n- a list\n", "m.yaml")


def test_empty_file_has_no_objects(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("---\n# nothing\n")
    assert load([str(f)]) == []
