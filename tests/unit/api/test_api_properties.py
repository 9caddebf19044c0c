"""Property tests: arbitrary input never escapes as anything but an ApiError."""

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.codec import decode
from api.defaults import apply_defaults
from api.errors import ApiError, BadRequest
from api.resources import RESOURCES
from api.selectors import parse_field_selector, parse_label_selector
from api.validation import validate

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

VALID_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": "1"}},
                        "livenessProbe": {"httpGet": {"port": 80}}}],
        "volumes": [{"name": "v", "emptyDir": {}}],
        "tolerations": [{"key": "a", "operator": "Exists"}],
    },
}
VALID_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": VALID_POD["spec"]},
    },
}
RESOURCE_NAMES = sorted(RESOURCES)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _run(resource: str, data: object, old: object = None) -> None:
    info = RESOURCES[resource]
    try:
        obj, _ = decode(info, data)
        apply_defaults(obj)
        old_obj = None
        if old is not None:
            old_obj, _ = decode(info, old)
            apply_defaults(old_obj)
        causes = validate(info.kind, obj, old_obj)
        for c in causes:
            assert isinstance(c.field, str) and isinstance(c.message, str)
        obj.to_dict()
    except ApiError:
        pass


@SETTINGS
@given(resource=st.sampled_from(RESOURCE_NAMES), data=JSON)
def test_random_json_only_api_errors(resource, data) -> None:
    _run(resource, data)


def _containers(n: Any) -> list[Any]:
    if isinstance(n, dict):
        return [n, *(c for v in n.values() for c in _containers(v))]
    if isinstance(n, list):
        return [n, *(c for v in n for c in _containers(v))]
    return []


@st.composite
def mutated(draw, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with a few random values replaced, keys added or removed anywhere in the tree."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        # Pick one container (dict/list) anywhere in the tree to mutate.
        nodes = _containers(doc)
        node = draw(st.sampled_from(nodes))
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(JSON)
            elif action == "delete":
                del node[key]
            else:
                node[draw(st.text(max_size=8))] = draw(JSON)
        elif isinstance(node, list) and node:
            i = draw(st.integers(0, len(node) - 1))
            node[i] = draw(JSON)
    return doc


@SETTINGS
@given(data=mutated(VALID_POD))
def test_mutated_pod_only_api_errors(data) -> None:
    _run("pods", data)
    _run("pods", data, old=VALID_POD)


@SETTINGS
@given(data=mutated(VALID_DEPLOYMENT))
def test_mutated_deployment_only_api_errors(data) -> None:
    _run("deployments", data)
    _run("deployments", data, old=VALID_DEPLOYMENT)


SELECTOR_ALPHABET = st.sampled_from(list("ab=!(),<> \\in-./_x9tno"))


@settings(max_examples=200, deadline=None)
@given(s=st.text(SELECTOR_ALPHABET, max_size=20) | st.text(max_size=20))
def test_label_selector_parse_raises_only_bad_request(s) -> None:
    try:
        sel = parse_label_selector(s)
    except BadRequest:
        return
    # Whatever parses must round-trip through its canonical form.
    assert parse_label_selector(str(sel)) == sel
    sel.matches({"a": "b"})


@settings(max_examples=200, deadline=None)
@given(s=st.text(SELECTOR_ALPHABET, max_size=20) | st.text(max_size=20))
def test_field_selector_parse_raises_only_bad_request(s) -> None:
    try:
        sel = parse_field_selector(s, frozenset({"a", "ab", "a.b"}))
    except BadRequest:
        return
    assert parse_field_selector(str(sel), frozenset({"a", "ab", "a.b"})) == sel
    sel.matches({"a": {"b": "x"}})


KEY = st.from_regex(r"\A([a-z]{1,5}\.[a-z]{1,4}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?\Z")
VALUE = st.from_regex(r"\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?)?\Z")


@st.composite
def requirement(draw) -> str:
    key = draw(KEY)
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]))
    if op in ("in", "notin"):
        # Empty values inside parentheses have quirks upstream ("(,,)" is a syntax error).
        vals = draw(st.lists(VALUE.filter(bool), min_size=1, max_size=3))
        return f"{key} {op} ({','.join(vals)})"
    if op == "exists":
        return key
    if op == "!":
        return "!" + key
    if op in ("gt", "lt"):
        return f"{key}{'>' if op == 'gt' else '<'}{draw(st.integers(-99, 99))}"
    return f"{key}{op}{draw(VALUE)}"


@settings(max_examples=200, deadline=None)
@given(reqs=st.lists(requirement(), min_size=1, max_size=4),
       labels=st.dictionaries(KEY, VALUE, max_size=4))
def test_valid_label_selectors_round_trip(reqs, labels) -> None:
    sel = parse_label_selector(", ".join(reqs))
    again = parse_label_selector(str(sel))
    assert again == sel and str(again) == str(sel)
    assert again.matches(labels) == sel.matches(labels)
