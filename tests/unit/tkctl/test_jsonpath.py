"""kubectl's JSONPath templates: the documented examples, upstream's edge cases, and errors.

Expected strings are written out by hand from the kubectl JSONPath reference page and from
client-go's util/jsonpath tests (where the page shows Go's old `map[cpu:4]` printing, kubectl
has printed JSON for years: `{"cpu":"4"}`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tkctl.jsonpath import JSONPathError, Template, parse, relaxed

# The input of https://kubernetes.io/docs/reference/kubectl/jsonpath/ (plus `ready`, which
# client-go's TestKubernetes adds).
DOC = json.loads("""
{
  "kind": "List",
  "items":[
    {
      "kind":"None",
      "metadata":{
        "name":"127.0.0.1",
        "labels":{"kubernetes.io/hostname":"127.0.0.1"}
      },
      "status":{
        "capacity":{"cpu":"4"},
        "ready": true,
        "addresses":[{"type": "LegacyHostIP", "address":"127.0.0.1"}]
      }
    },
    {
      "kind":"None",
      "metadata":{"name":"127.0.0.2"},
      "status":{
        "capacity":{"cpu":"8"},
        "ready": false,
        "addresses":[
          {"type": "LegacyHostIP", "address":"127.0.0.2"},
          {"type": "another", "address":"127.0.0.3"}
        ]
      }
    }
  ],
  "users":[
    {"name": "myself", "user": {}},
    {"name": "e2e", "user": {"username": "admin", "password": "secret"}}
  ]
}
""")


def run(template: str, data: Any = DOC, *, strict: bool = False) -> str:
    return parse(template).execute(data, allow_missing_keys=not strict)


@pytest.mark.parametrize(
    ("template", "want"),
    [
        # The reference page's table, row by row.
        ("kind is {.kind}", "kind is List"),
        ("{.kind}", "List"),
        ("{['kind']}", "List"),
        ("{..name}", "127.0.0.1 127.0.0.2 myself e2e"),
        ("{.items[*].metadata.name}", "127.0.0.1 127.0.0.2"),
        ("{.users[0].name}", "myself"),
        ("{.items[*]['metadata.name', 'status.capacity']}",
         '127.0.0.1 127.0.0.2 {"cpu":"4"} {"cpu":"8"}'),
        ('{.users[?(@.name=="e2e")].user.password}', "secret"),
        ("{range .items[*]}[{.metadata.name}, {.status.capacity}] {end}",
         '[127.0.0.1, {"cpu":"4"}] [127.0.0.2, {"cpu":"8"}] '),
        ("{range .items[*]}{.metadata.name}{'\\t'}{end}", "127.0.0.1\t127.0.0.2\t"),
        ("{.items[0].metadata.labels.kubernetes\\.io/hostname}", "127.0.0.1"),
        # The page's kubectl examples.
        ("{.items[0].metadata.name}", "127.0.0.1"),
        ('{range .items[*]}{.metadata.name}{"\\t"}{.status.capacity.cpu}{"\\n"}{end}',
         "127.0.0.1\t4\n127.0.0.2\t8\n"),
        # client-go's TestKubernetes.
        ("{range .items[*]}{.metadata.name}, {end}{.kind}", "127.0.0.1, 127.0.0.2, List"),
        ("{.items[*].status.addresses[*].address}", "127.0.0.1 127.0.0.2 127.0.0.3"),
        ("{range .items[*]}{range .status.addresses[*]}{.address}, {end}{end}",
         "127.0.0.1, 127.0.0.2, 127.0.0.3, "),
        ('{.items[?(@.metadata.labels.kubernetes\\.io/hostname=="127.0.0.1")].kind}', "None"),
        ("{.items[?(@..ready==true)].metadata.name}", "127.0.0.1"),
        # Root, current object, `$` and `@` (optional, as the page says).
        ("{$.kind}", "List"),
        ("{@.kind}", "List"),
        ("{$.users[0]}", '{"name":"myself","user":{}}'),
        ("{.users[1].user}", '{"password":"secret","username":"admin"}'),
        ("{.users[*].name}", "myself e2e"),
        ("{.users[-1].name}", "e2e"),
        ("{.users[1:].name}", "e2e"),
        ("{.users[::2].name}", "myself"),
        ("{.users[0,1].name}", "myself e2e"),
        ("{.users[1,0].name}", "e2e myself"),
        ("{.users[1].user.*}", "admin secret"),  # values in document order
        ("{.users[?(@.user.username)].name}", "e2e"),
        ("{.items[?(@.status.ready==false)].metadata.name}", "127.0.0.2"),
        ('{.items[*].status.addresses[?(@.type=="another")].address}', "127.0.0.3"),
        ('{.users[?(@.name!="e2e")].name}', "myself"),
        ('{.users[?(@.name<"f")].name}', "e2e"),
        ('{.users[?(@.name>="myself")].name}', "myself"),
        ("{..ready}", "true false"),
        ("{.items[0].metadata.labels}", '{"kubernetes.io/hostname":"127.0.0.1"}'),
        ("{.items[*].status.capacity.cpu}", "4 8"),
        ("{.items[0]['metadata']['name']}", "127.0.0.1"),
        ("{.items[0].metadata['name']}", "127.0.0.1"),
        ("{ .kind }", "List"),
        ("{range .users[*]}{.name}={.user.username};{end}", "myself=;e2e=admin;"),
        ("plain {} text", "plain " + json.dumps(DOC, separators=(",", ":"), sort_keys=True)
         + " text"),
    ],
)
def test_reference_examples(template: str, want: str) -> None:
    assert run(template) == want


def test_current_object_is_the_input_as_compact_json() -> None:
    compact = json.dumps(DOC, separators=(",", ":"), sort_keys=True)
    assert run("{@}") == run("{$}") == run("{.}") == compact


TYPES = {
    "bools": [True, False, True, False],
    "integers": [1, 2, 3, 4],
    "floats": [1.0, 2.2, 3.3, 4.0],
    "strings": ["one", "two", "three", "four"],
    "interfaces": [True, "one", 1, 1.1],
    "maps": [
        {"name": "one", "value": 1},
        {"name": "two", "value": 2.02},
        {"name": "three", "value": 3.03},
        {"name": "four", "value": 4.04},
    ],
}


@pytest.mark.parametrize(
    ("template", "want"),
    [
        # client-go's TestTypesInput.
        ("{ .bools }", "[true,false,true,false]"),
        ("{ .bools[0] }", "true"),
        ("{ .bools[-1] }", "false"),
        ("{ .bools[0:2] }", "true false"),
        ("{ .bools[:4:2] }", "true true"),
        ("{ .integers }", "[1,2,3,4]"),
        ("{ .integers[-2] }", "3"),
        ("{ .integers[:2] }", "1 2"),
        ("{ .floats }", "[1,2.2,3.3,4]"),
        ("{ .floats[0] }", "1"),
        ("{ .floats[-2] }", "3.3"),
        ("{ .floats[:4:2] }", "1 3.3"),
        ("{ .strings }", '["one","two","three","four"]'),
        ("{ .strings[0:2] }", "one two"),
        ("{ .strings[:4:2] }", "one three"),
        ("{ .interfaces }", '[true,"one",1,1.1]'),
        ("{ .interfaces[0:2] }", "true one"),
        ("{ .interfaces[:4:2] }", "true 1"),
        ("{ .maps[0] }", '{"name":"one","value":1}'),
        ("{ .maps[-2] }", '{"name":"three","value":3.03}'),
        ("{ .maps[1::2] }", '{"name":"two","value":2.02} {"name":"four","value":4.04}'),
        ("{ .maps[::2].name }", "one three"),
        # Filters over scalars and maps.
        ("{.integers[?(@>2)]}", "3 4"),
        ("{.floats[?(@>2.5)]}", "3.3 4"),
        ('{.strings[?(@=="two")]}', "two"),
        ("{.bools[?(@==true)]}", "true true"),
        ('{.maps[?(@.name>="t")].name}', "two three"),
    ],
)
def test_value_types(template: str, want: str) -> None:
    assert run(template, TYPES) == want


CONTAINERS = {"spec": {"containers": [{"name": f"fake{i}"} for i in range(6)]}}


@pytest.mark.parametrize(
    ("index", "want"),
    [
        # client-go's TestNegativeIndex and TestStep, over six containers.
        ("0", "fake0"), ("-1", "fake5"), ("-6", "fake0"), ("0:0", ""), ("0:-1",
         "fake0 fake1 fake2 fake3 fake4"), ("-1:", "fake5"), ("-2:", "fake4 fake5"),
        ("6:6", ""), ("-6:-6", ""), ("*", "fake0 fake1 fake2 fake3 fake4 fake5"),
        (":2", "fake0 fake1"), ("0:6:", "fake0 fake1 fake2 fake3 fake4 fake5"),
        ("1:4:2", "fake1 fake3"), ("1:4:3", "fake1"), ("1:4:4", "fake1"),
        ("0:6:2", "fake0 fake2 fake4"), ("0:6:5", "fake0 fake5"), ("::3", "fake0 fake3"),
        ("0,2,5", "fake0 fake2 fake5"), ("-1, 0", "fake5 fake0"), ("", "fake0"),
    ],
)
def test_indexes_slices_and_steps(index: str, want: str) -> None:
    assert run(f"{{.spec.containers[{index}].name}}", CONTAINERS) == want


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        ("6", "array index out of bounds: index 6, length 6"),
        ("-7", "array index out of bounds: index -1, length 6"),
        ("0:7", "array index out of bounds: index 6, length 6"),
        ("3:1", "starting index 3 is greater than ending index 1"),
        ("-1:-2", "starting index 5 is greater than ending index 4"),
        ("0:6:0", "step must be > 0"),
        ("0:6:-1", "step must be > 0"),
    ],
)
def test_index_errors_even_when_missing_keys_are_allowed(index: str, reason: str) -> None:
    # As upstream: kubectl fails on `{.items[0].metadata.name}` when the list is empty.
    with pytest.raises(JSONPathError) as err:
        run(f"{{.spec.containers[{index}].name}}", CONTAINERS)
    assert err.value.reason == reason


def test_nested_ranges() -> None:
    # client-go's TestNestedRanges.
    data = {"items": [
        {"metadata": {"name": "pod1"}, "spec": {"containers": [
            {"name": "foo", "another": [{"name": "value1"}, {"name": "value2"}]},
            {"name": "bar", "another": [{"name": "value1"}, {"name": "value2"}]}]}},
        {"metadata": {"name": "pod2"}, "spec": {"containers": [
            {"name": "baz", "another": [{"name": "value1"}, {"name": "value2"}]}]}},
    ]}
    assert run('{range .items[*]}{.metadata.name}{":"}{range @.spec.containers[*]}{.name}{","}'
               '{end}{"+"}{end}', data) == "pod1:foo,bar,+pod2:baz,+"
    assert run('{range .items[*]}{.metadata.name}{"~"}{range @.spec.containers[*]}{.name}{":"}'
               '{range @.another[*]}{.name}{","}{end}{"+"}{end}{"#"}{end}', data) == (
        "pod1~foo:value1,value2,+bar:value1,value2,+#pod2~baz:value1,value2,+#")
    assert run('{range .items[*]}{.metadata.name}{"\\t"}{range @.spec.containers[*]}{.name}{" "}'
               '{end}{"\\t"}{range @.spec.containers[*]}{.name}{" "}{end}{"\\n"}{end}', data) == (
        "pod1\tfoo bar \tfoo bar \npod2\tbaz \tbaz \n")


def test_range_inside_sees_the_element_as_root() -> None:
    assert run("{range .users[*]}{$.name}/{@.name}/{.name} {end}") == (
        "myself/myself/myself e2e/e2e/e2e ")


@pytest.mark.parametrize("strict", [False, True])
def test_empty_range_prints_nothing(strict: bool) -> None:
    # Deviation, strict only: upstream evaluates the body once on nil and so fails there.
    data = {"items": []}
    assert run("{range .items[*]}{.metadata.name}{range .spec.containers[*]}{.name}{end}{end}",
               data, strict=strict) == ""


def test_range_over_a_non_list_visits_it_once() -> None:
    assert run("{range .users[1].user}{.username}{end}") == "admin"
    assert run("{range .users}{@}|{end}") == run("{.users}") + "|"


@pytest.mark.parametrize(
    ("template", "data", "want"),
    [
        # Quotes inside filters may hold parentheses, brackets and the other quote.
        ('{[?(@.os == "()")].n}', [{"os": "()", "n": 1}], "1"),
        ('{[?(@.os == "(\\"\\")")].n}', [{"os": '("")', "n": 2}], "2"),
        ('{[?(@.os == "())(")].n}', [{"os": "())(", "n": 3}], "3"),
        ("{[?(@.os == 'Linux')].n}", [{"os": "Linux", "n": 4}], "4"),
        ('{[?(@.os == "{[()]}")].n}', [{"os": "{[()]}", "n": 5}], "5"),
        ("{[?(@.os == \"''\")].n}", [{"os": "''", "n": 6}], "6"),
        ("{[?(@.os == '\"\"')].n}", [{"os": '""', "n": 7}], "7"),
        ("{[?(@.os == '\\\\\\'')].n}", [{"os": "\\'", "n": 8}], "8"),
        # Comparing two fields of the same element; numbers with signs; booleans.
        ("{[?(@.x==@.y)].id}", [{"id": "a", "x": 1, "y": 1}, {"id": "b", "x": 1, "y": 2}], "a"),
        ("{[?(@.x<0)].id}", [{"id": "a", "x": 4}, {"id": "b", "x": -2}, {"id": "c", "x": -6}],
         "b c"),
        ("{[?(@.y>=-1)].id}", [{"id": "a", "y": -5}, {"id": "b", "y": -1}, {"id": "c", "y": 3}],
         "b c"),
        ("{[?(@.x!=false)].id}", [{"id": "a", "x": True}, {"id": "b", "x": False}], "a"),
        # Existence: null and false exist; a missing key does not.
        ("{[?(@.z)].id}", [{"id": "i1"}, {"id": "i2", "z": 1}, {"id": "i3", "z": None},
                           {"id": "i4", "z": False}], "i2 i3 i4"),
        ("{[?(@<5)]}", [2, 6, 3, 7], "2 3"),
        # A key with a dot, escaped, inside a filter (kubectl's node-by-hostname idiom).
        ('{[?(@.l.kubernetes\\.io/os=="linux")].n}', [{"l": {"kubernetes.io/os": "linux"},
                                                        "n": "node1"}], "node1"),
    ],
)
def test_filters(template: str, data: Any, want: str) -> None:
    assert run(template, data) == want


def test_filter_with_partly_missing_keys() -> None:
    # client-go's TestFilterPartialMatchesSometimesMissingAnnotations (issue 45546).
    data = {"items": [
        {"metadata": {"name": "pod1", "annotations": {"color": "blue"}}},
        {"metadata": {"name": "pod2"}},
        {"metadata": {"name": "pod3", "annotations": {"color": "green"}}},
        {"metadata": {"name": "pod4", "annotations": {"color": "blue"}}},
    ]}
    template = '{.items[?(@.metadata.annotations.color=="blue")].metadata.name}'
    assert run(template, data) == "pod1 pod4"
    with pytest.raises(JSONPathError, match="annotations is not found"):
        run(template, data, strict=True)


def test_ranging_over_a_filter() -> None:
    # client-go's TestRunningPodsJSONPathOutput: the last item has no status at all.
    data = {"items": [
        {"metadata": {"name": "pod1"}, "status": {"phase": "Running"}},
        {"metadata": {"name": "pod2"}, "status": {"phase": "Running"}},
        {"metadata": {"name": "pod3"}, "status": {"phase": "Running"}},
        {"resourceVersion": ""},
    ]}
    assert run('{range .items[?(.status.phase=="Running")]}{.metadata.name}{" is Running\\n"}'
               "{end}", data) == "pod1 is Running\npod2 is Running\npod3 is Running\n"


@pytest.mark.parametrize(
    ("left", "op", "right", "reason"),
    [
        # Go's template comparison: no conversions between kinds (not even int and float).
        ("1", "==", "1.0", "incompatible types for comparison"),
        ("1", "==", '"1"', "incompatible types for comparison"),
        ("2.5", "<", "3", "incompatible types for comparison"),
        ("true", "<", "false", "invalid type for comparison"),
        ("null", "==", "1", "invalid type for comparison"),
        ('{"a": 1}', "==", "1", "invalid type for comparison"),
    ],
)
def test_filter_comparison_errors(left: str, op: str, right: str, reason: str) -> None:
    with pytest.raises(JSONPathError) as err:
        run(f"{{[?(@.x{op}{right})]}}", [{"x": json.loads(left)}])
    assert err.value.reason == reason


def test_filter_needs_one_value_per_side() -> None:
    with pytest.raises(JSONPathError, match="can only compare one element at a time"):
        run("{[?(@.x[*]==1)]}", [{"x": [1, 2]}])


def test_bracket_and_escaped_keys() -> None:
    data = {"m": {"a.b": 1, "a": {"b": 2}, "k8s-app": 3, "web/html": 4, "we ird": 5}}
    # As upstream, a dot inside brackets still separates fields; escape it to keep it.
    assert run("{.m['a.b']}", data) == "2"
    assert run("{.m['a\\.b']}", data) == "1"
    assert run("{.m.a\\.b}", data) == "1"
    assert run("{.m.k8s-app} {.m.web/html}", data) == "3 4"
    assert run("{.m['k8s-app','web/html']}", data) == "3 4"
    annotations = {"metadata": {"annotations": {"kubernetes.io/change-cause": "kubectl x"}}}
    assert run("{.metadata.annotations.kubernetes\\.io/change-cause}", annotations) == "kubectl x"


@pytest.mark.parametrize(
    ("template", "want"),
    [
        ('{"\\n"}', "\n"),
        ("{'\\t'}", "\t"),
        ('{"{"}', "{"),
        ('{"}"}', "}"),
        ('{"a\\"b"}', 'a"b'),
        ("{'it\\'s'}", "it's"),
        ('{"\\x41\\101\\u00e9\\U0001F600"}', "AAé😀"),
        ('{"\\xc3\\xa9"}', "é"),
        ("a}b", "a}b"),
        ("{true}{1.5}{-3}", "true1.5-3"),
        ("", ""),
        ("no braces", "no braces"),
    ],
)
def test_literals_and_text(template: str, want: str) -> None:
    assert run(template, {}) == want


@pytest.mark.parametrize(
    ("value", "printed", "as_json"),
    [
        ("raw string", "raw string", '"raw string"'),
        ("<&>", "<&>", '"\\u003c\\u0026\\u003e"'),
        ("héllo\n", "héllo\n", '"héllo\\n"'),
        (True, "true", "true"),
        (None, "null", "null"),
        (7, "7", "7"),
        (-12345678901234, "-12345678901234", "-12345678901234"),
        (1.0, "1", "1"),
        (2.5, "2.5", "2.5"),
        (-0.0, "-0", "-0"),
        (0.1 + 0.2, "0.30000000000000004", "0.30000000000000004"),
        (123456.0, "123456", "123456"),
        (1e6, "1e+06", "1000000"),
        (123456789.0, "1.23456789e+08", "123456789"),
        (1e20, "1e+20", "100000000000000000000"),
        (1e21, "1e+21", "1e+21"),
        (1e-4, "0.0001", "0.0001"),
        (1e-5, "1e-05", "0.00001"),
        (2.5e-7, "2.5e-07", "2.5e-7"),
        (1e-10, "1e-10", "1e-10"),
        ({}, "{}", "{}"),
        ([], "[]", "[]"),
        ({"b": 1, "a": [None, 1.5]}, '{"a":[null,1.5],"b":1}', '{"a":[null,1.5],"b":1}'),
    ],
)
def test_output_formatting(value: Any, printed: str, as_json: str) -> None:
    # A value alone prints as Go's fmt.Print would; inside a list, as Go's json.Marshal.
    assert run("{.v}", {"v": value}) == printed
    assert run("{.l}", {"l": [value]}) == f"[{as_json}]"


def test_map_keys_sorted_in_json_and_document_order_for_wildcards() -> None:
    data = {"m": {"b": 1, "B": 2, "a": 3, "é": 4}}
    assert run("{.m}", data) == '{"B":2,"a":3,"b":1,"é":4}'
    assert run("{.m.*}", data) == "1 2 3 4"


def test_recursive_descent_lists_containers_depth_first() -> None:
    data = {"a": "xy", "b": [1, {"c": "d"}], "e": {}}
    assert run("{..}", data) == (
        '{"a":"xy","b":[1,{"c":"d"}],"e":{}} xy [1,{"c":"d"}] {"c":"d"} d')
    assert run("{..}", [1, 2, 3]) == "[1,2,3]"
    assert run("{...c}", data) == "d"


def test_null_root_prints_no_value() -> None:
    assert run("{@}", None) == "<no value>"
    assert run("{range .a[*]}{@};{end}", {"a": [None, 1]}) == "<no value>;1;"
    assert run("{.a}", {"a": None}) == "null"


@pytest.mark.parametrize(
    "template",
    ["{.nope}", "{.items[*].nope}", "{.kind.nope}", "{.users[0].user.username}", "{..nope}",
     "{range .nope[*]}{.x}{end}", "{.nope[0]}", "{.nope[?(@.x)]}"],
)
def test_missing_keys_print_nothing_by_default(template: str) -> None:
    assert run("<" + template + ">") == "<>"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{.nope}", "nope is not found"),
        ("{.items[*].nope}", "nope is not found"),
        ("{.kind.nope}", "nope is not found"),
        ("{.users[0].user.username}", "username is not found"),
        ("{range .nope[*]}{.x}{end}", "nope is not found"),
    ],
)
def test_missing_keys_fail_when_not_allowed(template: str, reason: str) -> None:
    with pytest.raises(JSONPathError) as err:
        run(template, strict=True)
    assert err.value.reason == reason
    assert err.value.template == template
    assert str(err.value) == f'error executing jsonpath "{template}": {reason}'


def test_partly_missing_keys_are_not_an_error() -> None:
    # Only a field that no current value has is missing.
    assert run("{.users[*].user.password}", strict=True) == "secret"


@pytest.mark.parametrize(
    ("template", "data", "reason"),
    [
        ("{.kind[0]}", DOC, "string is not array or slice"),
        ("{.users[0].user[0]}", DOC, "map[string]interface {} is not array or slice"),
        ("{.kind[?(@.x)]}", DOC, "List is not array or slice and cannot be filtered"),
        ("{.a[?(@.x)]}", {"a": None}, "<nil> is not array or slice and cannot be filtered"),
        ("{.m[?(@.x)]}", {"m": {"k": 1}}, "map[k:1] is not array or slice and cannot be filtered"),
    ],
)
def test_execution_errors(template: str, data: Any, reason: str) -> None:
    for strict in (False, True):
        with pytest.raises(JSONPathError) as err:
            run(template, data, strict=strict)
        assert err.value.reason == reason


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        # client-go's TestFailParser, and more of upstream's parser messages.
        ("{.hello", "unclosed action"),
        ("{", "unclosed action"),
        ("x{.a}{", "unclosed action"),
        ("{.a\n}", "unclosed action"),
        ("{*}", "unrecognized character in action: U+002A '*'"),
        ("{..*}", "unrecognized character in action: U+002A '*'"),
        ("{\t.a}", "unrecognized character in action: U+0009"),
        ("{+12.3.0}", "cannot parse number +12.3.0"),
        ("{-}", "cannot parse number -"),
        ("{[1}", "unterminated array"),
        ("{[?(.price]}", "unterminated filter"),
        ('{[?(@.a=="x")}', "unclosed array expect ]"),
        ("{........}", "invalid multiple recursive descent"),
        ("{............................................................Price}",
         "invalid multiple recursive descent"),
        ("{[ 1 ]}", "invalid array index  1 "),
        ("{[1:2:3:4]}", "invalid array index 1:2:3:4"),
        ('{["kind"]}', 'invalid array index "kind"'),
        ("{[-]}", "array index - is not a number"),
        ('{"abc}', "unterminated quoted string"),
        ('{"\\q"}', 'unquote string "\\q" error invalid syntax'),
        ("{'\\\"'}", "unquote string '\\\"' error invalid syntax"),
        # Upstream reports these only if and when it evaluates them; they can never work, so
        # here they fail to parse.
        ("{hello}", "unrecognized identifier hello"),
        ("{.a b}", "unrecognized identifier b"),
        ("{.Book[?(@.Price<>10)]}", "unrecognized filter operator <>"),
        ('{[?(@.a="x")]}', "unrecognized filter operator ="),
        ("{range .a}{@}{end}{end}", "not in range, nothing to end"),
        ("{end}", "not in range, nothing to end"),
        ("{range .a}{end .b}", "{end} takes no arguments"),
        ("{.a range .b}", "unrecognized identifier range"),
        ("{[?(@.x==range)]}", "unrecognized identifier range"),
        # Upstream runs an unterminated range to the end of the template and then prints the
        # rest again; that is never what was meant.
        ("{range .items[*]}{.x}", "unclosed range: {range .items[*]} has no matching {end}"),
        ("{range .a[*]}{range .b[*]}{end}",
         "unclosed range: {range .a[*]} has no matching {end}"),
    ],
)
def test_syntax_errors(template: str, reason: str) -> None:
    with pytest.raises(JSONPathError) as err:
        parse(template)
    assert err.value.reason == reason
    assert err.value.template == template
    assert str(err.value) == f"error parsing jsonpath {template}, {reason}"


def test_error_is_a_value_error() -> None:
    assert issubclass(JSONPathError, ValueError)


def test_template_is_reusable_and_keeps_its_source() -> None:
    t = parse("{.metadata.name}")
    assert isinstance(t, Template)
    assert t.source == "{.metadata.name}"
    assert [t.execute({"metadata": {"name": n}}) for n in ("a", "b")] == ["a", "b"]


# Deviations from upstream, each where upstream's result is an accident.

def test_empty_inner_list_does_not_drop_the_others() -> None:
    # Upstream stops at the first empty list and prints nothing here.
    assert run("{.a[*][*]}", {"a": [[], [1], [2, 3]]}) == "1 2 3"


def test_exists_filter_with_an_index_out_of_range_means_absent() -> None:
    # Upstream keeps the element whose path failed.
    data = {"a": [{"n": "x", "c": [1]}, {"n": "y", "c": [1, 2]}]}
    assert run("{.a[?(@.c[1])].n}", data) == "y"


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("metadata.name", "{.metadata.name}"),
        (".metadata.name", "{.metadata.name}"),
        ("{metadata.name}", "{.metadata.name}"),
        ("{.metadata.name}", "{.metadata.name}"),
        ('.status.conditions[?(@.type=="Ready")].status',
         '{.status.conditions[?(@.type=="Ready")].status}'),
        ("{.spec.containers[*].image}", "{.spec.containers[*].image}"),
        ("..name", "{..name}"),
        (".", "{..}"),  # as upstream: the lone dot becomes the field spec
        ("", ""),
    ],
)
def test_relaxed(expr: str, want: str) -> None:
    assert relaxed(expr) == want


@pytest.mark.parametrize("expr", ["{}", "{a", "a}", "{a}}", "{.a}{.b}", "x{y}"])
def test_relaxed_rejects(expr: str) -> None:
    with pytest.raises(JSONPathError, match="unexpected path string, expected a 'name1.name2'"):
        relaxed(expr)


def test_relaxed_output_parses_as_a_custom_column() -> None:
    pod = {"metadata": {"name": "web"}, "spec": {"containers": [{"image": "a"}, {"image": "b"}]}}
    assert parse(relaxed("spec.containers[*].image")).execute(pod) == "a b"
    assert parse(relaxed("{metadata.name}")).execute(pod) == "web"


# Properties.

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKENS = ["{", "}", "[", "]", "(", ")", ".", "..", ",", "*", "@", "$", "'", '"', "\\", " ", ":",
          "-", "?", "=", "<", ">", "!", "0", "1", "-1", "a", "b", "n", "x", "true", "range",
          "end", "{range .a[*]}", "{end}", "[?(@.", "==", "'a'", '"b"', "[*]", "\\n", "é"]
DATA = {"a": [{"a": 1, "b": "x", "n": None}, {"a": 2.5, "b": [1, 2]}, {"b": "y"}],
        "b": {"a": "s", "x": {"a": True}}, "n": None, "x": "str"}


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=14).map("".join), st.booleans())
def test_any_template_either_works_or_raises_jsonpath_error(template: str, strict: bool) -> None:
    try:
        result = run(template, DATA, strict=strict)
    except JSONPathError as e:
        assert e.template == template
    else:
        assert isinstance(result, str)


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_print_so_that_they_read_back(value: float) -> None:
    printed = run("{.v}", {"v": value})
    assert float(printed) == value and math.copysign(1, float(printed)) == math.copysign(1, value)
    assert json.loads(run("{.v}", {"v": [value]}), parse_int=float) == [value]


@SETTINGS
@given(st.dictionaries(st.text("abcxyz-_/", min_size=1, max_size=8),
                       st.one_of(st.text(max_size=10), st.integers(), st.booleans()),
                       min_size=1))
def test_every_plain_key_reads_back(data: dict[str, Any]) -> None:
    for key, value in data.items():
        want = value if isinstance(value, str) else json.dumps(value)
        assert run(f"{{.{key}}}", data) == want
        assert run(relaxed(key), data) == want


@SETTINGS
@given(st.text(max_size=20))
def test_relaxed_is_idempotent(expr: str) -> None:
    try:
        once = relaxed(expr)
    except JSONPathError:
        return
    assert relaxed(once) == once
