"""The local cache an informer keeps: client-go's `cache.Store` and `cache.Indexer`.

Controllers read current state from here instead of asking the apiserver (level-triggered
`sync(key)` reads the cache and converges). Objects are keyed by `namespace/name` (client-go's
MetaNamespaceKeyFunc) and can additionally be found through named indexes ("all pods on node X",
"all objects in namespace Y") without scanning the whole cache.

Invariants (the same as client-go's threadSafeStore, minus the lock: one event loop owns it):

- for every index name I and every stored key k, k appears under exactly the values
  `indexers[I](items[k])` and nowhere else; add/update/delete/replace maintain that;
- objects handed out are the stored objects themselves, not copies. Callers must treat them as
  read-only (copy with `obj.model_copy(deep=True)` before changing one), exactly like client-go's
  "do not mutate objects from the cache" rule; a mutated cached object would silently diverge from
  the apiserver and corrupt every other reader's view;
- `resource_version` is the resourceVersion of the last `replace` (the list snapshot), or whatever
  the owner (the Reflector) last recorded with `set_resource_version`.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from api.meta import TypedObject
from api.selectors import Selector

T = TypeVar("T", bound=TypedObject)

KeyFunc = Callable[[T], str]
IndexFunc = Callable[[T], list[str]]

NAMESPACE_INDEX = "namespace"


def meta_namespace_key(obj: TypedObject) -> str:
    """client-go's MetaNamespaceKeyFunc: `namespace/name`, or `name` when cluster-scoped."""
    return obj.key


def split_meta_namespace_key(key: str) -> tuple[str, str]:
    """The inverse of `meta_namespace_key`: `(namespace, name)`, namespace "" if cluster-scoped."""
    ns, sep, name = key.partition("/")
    if not sep:
        return "", key
    if "/" in name:
        raise ValueError(f"unexpected key format: {key!r}")
    return ns, name


def namespace_index(obj: TypedObject) -> list[str]:
    """client-go's MetaNamespaceIndexFunc: index objects by their namespace."""
    return [obj.metadata.namespace or ""]


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def field_index(path: str) -> Callable[[TypedObject], list[str]]:
    """An index function over one field, written with its JSON path: `field_index("spec.nodeName")`.

    Each camelCase segment is looked up as the model's snake_case attribute (the models are
    pydantic with camelCase aliases). A missing or None field indexes under "" so that "objects
    without a node" (unscheduled pods) are one `by_index(..., "")` away, as client-go does with
    `spec.nodeName` indexes.
    """
    parts = [_CAMEL.sub("_", p).lower() for p in path.split(".")]

    def index(obj: TypedObject) -> list[str]:
        value: Any = obj
        for part in parts:
            value = getattr(value, part, None)
            if value is None:
                return [""]
        return [str(value)]

    index.__name__ = f"field_index[{path}]"
    return index


