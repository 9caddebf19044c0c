"""Quantity parsing, formatting and the pydantic Quantity type."""

from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from api.quantity import (
    ERR_FORMAT_WRONG,
    Quantity,
    QuantityError,
    cpu_millis,
    format_quantity,
    parse_quantity,
    to_bytes,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", Decimal("0.25")),
        ("1", Decimal(1)),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("64Mi", Decimal(67108864)),
        ("1Ki", Decimal(1024)),
        ("1Gi", Decimal(2**30)),
        ("1Ei", Decimal(2**60)),
        ("1k", Decimal(1000)),
        ("2M", Decimal(2_000_000)),
        ("1G", Decimal(10**9)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("1E", Decimal(10**18)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1.5e-3", Decimal("0.0015")),
        ("5n", Decimal("0.000000005")),
        ("7u", Decimal("0.000007")),
        ("-1", Decimal(-1)),
        ("+2", Decimal(2)),
        (1, Decimal(1)),
        (0.5, Decimal("0.5")),
    ],
)
def test_parse(text, value) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "bad", ["", "abc", "1x", "1 Mi", "1.2.3", "Mi", "1KiB", "1mm", "1e", "--1", ".", "1e999999",
            "1-", True, None, [], float("nan")],
)
def test_parse_rejects(bad) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_cpu_millis_and_bytes() -> None:
    assert cpu_millis("250m") == 250
    assert cpu_millis("0.1") == 100
    assert cpu_millis("1") == 1000
    assert cpu_millis("1n") == 1  # rounds up like MilliValue
    assert to_bytes("64Mi") == 67108864
    assert to_bytes("1.5") == 2
    assert to_bytes("1G") == 10**9


@pytest.mark.parametrize(
    ("value", "binary", "text"),
    [(Decimal("0.25"), False, "250m"), (Decimal(67108864), True, "64Mi"), (Decimal(1000), False,
      "1k"), (Decimal(0), False, "0"), (Decimal(1500), True, "1500"), (Decimal(3), False, "3")],
)
def test_format(value, binary, text) -> None:
    assert format_quantity(value, binary) == text
    assert parse_quantity(text) == value


class _M(BaseModel):
    q: Quantity
    m: dict[str, Quantity] | None = None


def test_pydantic_type_keeps_spelling() -> None:
    assert _M.model_validate({"q": "500m"}).q == "500m"
    assert _M.model_validate({"q": 1}).q == "1"
    assert _M.model_validate({"q": 1.0}).q == "1"
    assert _M.model_validate({"q": 0.5}).q == "0.5"
    assert _M.model_validate({"q": "1", "m": {"cpu": 2}}).model_dump()["m"] == {"cpu": "2"}


@pytest.mark.parametrize("bad", ["1x", True, [1], None, {"a": 1}])
def test_pydantic_type_rejects(bad) -> None:
    with pytest.raises(ValidationError) as ei:
        _M.model_validate({"q": bad})
    assert ERR_FORMAT_WRONG in str(ei.value)
