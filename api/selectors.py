"""Label and field selectors, parsed and matched exactly as Kubernetes does.

Label selectors (`app=web,tier!=db,env in (prod,qa),!canary`) are how every controller finds its
pods, how Services find endpoints and how `tkctl get -l` filters; field selectors
(`spec.nodeName=n1,status.phase!=Failed`) are how the kubelet watches only its own pods. The
grammar, error messages and canonical `str()` form follow k8s.io/apimachinery's
`labels.Parse` and `fields.ParseSelector`, so a selector string means the same thing here as on a
real cluster. Parse errors raise `api.errors.BadRequest`, as the apiserver answers them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from api.errors import BadRequest
from api.meta import LabelSelector

# --------------------------------------------------------------------------------------------
# Label key / value syntax (shared with api.validation)
# --------------------------------------------------------------------------------------------

QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
LABEL_VALUE_MAX = 63
DNS1123_SUBDOMAIN_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS1123_SUBDOMAIN_MAX = 253

_QUALIFIED_RE = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{LABEL_VALUE_FMT}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")

_QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    f"used for validation is '{QUALIFIED_NAME_FMT}')"
)


def qualified_name_errors(value: str) -> list[str]:
    """Kubernetes' IsQualifiedName: `[prefix/]name`, prefix a DNS subdomain, name <= 63 chars."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        elif len(prefix) > DNS1123_SUBDOMAIN_MAX:
            errs.append(f"prefix part must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
        elif not _DNS1123_SUBDOMAIN_RE.match(prefix):
            errs.append(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'example.com', regex used for validation is "
                f"'{DNS1123_SUBDOMAIN_FMT}')"
            )
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}') with an optional "
            "DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if name and not _QUALIFIED_RE.match(name):
        errs.append(_QUALIFIED_MSG)
    return errs


def label_value_errors(value: str) -> list[str]:
    """Kubernetes' IsValidLabelValue: empty, or <= 63 alphanumerics with `-_.` inside."""
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
            f"or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FMT}')"
        )
    return errs


def _quote(s: str) -> str:
    # Go's %q, close enough for the ASCII that labels can hold.
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------------
# Label selectors
# --------------------------------------------------------------------------------------------

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"

