"""The RBAC authorizer and the escalation check: who may do what, from Roles and Bindings.

Kubernetes keeps authorization policy in the API itself (rbac.authorization.k8s.io), so this
module only reads: every request's user is matched against the subjects of ClusterRoleBindings
(grants everywhere) and of the RoleBindings in the request's namespace (grants there only, even
when they reference a ClusterRole), and the rules of the referenced roles are matched against the
request. Matching follows upstream's `rbac.RuleAllows` exactly (`*` wildcards, `resource/sub` and
`*/sub`, resourceNames restricting only named requests, `/prefix*` non-resource URLs), because
policies written for a real cluster must mean the same thing here.

Policy is read from the apiserver's watch cache, never from etcd, since authorization runs on
every request. Bindings are indexed by subject; the index is rebuilt only when a binding changes
(it is keyed by the binding caches' revisions), so a check costs a few dictionary lookups plus the
rules of the bindings that actually name the user. Roles are looked up by key at check time, so
editing a role takes effect with the next request.

RBAC would be useless if anyone allowed to write Roles could grant themselves anything: the
`EscalationCheck` admission plugin refuses a Role/ClusterRole whose rules the writer does not hold
(unless they have the `escalate` verb on it) and a binding to a role whose rules the writer does
not hold (unless they have `bind` on it), with upstream's message listing the missing rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from api import errors, rbac
from api.validation import go_quote
from apiserver.auth import (
    SYSTEM_MASTERS,
    AdmissionRequest,
    Attributes,
    Authorizer,
    Decision,
    UserInfo,
    service_account_user,
)
from apiserver.watchcache import WatchCache

Obj = dict[str, Any]
Rule = dict[str, Any]  # a PolicyRule in its JSON form: verbs, apiGroups, resources, ...

_RBAC_GROUP = rbac.GROUP
_BINDING_RESOURCES = ("clusterrolebindings", "rolebindings")
_ROLE_RESOURCES = frozenset({"roles", "clusterroles"})

# What the aggregationRule of a ClusterRole can gather: anything, so setting one takes everything.
FULL_AUTHORITY: tuple[Rule, ...] = (
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
)


# --------------------------------------------------------------------------------------------
# Rule matching (k8s.io/kubernetes/pkg/apis/rbac/v1 evaluation helpers)
# --------------------------------------------------------------------------------------------


def _list(rule: Rule, key: str) -> list[str]:
    return list(rule.get(key) or [])


def verb_matches(rule: Rule, verb: str) -> bool:
    verbs = _list(rule, "verbs")
    return rbac.ALL in verbs or verb in verbs


def api_group_matches(rule: Rule, group: str) -> bool:
    groups = _list(rule, "apiGroups")
    return rbac.ALL in groups or group in groups


def resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    """`combined` is `resource` or `resource/subresource`.

    `*` matches everything (subresources included), `pods/status` only that subresource,
    `*/scale` that subresource of any resource. Like upstream, `pods/*` is not a pattern: it
    matches only a request for the literal subresource `*`.
    """
    for r in _list(rule, "resources"):
        if r == rbac.ALL or r == combined:
            return True
        if subresource and r == "*/" + subresource:
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    """A rule without resourceNames matches any request; one with them matches only requests
    for one of those names (so never list, watch, or create, which carry no name)."""
    names = _list(rule, "resourceNames")
    return not names or name in names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    for url in _list(rule, "nonResourceURLs"):
        if url == rbac.ALL or url == path:
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Rule) -> bool:
    """Whether one PolicyRule allows one request (upstream `RuleAllows`)."""
    if attrs.is_resource_request:
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        return (verb_matches(rule, attrs.verb) and api_group_matches(rule, attrs.api_group)
                and resource_matches(rule, combined, attrs.subresource)
                and resource_name_matches(rule, attrs.name))
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


# --------------------------------------------------------------------------------------------
# Rule coverage: does one set of rules hold everything another grants? (rbac/validation)
# --------------------------------------------------------------------------------------------


def breakdown_rule(rule: Rule) -> list[Rule]:
    """One rule as atomic rules: one group × resource × verb (× name), or URL × verb."""
    out: list[Rule] = []
    names = _list(rule, "resourceNames")
    for group in _list(rule, "apiGroups"):
        for res in _list(rule, "resources"):
            for verb in _list(rule, "verbs"):
                base = {"apiGroups": [group], "resources": [res], "verbs": [verb]}
                if names:
                    out += [{**base, "resourceNames": [n]} for n in names]
                else:
                    out.append(base)
    for url in _list(rule, "nonResourceURLs"):
        out += [{"nonResourceURLs": [url], "verbs": [verb]} for verb in _list(rule, "verbs")]
    return out


def _has_all(owner: Sequence[str], wanted: Sequence[str]) -> bool:
    return set(wanted) <= set(owner)


def _resources_cover(owner: Sequence[str], wanted: Sequence[str]) -> bool:
    if rbac.ALL in owner or _has_all(owner, wanted):
        return True
    for res in wanted:
        if res in owner:
            continue
        if "/" not in res or "*/" + res.split("/", 1)[1] not in owner:
            return False
    return True


def _url_covers(owner: str, wanted: str) -> bool:
    return owner == wanted or (owner.endswith("*") and wanted.startswith(owner.rstrip("*")))


def _urls_cover(owner: Sequence[str], wanted: Sequence[str]) -> bool:
    return all(any(_url_covers(o, w) for o in owner) for w in wanted)


def rule_covers(owner: Rule, sub: Rule) -> bool:
    """Whether `owner` grants everything the (atomic) rule `sub` grants (upstream ruleCovers)."""
    o_verbs, o_groups = _list(owner, "verbs"), _list(owner, "apiGroups")
    o_names, s_names = _list(owner, "resourceNames"), _list(sub, "resourceNames")
    if s_names:
        names_ok = not o_names or _has_all(o_names, s_names)
    else:
        names_ok = not o_names
    return ((rbac.ALL in o_verbs or _has_all(o_verbs, _list(sub, "verbs")))
            and (rbac.ALL in o_groups or _has_all(o_groups, _list(sub, "apiGroups")))
            and _resources_cover(_list(owner, "resources"), _list(sub, "resources"))
            and _urls_cover(_list(owner, "nonResourceURLs"), _list(sub, "nonResourceURLs"))
            and names_ok)


def covers(owner_rules: Sequence[Rule], rules: Sequence[Rule]) -> tuple[bool, list[Rule]]:
    """Whether `owner_rules` hold every permission of `rules`, and the atomic rules they lack."""
    missing = [
        atom for rule in rules for atom in breakdown_rule(rule)
        if not any(rule_covers(o, atom) for o in owner_rules)
    ]
    return not missing, missing


def compact_rules(rules: Sequence[Rule]) -> list[Rule]:
    """Merge the verbs of simple rules (one group, one resource, at most one name) that differ
    only in verbs, as upstream's CompactRules does for readable messages."""
    out: list[Rule] = []
    simple: dict[tuple[str, str, tuple[str, ...]], Rule] = {}
    for rule in rules:
        groups, res, names = (_list(rule, "apiGroups"), _list(rule, "resources"),
                              _list(rule, "resourceNames"))
        if (len(groups) != 1 or len(res) != 1 or len(names) > 1 or rule.get("nonResourceURLs")
                or set(rule) - {"apiGroups", "resources", "resourceNames", "verbs"}):
            out.append(rule)
            continue
        key = (groups[0], res[0], tuple(names))
        if key in simple:
            verbs = simple[key]["verbs"]
            verbs += [v for v in _list(rule, "verbs") if v not in verbs]
        else:
            simple[key] = {**rule, "verbs": _list(rule, "verbs")}
    return out + list(simple.values())


