"""Store / Indexer: keys, indexes kept exact through add, update, delete and replace."""

from __future__ import annotations

import random

import pytest

from api.core import Pod
from api.selectors import parse_label_selector
from client.store import (
    NAMESPACE_INDEX,
    Lister,
    Store,
    field_index,
    meta_namespace_key,
    namespace_index,
    split_meta_namespace_key,
)

NODE = "node"


def pod(name: str, ns: str = "default", node: str | None = None, rv: str = "1",
        labels: dict[str, str] | None = None) -> Pod:
    return Pod.model_validate({
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                     "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": node},
    })


def new_store() -> Store[Pod]:
    return Store(indexers={NAMESPACE_INDEX: namespace_index, NODE: field_index("spec.nodeName")})


def test_keys() -> None:
    assert meta_namespace_key(pod("a", "ns1")) == "ns1/a"
    assert split_meta_namespace_key("ns1/a") == ("ns1", "a")
    assert split_meta_namespace_key("node-1") == ("", "node-1")
    with pytest.raises(ValueError):
        split_meta_namespace_key("a/b/c")


def test_add_get_update_delete() -> None:
    s = new_store()
    s.add(pod("a", node="n1"))
    s.add(pod("b", node="n1"))
    assert s.get("default/a") is not None and len(s) == 2
    assert sorted(s.list_keys()) == ["default/a", "default/b"]
    assert [p.name for p in s.by_index(NODE, "n1")] == ["a", "b"]

    s.update(pod("a", node="n2", rv="2"))  # moved to another node
    assert [p.name for p in s.by_index(NODE, "n1")] == ["b"]
    assert [p.name for p in s.by_index(NODE, "n2")] == ["a"]
    assert s.get(pod("a")).metadata.resource_version == "2"  # type: ignore[union-attr]

    s.delete(pod("b"))
    assert s.by_index(NODE, "n1") == []
    assert s.list_index_func_values(NODE) == ["n2"], "empty index values must be dropped"
    s.delete(pod("b"))  # absent: no-op
    assert s.delete_key("default/nope") is None


def test_unset_field_indexes_under_empty_string() -> None:
    s = new_store()
    s.add(pod("pending"))
    assert [p.name for p in s.by_index(NODE, "")] == ["pending"]


def test_replace_rebuilds_indexes_and_records_rv() -> None:
    s = new_store()
    s.add(pod("old", node="n1"))
    s.replace([pod("x", "ns2", node="n3"), pod("y", node="n3")], "42")
    assert s.resource_version == "42"
    assert s.get("default/old") is None
    assert s.by_index(NODE, "n1") == []
    assert sorted(p.name for p in s.by_index(NODE, "n3")) == ["x", "y"]
    assert [p.name for p in s.by_index(NAMESPACE_INDEX, "ns2")] == ["x"]


def test_add_indexers_later_indexes_existing_objects_and_refuses_clashes() -> None:
    s: Store[Pod] = Store()
    s.add(pod("a", node="n1"))
    s.add_indexers({NODE: field_index("spec.nodeName")})
    assert [p.name for p in s.by_index(NODE, "n1")] == ["a"]
    with pytest.raises(ValueError):
        s.add_indexers({NODE: namespace_index})
    with pytest.raises(KeyError):
        s.by_index("nope", "x")


def test_index_returns_objects_sharing_a_value() -> None:
    s = new_store()
    s.add(pod("a", node="n1"))
    s.add(pod("b", node="n1"))
    s.add(pod("c", node="n2"))
    assert [p.name for p in s.index(NODE, pod("z", node="n1"))] == ["a", "b"]


def test_indexes_stay_exact_under_random_operations() -> None:
    """Property: after any sequence of operations each index equals one rebuilt from scratch."""
    rng = random.Random(3)
    s = new_store()
    for step in range(3000):
        name, node = f"p{rng.randint(0, 20)}", rng.choice(["n1", "n2", "n3", None])
        ns = rng.choice(["a", "b"])
        op = rng.random()
        if op < 0.6:
            s.add(pod(name, ns, node, rv=str(step)))
        elif op < 0.95:
            s.delete_key(f"{ns}/{name}")
        else:
            s.replace([pod(f"r{i}", ns, node) for i in range(rng.randint(0, 5))], str(step))
        if step % 100 == 0:
            fresh = new_store()
            fresh.replace(s.list())
            for index in (NODE, NAMESPACE_INDEX):
                assert s.list_index_func_values(index) == fresh.list_index_func_values(index)
                for v in fresh.list_index_func_values(index):
                    assert s.index_keys(index, v) == fresh.index_keys(index, v)


def test_lister_filters_by_namespace_selector_and_predicate() -> None:
    s = new_store()
    s.add(pod("a", "ns1", labels={"app": "web"}))
    s.add(pod("b", "ns1", labels={"app": "db"}))
    s.add(pod("c", "ns2", labels={"app": "web"}, node="n1"))
    lister = Lister(s)
    assert sorted(p.name for p in lister.list()) == ["a", "b", "c"]
    assert sorted(p.name for p in lister.list("ns1")) == ["a", "b"]
    web = parse_label_selector("app=web")
    assert sorted(p.name for p in lister.list(selector=web)) == ["a", "c"]
    assert [p.name for p in lister.list("ns2", web)] == ["c"]
    assert [p.name for p in lister.list(predicate=lambda p: bool(p.spec and p.spec.node_name))] \
        == ["c"]
    assert lister.get("a", "ns1") is not None
    assert lister.get("a", "ns2") is None
    # Without a namespace index the lister still filters correctly.
    plain: Store[Pod] = Store()
    plain.replace(s.list())
    assert sorted(p.name for p in Lister(plain).list("ns1")) == ["a", "b"]
