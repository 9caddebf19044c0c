"""Server-side apply: merging a manager's applied configuration and tracking who owns which field.

`kubectl apply --server-side` sends the configuration a manager wants (a partial object) with
`fieldManager=NAME`; the server merges it into the live object and records, in
`metadata.managedFields`, the set of fields each manager owns (`fieldsV1`, upstream's format:
`{"f:spec": {"f:replicas": {}}}`, list items of keyed lists as `k:{"name":"web"}`, set items as
`v:"value"`). That record is what makes apply declarative:
- a field the manager applied before and leaves out now is removed (unless another manager owns
  it too);
- a field another manager owns with a different value is a conflict (409) unless the apply forces,
  which moves the ownership;
- ordinary writes (update, patch) take the fields they change for their own manager (operation
  Update), so `kubectl scale` after an apply shows up as a conflict on `.spec.replicas`.

Lists follow the models' list types (api/patchmeta.py): keyed lists (`listType=map`) merge item
by item, sets as sets, everything else is atomic and replaced whole. Pure: no I/O.

A documented subset of upstream (structured-merge-diff): no per-version conversion of field sets,
no `$patch` directives in applied configurations, and a manager's Update entries are per manager
name (upstream also splits by apiVersion).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from api import errors
from api.meta import now_rfc3339
from api.patchmeta import field_meta, field_model

Obj = dict[str, Any]
Path = tuple[str, ...]  # fieldsV1 keys from the root: ("f:spec", "f:containers", 'k:{...}', ...)

_SKIP_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation",
              "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")


def _item_key(item: Any, keys: tuple[str, ...]) -> str:
    if not isinstance(item, dict):
        raise errors.BadRequest(message=f"a keyed list item must be an object, got "
                                f"{json.dumps(item)[:60]}")
    return "k:" + json.dumps({k: item.get(k) for k in keys if k in item}, separators=(",", ":"),
                             sort_keys=True)


def _list_kind(model: type[BaseModel] | None, field: str) -> tuple[str, tuple[str, ...]]:
    fm = field_meta(model, field) if model is not None else None
    if fm is None:
        return "atomic", ()
    if fm.list_type == "map" or fm.merge_key:
        return "map", fm.list_map_keys or (fm.merge_key,)
    if fm.list_type == "set" or fm.merges:
        return "set", ()
    return "atomic", ()


def field_paths(obj: Any, model: type[BaseModel] | None, prefix: Path = ()) -> Iterator[Path]:
    """Every field `obj` sets, as fieldsV1 paths (each map key, and each leaf)."""
    if not isinstance(obj, dict):
        return
    for k, v in obj.items():
        if not prefix and k in ("apiVersion", "kind"):
            continue
        if prefix == ("f:metadata",) and k in _SKIP_META:
            continue
        if not prefix and k == "status":
            continue  # apply of the main resource never owns status
        path = (*prefix, f"f:{k}")
        yield path
        child = field_model(model, k) if model is not None else None
        if isinstance(v, dict):
            yield from field_paths(v, child, path)
        elif isinstance(v, list):
            kind, keys = _list_kind(model, k)
            if kind == "map":
                for item in v:
                    ipath = (*path, _item_key(item, keys))
                    yield ipath
                    yield from field_paths(item, child, ipath)
            elif kind == "set":
                for item in v:
                    yield (*path, "v:" + json.dumps(item, separators=(",", ":")))


def to_fields_v1(paths: set[Path]) -> Obj:
    root: Obj = {}
    for p in sorted(paths):
        node = root
        for part in p:
            node = node.setdefault(part, {})
    _mark_items(root)
    return root


def _mark_items(node: Obj) -> None:
    for k, v in node.items():
        if (k.startswith("k:") or k.startswith("f:")) and v:
            if k.startswith("k:"):
                v.setdefault(".", {})
            _mark_items(v)


def from_fields_v1(fields: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(fields, dict):
        return out
    for k, v in fields.items():
        if k == ".":
            continue
        path = (*prefix, k)
        out.add(path)
        out |= from_fields_v1(v, path)
    return out


def _get(obj: Any, path: Path, model: type[BaseModel] | None) -> tuple[bool, Any]:
    """(found, value) at a fieldsV1 path."""
    cur = obj
    for part in path:
        if part.startswith("f:") and isinstance(cur, dict):
            if part[2:] not in cur:
                return False, None
            cur = cur[part[2:]]
        elif part.startswith("k:") and isinstance(cur, list):
            want = json.loads(part[2:])
            cur = next((i for i in cur if isinstance(i, dict)
                        and all(i.get(k) == v for k, v in want.items())), None)
            if cur is None:
                return False, None
        elif part.startswith("v:") and isinstance(cur, list):
            value = json.loads(part[2:])
            return (value in cur), value
        else:
            return False, None
    return True, cur


def _leaf(path: Path, applied_paths: set[Path]) -> bool:
    return not any(len(p) > len(path) and p[:len(path)] == path for p in applied_paths)


def merge(live: Any, applied: Any, model: type[BaseModel] | None, top: bool = True) -> Any:
    """The applied configuration merged over the live object (keyed lists item by item)."""
    if not isinstance(live, dict) or not isinstance(applied, dict):
        return copy.deepcopy(applied)
    out = dict(live)
    for k, v in applied.items():
        child = field_model(model, k) if model is not None else None
        if isinstance(v, list) and isinstance(out.get(k), list):
            kind, keys = _list_kind(model, k)
            if kind == "map":
                items = list(out[k])
                index = {_item_key(i, keys): n for n, i in enumerate(items)
                         if isinstance(i, dict)}
                for item in v:
                    key = _item_key(item, keys)
                    if key in index:
                        items[index[key]] = merge(items[index[key]], item, child, False)
                    else:
                        items.append(copy.deepcopy(item))
                out[k] = items
                continue
            if kind == "set":
                out[k] = list(out[k]) + [i for i in v if i not in out[k]]
                continue
        out[k] = merge(out.get(k), v, child, False) if isinstance(v, dict) else copy.deepcopy(v)
    return out


def _remove(obj: Any, path: Path) -> None:
    """Drop the field (or list item) at `path` from obj, in place."""
    if not path:
        return
    found, parent = _get(obj, path[:-1], None) if len(path) > 1 else (True, obj)
    if not found:
        return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        want = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(
            i.get(k) == v for k, v in want.items()))]
    elif last.startswith("v:") and isinstance(parent, list):
        value = json.loads(last[2:])
        parent[:] = [i for i in parent if i != value]


def _entries(obj: Obj) -> list[Obj]:
    return [e for e in ((obj.get("metadata") or {}).get("managedFields") or [])
            if isinstance(e, dict)]


def _format_conflicts(conflicts: list[tuple[str, Path]], api_version: str) -> str:
    def dotted(p: Path) -> str:
        out = ""
        for part in p:
            out += "." + part[2:] if part.startswith("f:") else f"[{part[2:]}]"
        return out

    lines = [f'conflict with "{m}" using {api_version}: {dotted(p)}' for m, p in conflicts]
    if len(lines) == 1:
        return f"Apply failed with 1 conflict: {lines[0]}"
    return f"Apply failed with {len(lines)} conflicts: " + "\n".join(lines)


def apply(live: Obj | None, applied: Obj, model: type[BaseModel], manager: str,
          force: bool, api_version: str) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: it does not exist yet).
    Conflict (409) naming every conflicting field unless `force`."""
    applied = copy.deepcopy(applied)
    (applied.setdefault("metadata", {})).pop("managedFields", None)
    mine = set(field_paths(applied, model))
    if live is None:
        new = copy.deepcopy(applied)
        new["metadata"]["managedFields"] = [_entry(manager, "Apply", api_version, mine)]
        return new
    entries = _entries(live)
    others: list[tuple[Obj, set[Path]]] = []
    previous: set[Path] = set()
    for e in entries:
        fields = from_fields_v1(e.get("fieldsV1"))
        if e.get("manager") == manager and e.get("operation") == "Apply":
            previous = fields
        else:
            others.append((e, fields))
    conflicts: list[tuple[str, Path]] = []
    for e, fields in others:
        for p in sorted(mine & fields):
            if not _leaf(p, mine):
                continue
            found_live, lv = _get(live, p, model)
            _, av = _get(applied, p, model)
            if isinstance(lv, dict) and isinstance(av, dict):
                continue  # a map is structure: its members are compared one by one
            if found_live and lv != av:
                conflicts.append((str(e.get("manager", "")), p))
    if conflicts and not force:
        raise errors.Conflict(message=_format_conflicts(conflicts, api_version),
                              kind="", name=str(applied["metadata"].get("name", "")))
    new = merge(live, {k: v for k, v in applied.items() if k != "status"}, model)
    owned_by_others = set().union(*(f for _, f in others)) if others else set()
    gone = previous - mine - owned_by_others
    # Remove the topmost of them only: a removed list item takes its fields with it.
    for p in sorted(gone, key=len, reverse=True):
        if not any(p[:i] in gone for i in range(1, len(p))):
            _remove(new, p)
    kept: list[Obj] = []
    for e, fields in others:
        if force:
            fields = fields - mine
        if fields:
            kept.append({**e, "fieldsV1": to_fields_v1(fields)})
    new["metadata"]["managedFields"] = [*kept, _entry(manager, "Apply", api_version, mine)]
    return new