class Store(Generic[T]):
    """A keyed cache of typed objects with optional named indexes (client-go's Indexer).

    Not thread-safe: it belongs to one event loop, and every mutation is a synchronous call, so
    nothing can observe a half-applied change.
    """

    def __init__(
        self,
        key_func: KeyFunc[T] = meta_namespace_key,
        indexers: dict[str, IndexFunc[T]] | None = None,
    ) -> None:
        self._key_func = key_func
        self._items: dict[str, T] = {}
        self._indexers: dict[str, IndexFunc[T]] = {}
        # index name -> index value -> set of keys
        self._indices: dict[str, dict[str, set[str]]] = {}
        self.resource_version = ""
        if indexers:
            self.add_indexers(indexers)

    # --- keys ------------------------------------------------------------------------------

    def key_of(self, obj: T) -> str:
        return self._key_func(obj)

    # --- mutation ---------------------------------------------------------------------------

    def add(self, obj: T) -> None:
        """Insert or replace the object under its key (Add and Update are the same operation)."""
        key = self._key_func(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._update_indices(old, obj, key)

    update = add

    def delete(self, obj: T) -> None:
        """Remove the object's key; deleting an absent key is a no-op (as in client-go)."""
        self.delete_key(self._key_func(obj))

    def delete_key(self, key: str) -> T | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._update_indices(old, None, key)
        return old

    def replace(self, items: Iterable[T], resource_version: str = "") -> None:
        """Make the store hold exactly `items` (a fresh list) and rebuild every index."""
        self._items = {self._key_func(o): o for o in items}
        self.resource_version = resource_version
        self._rebuild_indices()

    def set_resource_version(self, resource_version: str) -> None:
        self.resource_version = resource_version

    # --- reads ------------------------------------------------------------------------------

    def get(self, key_or_obj: str | T) -> T | None:
        """The cached object by key (`ns/name`) or by an object with that key; None if absent."""
        key = key_or_obj if isinstance(key_or_obj, str) else self._key_func(key_or_obj)
        return self._items.get(key)

    get_by_key = get

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def list(self) -> builtins.list[T]:
        return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        return list(self._items)

    def items(self) -> builtins.list[tuple[str, T]]:
        return list(self._items.items())

    # --- indexes ----------------------------------------------------------------------------

    def add_indexers(self, indexers: dict[str, IndexFunc[T]]) -> None:
        """Register more index functions; existing objects are indexed at once.

        client-go refuses new indexers once the informer has started; here it is safe at any
        time because the index is rebuilt synchronously from the current items.
        """
        clash = set(indexers) & set(self._indexers)
        if clash:
            raise ValueError(f"indexer conflict: {sorted(clash)}")
        self._indexers.update(indexers)
        for name, fn in indexers.items():
            index: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    def get_indexers(self) -> dict[str, IndexFunc[T]]:
        return dict(self._indexers)

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """Keys of the objects whose index function returned `value` (sorted, for stable output)."""
        return sorted(self._index(index_name).get(value, ()))

    def by_index(self, index_name: str, value: str) -> builtins.list[T]:
        """Objects whose index function returned `value`."""
        return [self._items[k] for k in self.index_keys(index_name, value)]

    def index(self, index_name: str, obj: T) -> builtins.list[T]:
        """Objects sharing any index value with `obj` (client-go's Indexer.Index)."""
        fn = self._indexer(index_name)
        idx = self._index(index_name)
        keys: set[str] = set()
        for value in fn(obj):
            keys |= idx.get(value, set())
        return [self._items[k] for k in sorted(keys)]

    def list_index_func_values(self, index_name: str) -> builtins.list[str]:
        return sorted(self._index(index_name))

    def _indexer(self, name: str) -> IndexFunc[T]:
        try:
            return self._indexers[name]
        except KeyError:
            raise KeyError(f"index {name!r} does not exist") from None

    def _index(self, name: str) -> dict[str, set[str]]:
        self._indexer(name)
        return self._indices[name]

    def _update_indices(self, old: T | None, new: T | None, key: str) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            old_values = set(fn(old)) if old is not None else set()
            new_values = set(fn(new)) if new is not None else set()
            for value in old_values - new_values:
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        # Drop empty sets so list_index_func_values reports live values only.
                        del index[value]
            for value in new_values - old_values:
                index.setdefault(value, set()).add(key)

    def _rebuild_indices(self) -> None:
        indexers, self._indexers, self._indices = self._indexers, {}, {}
        self.add_indexers(indexers)


# client-go calls the indexed store an Indexer; it is the same object here.
Indexer = Store


class Lister(Generic[T]):
    """Read-only typed access to an informer's store (client-go's generated listers).

    `list()` and `get()` never touch the network: they read the cache, which may lag the
    apiserver; controllers that create objects use expectations for exactly that reason.
    """

    def __init__(self, store: Store[T]) -> None:
        self._store = store

    def list(
        self, namespace: str | None = None, selector: Selector | None = None,
        predicate: Callable[[T], bool] | None = None,
    ) -> builtins.list[T]:
        """Objects (in `namespace`, if given) whose labels match `selector` and `predicate`."""
        if namespace is not None and NAMESPACE_INDEX in self._store.get_indexers():
            objs = self._store.by_index(NAMESPACE_INDEX, namespace)
        elif namespace is not None:
            objs = [o for o in self._store.list() if (o.metadata.namespace or "") == namespace]
        else:
            objs = self._store.list()
        if selector is not None:
            objs = [o for o in objs if selector.matches(o.metadata.labels)]
        if predicate is not None:
            objs = [o for o in objs if predicate(o)]
        return objs

    def get(self, name: str, namespace: str | None = None) -> T | None:
        return self._store.get(f"{namespace}/{name}" if namespace else name)

    def by_index(self, index_name: str, value: str) -> builtins.list[T]:
        return self._store.by_index(index_name, value)
