"""shopkit.fields: what each type's JSON schema shows is what its validation accepts."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from shopkit.fields import (
    JOINERS,
    JSON_INTEGER,
    PRINTABLE_NONBLANK,
    NonNegativeAmount,
    PositiveAmount,
    case_insensitive_choice,
    text,
)

pytestmark = pytest.mark.unit


def accepts(adapter: TypeAdapter[Any], value: object) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "positive", "non_negative"),
    [
        ("12.50", True, True),
        ("0.01", True, True),
        ("0001.5", True, True),
        ("9999999999.99", True, True),
        ("0", False, True),
        ("0.00", False, True),
        ("12345678901", False, False),
        ("1.234", False, False),
        ("1e3", False, False),
        ("-1", False, False),
        (" 1", False, False),
        ("", False, False),
        (".5", False, False),
        (12.5, True, True),
        (0, False, True),
        (0.57, True, True),
        (0.5700000000000001, False, False),
        (10_000_000_000, False, False),
    ],
)
def test_an_amount_s_string_pattern_and_number_bounds_are_its_validation(
    value: object, positive: bool, non_negative: bool
) -> None:
    for amount, expected in ((PositiveAmount, positive), (NonNegativeAmount, non_negative)):
        adapter: TypeAdapter[Decimal] = TypeAdapter(amount)
        assert accepts(adapter, value) == expected, (amount, value)
        number, string = adapter.json_schema()["anyOf"]
        if isinstance(value, str):
            assert bool(re.search(string["pattern"], value)) == expected, value
        else:
            assert number["type"] == "number" and number["multipleOf"] == 0.01


def test_printable_text_refuses_exactly_the_controls_and_format_characters_but_the_joiners() -> None:
    class Line(BaseModel):
        value: Annotated[str, text(50, printable=True)]

    pattern = re.compile(PRINTABLE_NONBLANK)
    for code in [*range(0x0, 0x3000), *range(0xFE00, 0xFFFE), 0x110BD, 0x1D173, 0xE0001, 0xE007F]:
        char = chr(code)
        if unicodedata.category(char) == "Cs":
            continue
        refused = unicodedata.category(char) in ("Cc", "Cf") and char not in JOINERS
        candidate = f"a{char}b"
        assert (pattern.search(candidate) is None) == refused, hex(code)
        try:
            Line(value=candidate)
            validated = True
        except ValidationError:
            validated = False
        assert validated == (not refused), hex(code)
    assert pattern.search("   ") is None
    with pytest.raises(ValidationError):
        Line(value="   ")


def test_a_case_insensitive_choice_matches_the_words_in_any_case_and_nothing_else() -> None:
    pattern = re.compile(case_insensitive_choice(["BD", "IN"]))
    assert all(pattern.search(word) for word in ("BD", "bd", "bD", " in "))
    assert not any(pattern.search(word) for word in ("BDX", "B D", "US", ""))


def test_a_json_integer_is_3_and_3_point_0_never_a_string_or_a_boolean() -> None:
    class Line(BaseModel):
        quantity: Annotated[int, Field(ge=1, le=5), JSON_INTEGER]

    assert Line(quantity=3).quantity == 3 and Line(quantity=3.0).quantity == 3  # type: ignore[arg-type]
    for refused in ("3", True, 3.5, 0, 6):
        with pytest.raises(ValidationError):
            Line(quantity=refused)  # type: ignore[arg-type]
    assert Line.model_json_schema()["properties"]["quantity"] == {
        "maximum": 5,
        "minimum": 1,
        "title": "Quantity",
        "type": "integer",
    }
