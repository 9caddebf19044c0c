"""Kubernetes resource quantities (`250m`, `64Mi`, `1e3`): parsing, arithmetic helpers, formatting.

Requests, limits, node capacity and emptyDir size limits are all `resource.Quantity` strings in
Kubernetes. The scheduler sums them, the kubelet turns them into Docker CPU shares and memory bytes,
and validation compares requests with limits, so they must parse exactly as upstream does. Values
are `decimal.Decimal` so that `0.1 + 0.2` CPU is exactly `300m`.

The pydantic type `Quantity` keeps the string the user wrote (ints become "1"), because Kubernetes
round-trips a manifest's `cpu: 500m` unchanged rather than canonicalising it.
"""

from __future__ import annotations

import decimal
import math
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
# Upstream's error strings (k8s.io/apimachinery/pkg/api/resource: ErrFormatWrong, ErrSuffix,
# ErrNumeric).
ERR_FORMAT_WRONG = f"quantities must match the regular expression '{QUANTITY_REGEX}'"
ERR_SUFFIX = "unable to parse quantity's suffix"
ERR_NUMERIC = "unable to parse numeric part of quantity"

_RE = re.compile(QUANTITY_REGEX)
_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")

_BINARY: dict[str, int] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL: dict[str, int] = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
}

# Exponents like 1e999999 would make Decimal arithmetic explode; Kubernetes caps far lower too.
_MAX_EXPONENT = 100

_CTX = decimal.Context(prec=60, Emax=1000, Emin=-1000)
# Orders of magnitude a quantity may have: far beyond any resource (1e18 is an exabyte), and far
# enough inside _CTX that the helpers' arithmetic (x1000, x2^60) cannot overflow it. A longer
# number (`cpu: 999...9` with 2,000 digits) is refused here rather than raising
# decimal.Overflow somewhere downstream.
_MAX_MAGNITUDE = 200


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity; the message is upstream's."""


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """Parse a Kubernetes quantity into its exact decimal value (`"250m"` -> `Decimal("0.25")`).
    QuantityError (upstream's words) for anything else, including numbers beyond
    _MAX_MAGNITUDE orders of magnitude."""
    try:
        out = _parse(value)
    except decimal.DecimalException:
        raise QuantityError(ERR_NUMERIC) from None
    if out and not -_MAX_MAGNITUDE <= out.adjusted() <= _MAX_MAGNITUDE:
        raise QuantityError(ERR_NUMERIC)
    return out


def _parse(value: str | int | float | Decimal) -> Decimal:
    if isinstance(value, bool):
        raise QuantityError(ERR_FORMAT_WRONG)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(ERR_FORMAT_WRONG)
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise QuantityError(ERR_FORMAT_WRONG)
    s = value.strip()
    m = _RE.match(s)
    if not m:
        raise QuantityError(ERR_FORMAT_WRONG)
    number, suffix = m.group(1), m.group(2)
    if not _NUMBER.match(number):
        raise QuantityError(ERR_FORMAT_WRONG)
    # The regex lets a sign slip into the suffix group ("1-"), so check the suffix exactly.
    base = Decimal(number, context=_CTX)
    if suffix in _BINARY:
        return _CTX.multiply(base, Decimal(2) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return _CTX.scaleb(base, _DECIMAL[suffix])
    if _EXPONENT.match(suffix):
        exp = int(suffix[1:])
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError(ERR_SUFFIX)
        return _CTX.scaleb(base, exp)
    raise QuantityError(ERR_SUFFIX)


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def cpu_millis(q: str | int | float | Decimal) -> int:
    """CPU in millicores, rounded up as Kubernetes' MilliValue does (`0.1` -> 100, `1n` -> 1)."""
    millis = _CTX.multiply(parse_quantity(q), Decimal(1000))
    return int(millis.to_integral_value(decimal.ROUND_CEILING))


def to_bytes(q: str | int | float | Decimal) -> int:
    """A memory/storage quantity in whole bytes, rounded up (Kubernetes' Value())."""
    return int(parse_quantity(q).to_integral_value(decimal.ROUND_CEILING))


def format_quantity(value: Decimal | int, binary: bool = False) -> str:
    """A canonical quantity string: `Decimal("0.25")` -> `250m`, `67108864` (binary) -> `64Mi`.

    Picks the largest suffix that represents the value exactly, as Kubernetes' String() does.
    """
    v = Decimal(value)
    if v == 0:
        return "0"
    if binary and v == v.to_integral_value():
        for suffix, power in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
            unit = Decimal(2) ** power
            if v % unit == 0:
                return f"{int(v / unit)}{suffix}"
        return str(int(v))
    for suffix, exp in sorted(_DECIMAL.items(), key=lambda kv: -kv[1]):
        scaled = _CTX.scaleb(v, -exp)
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{suffix}"
    # Finer than nanounits: Kubernetes rounds up to 1n.
    return f"{int(_CTX.scaleb(v, 9).to_integral_value(decimal.ROUND_CEILING))}n"


def _coerce(value: Any) -> str:
    """Validate a quantity from JSON/YAML and keep the user's spelling (numbers as strings)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PydanticCustomError("quantity", ERR_FORMAT_WRONG)
    try:
        parse_quantity(value)
    except QuantityError as e:
        raise PydanticCustomError("quantity", str(e)) from None
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        # YAML `memory: 1.0` -> "1": no reason to invent a trailing ".0".
        return str(int(value))
    return str(value) if not isinstance(value, str) else value.strip()


# A resource.Quantity field: accepts str/int/float, stores and serializes the string.
Quantity = Annotated[str, BeforeValidator(_coerce)]