def _go_strings(values: Sequence[str]) -> str:
    """A []string as Go's %q prints it: `["a" "b"]`."""
    return "[" + " ".join(go_quote(v) for v in values) + "]"


def compact_string(rule: Rule) -> str:
    """`{APIGroups:[""], Resources:["pods"], Verbs:["get"]}` (upstream CompactString)."""
    parts = [f"{label}:{_go_strings(_list(rule, key))}"
             for label, key in (("APIGroups", "apiGroups"), ("Resources", "resources"),
                                ("NonResourceURLs", "nonResourceURLs"),
                                ("ResourceNames", "resourceNames"), ("Verbs", "verbs"))
             if rule.get(key)]
    return "{" + ", ".join(parts) + "}"


# --------------------------------------------------------------------------------------------
# Subjects and the binding index
# --------------------------------------------------------------------------------------------


def _subject_key(subject: Obj, binding_ns: str) -> tuple[str, str] | None:
    """The (kind, name) a subject matches a user by; ServiceAccounts become their user name."""
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if kind == rbac.USER_KIND:
        return ("User", name)
    if kind == rbac.GROUP_KIND:
        return ("Group", name)
    if kind == rbac.SERVICE_ACCOUNT_KIND:
        # A RoleBinding's ServiceAccount without a namespace means one in the binding's.
        ns = subject.get("namespace") or binding_ns
        return ("User", service_account_user(ns, name)) if ns else None
    return None


def describe_subject(subject: Obj, binding_ns: str) -> str:
    kind, name = str(subject.get("kind") or ""), str(subject.get("name") or "")
    if kind == rbac.SERVICE_ACCOUNT_KIND:
        name = f"{name}/{subject.get('namespace') or binding_ns}"
    return f"{kind} {go_quote(name)}"


