"""Label and field selector parsing and matching, against upstream's grammar and messages."""

import pytest

from api.errors import BadRequest
from api.meta import LabelSelector
from api.selectors import (
    FieldSelector,
    Selector,
    from_label_selector,
    from_map,
    parse_field_selector,
    parse_label_selector,
    selector_to_label_selector,
)

LABELS = {"app": "web", "tier": "front", "env": "prod", "n": "5"}


@pytest.mark.parametrize(
    ("sel", "labels", "match"),
    [
        ("", LABELS, True),
        ("", None, True),
        ("app=web", LABELS, True),
        ("app==web", LABELS, True),
        ("app=db", LABELS, False),
        ("app!=db", LABELS, True),
        ("missing!=x", LABELS, True),
        ("app!=web", LABELS, False),
        ("env in (prod,qa)", LABELS, True),
        ("env in (qa)", LABELS, False),
        ("missing in (a)", LABELS, False),
        ("env notin (qa)", LABELS, True),
        ("env notin (prod, qa)", LABELS, False),
        ("missing notin (a)", LABELS, True),
        ("app", LABELS, True),
        ("missing", LABELS, False),
        ("!missing", LABELS, True),
        ("!app", LABELS, False),
        ("app=web,tier=front", LABELS, True),
        ("app=web,tier=back", LABELS, False),
        ("  app = web ,  tier in ( front , back )  ", LABELS, True),
        ("n>4", LABELS, True),
        ("n<4", LABELS, False),
        ("app>4", LABELS, False),
        ("app=", {"app": ""}, True),
        ("app=", LABELS, False),
        ("env in ()", {"env": ""}, True),
        ("example.com/role=db", {"example.com/role": "db"}, True),
        ("app", None, False),
        ("!app", None, True),
    ],
)
def test_label_matching(sel, labels, match) -> None:
    assert parse_label_selector(sel).matches(labels) is match


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        ("!(", "unable to parse requirement: found '(', expected: identifier"),
        ("(", "found '(', expected: !, identifier, or 'end of string'"),
        ("app=web,", "found '', expected: identifier after ','"),
        ("app in x", "unable to parse requirement: found 'x' expected: '('"),
        ("app in (a", "found '', expected: ',' or ')'"),
        ("app in (a b)", "found 'b', expected: ',' or ')'"),
        ("app web", "found 'web', expected: in, notin, =, ==, !=, gt, lt"),
        ("app=a=b", "found '=', expected: ',' or 'end of string'"),
        ("a b c", "found 'b', expected: in, notin"),
        ("app=(x)", "found '(', expected: identifier"),
        ("bad key=x", "found 'key'"),
        ("a/b/c=x", "a qualified name must consist of"),
        ("app=-bad", 'values[0][app]: Invalid value: "-bad"'),
        ("n>x", "must be an integer"),
        ("x" * 64, "name part must be no more than 63 characters"),
    ],
)
def test_label_syntax_errors(sel, message) -> None:
    with pytest.raises(BadRequest) as ei:
        parse_label_selector(sel)
    assert message in ei.value.message


@pytest.mark.parametrize(
    ("sel", "canonical"),
    [
        ("tier=front, app=web", "app=web,tier=front"),
        ("env in (qa, prod)", "env in (prod,qa)"),
        ("env notin (b,a,a)", "env notin (a,b)"),
        ("!x,y", "!x,y"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("n>3", "n>3"),
        ("a in (,x)", "a in (,x)"),
        ("", ""),
    ],
)
def test_label_canonical_string(sel, canonical) -> None:
    s = parse_label_selector(sel)
    assert str(s) == canonical
    assert parse_label_selector(str(s)) == s


def test_in_and_notin_as_values() -> None:
    s = parse_label_selector("in in (in, notin)")
    assert s.matches({"in": "notin"})


def test_from_label_selector() -> None:
    assert from_label_selector(None).matches(LABELS) is False
    assert from_label_selector(None).empty is False
    everything = from_label_selector(LabelSelector())
    assert everything.empty and everything.matches({})
    sel = LabelSelector.model_validate({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "qa"]},
            {"key": "tier", "operator": "NotIn", "values": ["back"]},
            {"key": "app", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    })
    s = from_label_selector(sel)
    assert s.matches(LABELS)
    assert not s.matches({**LABELS, "canary": "1"})
    assert str(s) == "app=web,app,!canary,env in (prod,qa),tier notin (back)"
    round = from_label_selector(selector_to_label_selector(s))
    assert round.matches(LABELS) and not round.matches({**LABELS, "canary": "1"})


