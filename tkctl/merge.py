"""Client-side apply's three-way merge, producing an RFC 7386 JSON merge patch.

Three inputs, as in kubectl: `original` (the last-applied configuration stored in the
`kubectl.kubernetes.io/last-applied-configuration` annotation), `modified` (the manifest being
applied, carrying its own new annotation) and `current` (the live object).

- A field in `original` but not in `modified` was removed from the manifest: the patch sets it
  to null (only if it is still live), so the server removes it.
- A field in `modified` that the live object does not already have, with the same value, is set.
- Fields only the server or other writers set (status, defaults, labels added by hand) are left
  alone, because they are in neither the manifest nor the last-applied configuration.

Merge patches replace lists wholesale. Because the server defaults fields inside list elements
(a container's imagePullPolicy), a list counts as unchanged when the manifest's list equals the
last-applied one and is contained in the live one element by element; otherwise the manifest's
list is sent. An empty patch means "unchanged".
"""

from __future__ import annotations

import copy
import json
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

Obj = dict[str, Any]


def three_way_patch(original: Obj | None, modified: Obj, current: Obj) -> Obj:
    """The merge patch that takes `current` to `modified`, deleting what `original` had."""
    return _diff(original or {}, modified, current)


def _diff(original: Obj, modified: Obj, current: Obj) -> Obj:
    patch: Obj = {}
    for key in original:
        if key not in modified and key in current:
            patch[key] = None
    for key, mod in modified.items():
        change = _diff_value(original.get(key), mod, current.get(key), key in current)
        if change is not _SAME:
            patch[key] = change
    return patch


_SAME = object()


def _diff_value(orig: Any, mod: Any, cur: Any, live: bool) -> Any:
    if mod is None:
        return None if live else _SAME
    if isinstance(mod, dict):
        if isinstance(cur, dict):
            sub = _diff(orig if isinstance(orig, dict) else {}, mod, cur)
            return sub if sub else _SAME
        return _SAME if not mod and cur is None else mod
    if isinstance(mod, list):
        changed_since_last = orig is not None and not _equal(orig, mod)
        return mod if changed_since_last or not contained(mod, cur) else _SAME
    return _SAME if contained(mod, cur) else mod


def _equal(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def contained(want: Any, have: Any) -> bool:
    """Whether `have` has everything `want` has (extra keys allowed; lists element-wise)."""
    if isinstance(want, dict):
        if have is None:
            return not want
        return isinstance(have, dict) and all(
            contained(v, have.get(k)) if v is not None else k not in have or have[k] is None
            for k, v in want.items()
        )
    if isinstance(want, list):
        if have is None:
            return not want
        return (isinstance(have, list) and len(want) == len(have)
                and all(contained(w, h) for w, h in zip(want, have, strict=True)))
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if isinstance(want, int | float) and isinstance(have, int | float):
        return float(want) == float(have)
    return bool(want == have)


def last_applied(obj: Obj) -> Obj | None:
    """The configuration recorded by the previous apply, or None (created otherwise)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def with_last_applied(obj: Obj) -> Obj:
    """A copy of the manifest carrying itself (minus that annotation) in the annotation."""
    clean = copy.deepcopy(obj)
    annotations = (clean.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    recorded = json.dumps(clean, sort_keys=True, separators=(",", ":")) + "\n"
    out = copy.deepcopy(clean)
    md = out.setdefault("metadata", {})
    md["annotations"] = {**(md.get("annotations") or {}), LAST_APPLIED: recorded}
    return out