@dataclass(frozen=True)
class _Match:
    """One binding that applies to a user, through its first matching subject."""

    order: int  # the binding's position in key order: evaluation is deterministic
    binding: Obj
    subject: Obj


@dataclass
class _Index:
    """Bindings by (namespace, subject kind, subject name); namespace "" = ClusterRoleBindings."""

    signature: tuple[Any, ...] = ()
    entries: dict[tuple[str, str, str], list[tuple[int, int, Obj, Obj]]] = field(
        default_factory=lambda: defaultdict(list))


class RBACAuthorizer:
    """`authorize(attrs)` from the Roles and Bindings in the watch cache (upstream
    `rbac.RBACAuthorizer` over `DefaultRuleResolver`)."""

    def __init__(self, cache: WatchCache) -> None:
        self.cache = cache
        self._index = _Index()

    # --- the binding index ----------------------------------------------------------------

    def _signature(self) -> tuple[Any, ...]:
        """Changes whenever a binding is added, changed or removed, or the cache relists.

        The cache's overall revision moves with every write of any kind (leases, events), so
        the binding caches' own latest event revision is used instead.
        """
        sig: list[Any] = []
        for res in _BINDING_RESOURCES:
            c = self.cache.caches[res]
            sig += [id(c.store), len(c.store), c.ring[-1].rv if c.ring else c.start_rv]
        return tuple(sig)

    def _current_index(self) -> _Index:
        sig = self._signature()
        if sig != self._index.signature:
            self._index = self._build_index(sig)
        return self._index

    def _build_index(self, sig: tuple[Any, ...]) -> _Index:
        index = _Index(signature=sig)
        order = 0
        for res in _BINDING_RESOURCES:
            items, _ = self.cache.list(res, "", lambda _o: True)
            for binding in items:
                ns = str((binding.get("metadata") or {}).get("namespace") or "")
                if res == "rolebindings" and not ns:
                    continue  # never stored so; were one, it must not grant cluster-wide
                for pos, subject in enumerate(binding.get("subjects") or []):
                    key = _subject_key(subject, ns)
                    if key is not None:
                        index.entries[(ns, *key)].append((order, pos, binding, subject))
                order += 1
        return index

    def _matches(self, user: UserInfo, namespace: str) -> list[_Match]:
        """The ClusterRoleBindings, then the RoleBindings of `namespace`, that name `user`."""
        entries = self._current_index().entries
        found: dict[int, tuple[int, _Match]] = {}
        scopes = ("", namespace) if namespace else ("",)
        keys = [("User", user.name), *(("Group", g) for g in user.groups)]
        for scope in scopes:
            for kind, name in keys:
                for order, pos, binding, subject in entries.get((scope, kind, name), ()):
                    if order not in found or pos < found[order][0]:
                        found[order] = (pos, _Match(order, binding, subject))
        return [m for _, m in sorted(found.values(), key=lambda pm: pm[1].order)]

    # --- roles ----------------------------------------------------------------------------

    def role_rules(self, role_ref: Obj, namespace: str) -> list[Rule] | None:
        """The rules of the role a roleRef names (None if it does not exist)."""
        name = str(role_ref.get("name") or "")
        if role_ref.get("kind") == "Role":
            role = self.cache.get("roles", f"{namespace}/{name}") if namespace else None
        elif role_ref.get("kind") == "ClusterRole":
            role = self.cache.get("clusterroles", name)
        else:
            return None
        return None if role is None else list(role.get("rules") or [])

    def _visit(self, user: UserInfo, namespace: str
               ) -> Iterator[tuple[_Match, list[Rule] | None]]:
        for m in self._matches(user, namespace):
            ns = str((m.binding.get("metadata") or {}).get("namespace") or "")
            yield m, self.role_rules(m.binding.get("roleRef") or {}, ns)

    def resolve(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[str]]:
        """Every rule `user` holds in `namespace` ("" = cluster-wide only), and the errors met
        (bindings to roles that do not exist)."""
        rules: list[Rule] = []
        errs: list[str] = []
        for m, role_rules in self._visit(user, namespace):
            if role_rules is None:
                errs.append(_missing_role(m.binding))
            else:
                rules += role_rules
        return rules, errs

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        return self.resolve(user, namespace)[0]

    # --- the authorizer -------------------------------------------------------------------

    def authorize(self, attrs: Attributes) -> Decision:
        errs: list[str] = []
        for m, role_rules in self._visit(attrs.user, attrs.namespace):
            if role_rules is None:
                errs.append(_missing_role(m.binding))
                continue
            if any(rule_allows(attrs, r) for r in role_rules):
                return Decision(True, f"RBAC: allowed by {_describe(m)}")
        return Decision(False, f"RBAC: {'; '.join(errs)}" if errs else "")