def test_from_label_selector_errors() -> None:
    bad_op = LabelSelector.model_validate(
        {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]})
    with pytest.raises(BadRequest, match='"Equals" is not a valid label selector operator'):
        from_label_selector(bad_op)
    no_values = LabelSelector.model_validate({"matchExpressions": [{"key": "a", "operator": "In"}]})
    with pytest.raises(BadRequest, match="values set can't be empty"):
        from_label_selector(no_values)


def test_from_map() -> None:
    assert from_map({"app": "web"}).matches(LABELS)
    assert not from_map({"app": "db"}).matches(LABELS)
    assert from_map(None).empty and from_map({}).matches(LABELS)
    assert str(from_map({"b": "2", "a": "1"})) == "a=1,b=2"
    assert isinstance(from_map({"a": "1"}), Selector)


POD = {
    "metadata": {"name": "p", "namespace": "default"},
    "spec": {"nodeName": "n1", "restartPolicy": "Always"},
    "status": {"phase": "Running", "podIP": "10.0.0.1"},
}
ALLOWED = frozenset({"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase",
                     "status.podIP", "spec.unschedulable", "status.replicas", "source"})


@pytest.mark.parametrize(
    ("sel", "obj", "match"),
    [
        ("", POD, True),
        ("spec.nodeName=n1", POD, True),
        ("spec.nodeName==n1", POD, True),
        ("spec.nodeName=n2", POD, False),
        ("spec.nodeName!=n2", POD, True),
        ("spec.nodeName=n1,status.phase!=Failed", POD, True),
        ("spec.nodeName=n1,status.phase=Failed", POD, False),
        ("spec.nodeName=", {"spec": {}}, True),
        ("spec.nodeName!=", {"spec": {}}, False),
        ("spec.nodeName=", POD, False),
        ("metadata.name=p,metadata.namespace=default", POD, True),
        ("spec.unschedulable=true", {"spec": {"unschedulable": True}}, True),
        ("spec.unschedulable=false", {"spec": {"unschedulable": False}}, True),
        ("spec.unschedulable=false", {"spec": {}}, True),
        ("status.replicas=3", {"status": {"replicas": 3}}, True),
        ("source=kubelet", {"source": {"component": "kubelet"}}, True),
        (r"status.podIP=a\,b", {"status": {"podIP": "a,b"}}, True),
    ],
)
def test_field_matching(sel, obj, match) -> None:
    assert parse_field_selector(sel, ALLOWED).matches(obj) is match


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        ("spec.foo=x", "field label not supported: spec.foo"),
        ("spec.nodeName", "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"),
        ("spec.nodeName=a=b", "unescaped character in value"),
        (r"spec.nodeName=a\x", r"invalid escape sequence: \x"),
        ("spec.nodeName=a\\", "invalid escape sequence"),
    ],
)
def test_field_errors(sel, message) -> None:
    with pytest.raises(BadRequest) as ei:
        parse_field_selector(sel, ALLOWED)
    assert message in ei.value.message


def test_field_requirements_and_string() -> None:
    fs = parse_field_selector("status.phase!=Failed,spec.nodeName=n1", ALLOWED)
    assert [(r.field, r.operator, r.value) for r in fs.requirements()] == [
        ("spec.nodeName", "=", "n1"), ("status.phase", "!=", "Failed")]
    assert fs.requires_exact_match("spec.nodeName") == "n1"
    assert fs.requires_exact_match("status.phase") is None
    assert str(fs) == "spec.nodeName=n1,status.phase!=Failed"
    assert parse_field_selector(str(fs), ALLOWED) == fs
    esc = parse_field_selector(r"status.podIP=a\,b\=c\\d", ALLOWED)
    assert esc.requirements()[0].value == "a,b=c\\d"
    assert parse_field_selector(str(esc), ALLOWED) == esc
    assert parse_field_selector("", ALLOWED).empty
    assert isinstance(parse_field_selector("x=1"), FieldSelector)  # no allow-list: anything