def record_update(old: Obj | None, new: Obj, model: type[BaseModel], manager: str,
                  api_version: str) -> None:
    """After an ordinary write by `manager`: it owns the fields it changed (taken from other
    managers, without conflict, as upstream's Update operation), in place on `new`. The
    managedFields a client sent back unchanged (or left out) are kept from `old`."""
    md = new.setdefault("metadata", {})
    entries = _entries(old) if old is not None else []
    sent = md.get("managedFields")
    if isinstance(sent, list) and sent:
        entries = [e for e in sent if isinstance(e, dict)]
    if not manager:
        if entries:
            md["managedFields"] = entries
        else:
            md.pop("managedFields", None)
        return
    before = set(field_paths(old, model)) if old is not None else set()
    after = set(field_paths(new, model))
    changed = {p for p in after if p not in before or _get(old, p, model) != _get(new, p, model)}
    changed = {p for p in changed if _leaf(p, after)}
    if not changed and not any(e.get("manager") == manager for e in entries):
        if entries:
            md["managedFields"] = entries
        return
    kept: list[Obj] = []
    mine: set[Path] = set()
    for e in entries:
        fields = from_fields_v1(e.get("fieldsV1")) & after
        if e.get("manager") == manager and e.get("operation") == "Update":
            mine = fields
            continue
        fields -= changed
        if fields:
            kept.append({**e, "fieldsV1": to_fields_v1(fields)})
    mine |= changed
    # Parents of owned leaves are part of the set (fieldsV1 is a tree).
    mine |= {p[:i] for p in mine for i in range(1, len(p))}
    md["managedFields"] = [*kept, _entry(manager, "Update", api_version, mine)] if mine else kept
    if not md["managedFields"]:
        md.pop("managedFields")


def _entry(manager: str, operation: str, api_version: str, fields: set[Path]) -> Obj:
    return {"manager": manager, "operation": operation, "apiVersion": api_version,
            "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(fields)}