_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key op values`."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.operator in (IN, EQUALS, DOUBLE_EQUALS):
            return has and labels[self.key] in self.values
        if self.operator in (NOT_IN, NOT_EQUALS):
            return not has or labels[self.key] not in self.values
        if self.operator == EXISTS:
            return has
        if self.operator == DOES_NOT_EXIST:
            return not has
        if self.operator in (GREATER_THAN, LESS_THAN):
            if not has:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.operator == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        if op == EXISTS:
            return self.key
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        sym = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{sym}{self.values[0]}"


def _new_requirement(key: str, op: str, values: Iterable[str]) -> Requirement:
    """Upstream's NewRequirement: check key, values and arity; values sorted and deduplicated."""
    vals = tuple(sorted(set(values)))
    key_errs = qualified_name_errors(key)
    if key_errs:
        raise ValueError(f"key: Invalid value: {_quote(key)}: {'; '.join(key_errs)}")
    if op in (IN, NOT_IN):
        if not vals:
            raise ValueError("values: Invalid value: []: for 'in', 'notin' operators, values set "
                             "can't be empty")
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            raise ValueError("values: Invalid value: exact-match compatibility requires one "
                             "single value")
    elif op in (EXISTS, DOES_NOT_EXIST):
        if vals:
            raise ValueError("values: Invalid value: values set must be empty for exists and "
                             "does not exist")
    elif op in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            raise ValueError("values: Invalid value: for 'Gt', 'Lt' operators, exactly one "
                             "value is required")
        if not re.fullmatch(r"[+-]?[0-9]+", vals[0]):
            raise ValueError(f"values[0]: Invalid value: {_quote(vals[0])}: for 'Gt', 'Lt' "
                             "operators, the value must be an integer")
    else:
        raise ValueError(f"operator: Unsupported value: {_quote(op)}")
    if op not in (GREATER_THAN, LESS_THAN):
        for i, v in enumerate(vals):
            errs = label_value_errors(v)
            if errs:
                raise ValueError(f"values[{i}][{key}]: Invalid value: {_quote(v)}: "
                                 + "; ".join(errs))
    return Requirement(key, op, vals)


class Selector:
    """A parsed label selector: an AND of requirements, or the special "nothing" selector.

    `Selector()` (no requirements) matches everything; `Selector.nothing()` matches nothing.
    """

    __slots__ = ("_nothing", "requirements")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        # Sorted by key as upstream does, which makes str() canonical.
        self.requirements: tuple[Requirement, ...] = tuple(
            sorted(requirements, key=lambda r: r.key)
        )
        self._nothing = nothing

    @classmethod
    def everything(cls) -> Selector:
        return cls()

    @classmethod
    def nothing(cls) -> Selector:
        return cls(nothing=True)

    @property
    def empty(self) -> bool:
        """True for the match-everything selector (upstream's Empty(); false for nothing)."""
        return not self._nothing and not self.requirements

    @property
    def matches_nothing(self) -> bool:
        return self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        lbls = labels or {}
        return all(r.matches(lbls) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "Selector(<nothing>)" if self._nothing else f"Selector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Selector)
            and self._nothing == other._nothing
            and self.requirements == other.requirements
        )

    def __hash__(self) -> int:
        return hash((self._nothing, self.requirements))


# Lexer tokens.
_T_ID, _T_IN, _T_NOTIN, _T_EOS, _T_COMMA, _T_OPEN, _T_CLOSE = (
    "id", "in", "notin", "eos", ",", "(", ")")
_T_EQ, _T_DEQ, _T_NEQ, _T_NOT, _T_GT, _T_LT, _T_ERR = "=", "==", "!=", "!", ">", "<", "err"
_SPECIAL = frozenset("=!(),><")
_SYMBOLS = {"=": _T_EQ, "==": _T_DEQ, "!=": _T_NEQ, "!": _T_NOT, ">": _T_GT, "<": _T_LT,
            ",": _T_COMMA, "(": _T_OPEN, ")": _T_CLOSE}
_WS = frozenset(" \t\r\n")


def _lex(s: str) -> list[tuple[str, str]]:
    """Upstream's Lexer: identifiers run until whitespace or a special symbol."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in _WS:
            i += 1
        if i >= n:
            out.append((_T_EOS, ""))
            return out
        if s[i] in _SPECIAL:
            # Longest symbol that is a token ("!=" over "!"), as scanSpecialSymbol does.
            buf, last = "", ""
            j = i
            while j < n and s[j] in _SPECIAL:
                if buf + s[j] in _SYMBOLS:
                    buf += s[j]
                    last = buf
                    j += 1
                else:
                    break
            if not last:
                # Not reachable with the current symbol table (every special char is a token),
                # kept for parity with upstream's ErrorToken.
                out.append((_T_ERR, f"error expected: keyword found '{s[i]}'"))
                return out
            out.append((_SYMBOLS[last], last))
            i = j
            continue
        j = i
        while j < n and s[j] not in _WS and s[j] not in _SPECIAL:
            j += 1
        word = s[i:j]
        out.append(({"in": _T_IN, "notin": _T_NOTIN}.get(word, _T_ID), word))
        i = j


class _LabelParser:
    def __init__(self, s: str):
        self.items = _lex(s)
        self.pos = 0

    def _peek(self, values: bool) -> tuple[str, str]:
        tok, lit = self.items[self.pos]
        # In a value position the keywords are just identifiers ("env in (in)").
        if values and tok in (_T_IN, _T_NOTIN):
            tok = _T_ID
        return tok, lit

    def _take(self, values: bool) -> tuple[str, str]:
        tok, lit = self._peek(values)
        if self.pos < len(self.items) - 1:
            self.pos += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._peek(True)
            if tok in (_T_ID, _T_NOT):
                try:
                    reqs.append(self._requirement())
                except ValueError as e:
                    raise ValueError(f"unable to parse requirement: {e}") from None
                t, lit2 = self._take(True)
                if t == _T_EOS:
                    return reqs
                if t == _T_COMMA:
                    t2, l2 = self._peek(True)
                    if t2 not in (_T_ID, _T_NOT):
                        raise ValueError(f"found '{l2}', expected: identifier after ','")
                    continue
                raise ValueError(f"found '{lit2}', expected: ',' or 'end of string'")
            if tok == _T_EOS:
                return reqs
            raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def _requirement(self) -> Requirement:
        op = ""
        tok, lit = self._take(True)
        if tok == _T_NOT:
            op = DOES_NOT_EXIST
            tok, lit = self._take(True)
        if tok != _T_ID:
            raise ValueError(f"found '{lit}', expected: identifier")
        key = lit
        key_errs = qualified_name_errors(key)
        if key_errs:
            raise ValueError(f"key: Invalid value: {_quote(key)}: {'; '.join(key_errs)}")
        nxt, _ = self._peek(True)
        if nxt in (_T_EOS, _T_COMMA) and op != DOES_NOT_EXIST:
            op = EXISTS
        if op in (EXISTS, DOES_NOT_EXIST):
            return _new_requirement(key, op, ())
        tok, lit = self._take(False)
        ops = {_T_IN: IN, _T_NOTIN: NOT_IN, _T_EQ: EQUALS, _T_DEQ: DOUBLE_EQUALS,
               _T_NEQ: NOT_EQUALS, _T_GT: GREATER_THAN, _T_LT: LESS_THAN}
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        op = ops[tok]
        values = self._values() if op in (IN, NOT_IN) else self._exact_value()
        return _new_requirement(key, op, values)

    def _values(self) -> set[str]:
        tok, lit = self._take(True)
        if tok != _T_OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self._peek(True)
        if tok in (_T_ID, _T_COMMA):
            s = self._identifiers()
            tok2, lit2 = self._take(True)
            if tok2 != _T_CLOSE:
                raise ValueError(f"found '{lit2}', expected: ')'")
            return s
        if tok == _T_CLOSE:  # "()" means the single empty value
            self._take(True)
            return {""}
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def _identifiers(self) -> set[str]:
        s: set[str] = set()
        while True:
            tok, lit = self._take(True)
            if tok == _T_ID:
                s.add(lit)
                t2, l2 = self._peek(True)
                if t2 == _T_COMMA:
                    continue
                if t2 == _T_CLOSE:
                    return s
                raise ValueError(f"found '{l2}', expected: ',' or ')'")
            if tok == _T_COMMA:
                # "(,a)", "(a,)" and "(a,,b)" all include the empty value, as upstream.
                if not s:
                    s.add("")
                t2, _ = self._peek(True)
                if t2 == _T_CLOSE:
                    s.add("")
                    return s
                if t2 == _T_COMMA:
                    self._take(True)
                    s.add("")
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        tok, _ = self._peek(True)
        if tok in (_T_EOS, _T_COMMA):  # "a=" selects the empty value
            return {""}
        tok, lit = self._take(True)
        if tok == _T_ID:
            return {lit}
        raise ValueError(f"found '{lit}', expected: identifier")


def parse_label_selector(s: str) -> Selector:
    """Parse a label selector string; "" selects everything. Raises BadRequest on bad syntax."""
    try:
        reqs = _LabelParser(s).parse()
    except ValueError as e:
        raise BadRequest(message=str(e)) from None
    return Selector(reqs)


_LS_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def from_label_selector(sel: LabelSelector | None) -> Selector:
    """metav1.LabelSelectorAsSelector.

    None selects NOTHING (an object without a selector owns no pods); an empty selector (no
    matchLabels, no matchExpressions) selects EVERYTHING. Raises BadRequest on invalid content.
    """
    if sel is None:
        return Selector.nothing()
    reqs: list[Requirement] = []
    try:
        for k, v in sorted((sel.match_labels or {}).items()):
            reqs.append(_new_requirement(k, EQUALS, (v,)))
        for expr in sel.match_expressions or []:
            op = _LS_OPERATORS.get(expr.operator)
            if op is None:
                raise ValueError(f"{_quote(expr.operator)} is not a valid label selector operator")
            reqs.append(_new_requirement(expr.key, op, expr.values or ()))
    except ValueError as e:
        raise BadRequest(message=f"invalid label selector: {e}") from None
    return Selector(reqs)


def from_map(d: Mapping[str, str] | None) -> Selector:
    """labels.SelectorFromSet for the plain-map selectors of RCs and Services.

    None or {} selects EVERYTHING, as upstream; callers that treat an empty Service selector as
    "no endpoints managed" (the endpoints controller) must check for that themselves.
    """
    reqs: list[Requirement] = []
    try:
        for k, v in sorted((d or {}).items()):
            reqs.append(_new_requirement(k, EQUALS, (v,)))
    except ValueError as e:
        raise BadRequest(message=f"invalid label selector: {e}") from None
    return Selector(reqs)


def selector_to_label_selector(sel: Selector) -> LabelSelector:
    """The structured form of a parsed selector (for Scale status and tkctl output)."""
    labels: dict[str, str] = {}
    exprs: list[dict[str, Any]] = []
    back = {IN: "In", NOT_IN: "NotIn", EXISTS: "Exists", DOES_NOT_EXIST: "DoesNotExist"}
    for r in sel.requirements:
        if r.operator in (EQUALS, DOUBLE_EQUALS):
            labels[r.key] = r.values[0]
        elif r.operator == NOT_EQUALS:
            exprs.append({"key": r.key, "operator": "NotIn", "values": list(r.values)})
        elif r.operator in back:
            e: dict[str, Any] = {"key": r.key, "operator": back[r.operator]}
            if r.values:
                e["values"] = list(r.values)
            exprs.append(e)
    return LabelSelector.model_validate(
        {"matchLabels": labels or None, "matchExpressions": exprs or None}
    )


# --------------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------------

# Boolean fields whose unset value Kubernetes reports as "false" (its field sets use Go's zero
# value), so that `spec.unschedulable=false` matches a node without the field.
_BOOL_FIELDS = frozenset({"spec.unschedulable"})
# Event's `source` field label is the reporting component (upstream's event field set).
_FIELD_PATHS = {"source": "source.component"}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


def escape_field_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape(v: str) -> str:
    if not any(c in v for c in "\\,="):
        return v
    out: list[str] = []
    in_slash = False
    for c in v:
        if in_slash:
            if c not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
            continue
        if c == "\\":
            in_slash = True
        elif c in ",=":
            raise ValueError(f"invalid field selector: unescaped character in value: {c}")
        else:
            out.append(c)
    if in_slash:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(s: str) -> list[str]:
    terms: list[str] = []
    start, in_slash = 0, False
    for i, c in enumerate(s):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in _FIELD_PATHS.get(path, path).split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return "false" if path in _BOOL_FIELDS else ""
        cur = cur[part]
    if cur is None:
        return "false" if path in _BOOL_FIELDS else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, int | float | str):
        return str(cur)
    return ""


class FieldSelector:
    """A parsed field selector: an AND of `field=value` / `field!=value` terms."""

    __slots__ = ("_reqs",)

    def __init__(self, reqs: Iterable[FieldRequirement] = ()):
        self._reqs = tuple(sorted(reqs, key=lambda r: (r.field, r.operator, r.value)))

    @property
    def empty(self) -> bool:
        return not self._reqs

    def requirements(self) -> tuple[FieldRequirement, ...]:
        return self._reqs

    def requires_exact_match(self, field: str) -> str | None:
        """The value an `=` term pins `field` to (e.g. spec.nodeName for a kubelet), if any."""
        for r in self._reqs:
            if r.field == field and r.operator == "=":
                return r.value
        return None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Match against an object's JSON dict (camelCase paths; a missing field reads as "")."""
        for r in self._reqs:
            have = _field_value(obj, r.field)
            if (have == r.value) != (r.operator == "="):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(str(r) for r in self._reqs)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSelector) and self._reqs == other._reqs

    def __hash__(self) -> int:
        return hash(self._reqs)


def parse_field_selector(s: str, allowed: frozenset[str] | None = None) -> FieldSelector:
    """Parse `a=b,c!=d`. Fields outside `allowed` (when given) are rejected as upstream does:
    `field label not supported: spec.foo`. Raises BadRequest."""
    reqs: list[FieldRequirement] = []
    for term in _split_terms(s) if s else []:
        if not term.strip():
            continue
        for i in range(len(term)):
            rest = term[i:]
            op = next((o for o in ("!=", "==", "=") if rest.startswith(o)), None)
            if op is not None:
                lhs, rhs = term[:i].strip(), rest[len(op):]
                break
        else:
            raise BadRequest(message=f"invalid selector: '{s}'; can't understand '{term}'")
        try:
            value = _unescape(rhs)
        except ValueError as e:
            raise BadRequest(message=str(e)) from None
        if allowed is not None and lhs not in allowed:
            raise BadRequest(message=f"field label not supported: {lhs}")
        reqs.append(FieldRequirement(lhs, "!=" if op == "!=" else "=", value))
    return FieldSelector(reqs)