def _missing_role(binding: Obj) -> str:
    ref = binding.get("roleRef") or {}
    kind = str(ref.get("kind") or "").lower()
    return f'{kind}.{_RBAC_GROUP} {go_quote(str(ref.get("name") or ""))} not found'


def _describe(m: _Match) -> str:
    """`ClusterRoleBinding "x" of ClusterRole "y" to User "u"`, or for a RoleBinding
    `RoleBinding "x/ns" of Role "y" to Group "g"`, as upstream's reasons read."""
    md = m.binding.get("metadata") or {}
    ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
    ref = m.binding.get("roleRef") or {}
    what = f"RoleBinding {go_quote(f'{name}/{ns}')}" if ns else \
        f"ClusterRoleBinding {go_quote(name)}"
    return (f"{what} of {ref.get('kind')} {go_quote(str(ref.get('name') or ''))} to "
            f"{describe_subject(m.subject, ns)}")


# --------------------------------------------------------------------------------------------
# Escalation prevention (registry/rbac/*/policybased)
# --------------------------------------------------------------------------------------------


def _only_gc_fields_changed(obj: Obj, old: Obj) -> bool:
    """Writes that only touch ownerReferences/finalizers are the garbage collector's business
    and are never an escalation (upstream IsOnlyMutatingGCFields)."""
    def strip(o: Obj) -> Obj:
        md = {k: v for k, v in (o.get("metadata") or {}).items()
              if k not in ("ownerReferences", "finalizers", "resourceVersion")}
        return {**o, "metadata": md}
    return strip(obj) == strip(old)


class EscalationCheck:
    """Admission plugin: nobody grants, through a role or a binding, rights they do not hold.

    `authorizer` answers the `escalate` and `bind` checks (upstream uses the whole authorizer
    chain); it defaults to the RBAC authorizer itself.
    """

    def __init__(self, rbac_authorizer: RBACAuthorizer,
                 authorizer: Authorizer | None = None) -> None:
        self.rbac = rbac_authorizer
        self.authorizer: Authorizer = authorizer or rbac_authorizer

    async def admit(self, req: AdmissionRequest) -> None:
        if (req.info.group != _RBAC_GROUP or req.operation not in ("CREATE", "UPDATE")
                or req.subresource or req.obj is None):
            return
        user = req.user
        if user is None or SYSTEM_MASTERS in user.groups:
            return  # the apiserver itself, or the privileged group: EscalationAllowed
        if req.old is not None and _only_gc_fields_changed(req.obj, req.old):
            return
        if req.info.name in _ROLE_RESOURCES:
            self._check_role(req, user, req.obj)
        else:
            self._check_binding(req, user, req.obj)

    def _allowed(self, user: UserInfo, verb: str, resource: str, namespace: str,
                 name: str) -> bool:
        attrs = Attributes(user=user, verb=verb, resource=resource, api_group=_RBAC_GROUP,
                           namespace=namespace, name=name)
        return self.authorizer.authorize(attrs).allowed

    def _check_role(self, req: AdmissionRequest, user: UserInfo, obj: Obj) -> None:
        if self._allowed(user, "escalate", req.info.name, req.namespace, req.name):
            return
        self._confirm_no_escalation(req, user, list(obj.get("rules") or []))
        if obj.get("aggregationRule") and not covers(
                self.rbac.rules_for(user, req.namespace), FULL_AUTHORITY)[0]:
            raise req.forbidden("must have cluster-admin privileges to use the aggregationRule")

    def _check_binding(self, req: AdmissionRequest, user: UserInfo, obj: Obj) -> None:
        ref = obj.get("roleRef") or {}
        resource = "roles" if ref.get("kind") == "Role" else "clusterroles"
        ref_name = str(ref.get("name") or "")
        if self._allowed(user, "bind", resource, req.namespace, ref_name):
            return
        rules = self.rbac.role_rules(ref, req.namespace)
        if rules is None:
            raise errors.NotFound(
                message=f'{resource}.{_RBAC_GROUP} {go_quote(ref_name)} not found',
                kind=resource, name=ref_name, group=_RBAC_GROUP)
        self._confirm_no_escalation(req, user, rules)

    def _confirm_no_escalation(self, req: AdmissionRequest, user: UserInfo,
                               rules: list[Rule]) -> None:
        owner, resolution_errors = self.rbac.resolve(user, req.namespace)
        ok, missing = covers(owner, rules)
        if ok:
            return
        lines = sorted({compact_string(r) for r in compact_rules(missing)})
        msg = (f"user {go_quote(user.name)} (groups={_go_strings(user.groups)}) is attempting "
               "to grant RBAC permissions not currently held:\n" + "\n".join(lines))
        if resolution_errors:
            msg += f"; resolution errors: [{', '.join(resolution_errors)}]"
        raise req.forbidden(msg)
