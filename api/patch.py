"""JSON merge patch (RFC 7386), the one patch semantics both ends need: the apiserver applies
`--type merge` patches with it, and tkctl predicts what the server will store."""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces.

    `target` is not modified; parts of it the patch does not touch may be shared with the
    result.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result
