"""Request field types whose JSON schema says exactly what their validation accepts: each rule is a
pattern or a bound that pydantic enforces and the OpenAPI document shows, not a validator the
document cannot see. (Patterns are written for both pydantic's regex engine and Python's `re`.)"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, StringConstraints
from pydantic.json_schema import WithJsonSchema

# Zero-width (non-)joiners are part of how Bengali and other scripts are written; every other control
# (Cc) or format (Cf) character (NUL, line breaks, bidi overrides) is refused in free text.
JOINERS = frozenset("\u200c\u200d")
_FORMAT_PLANES = (range(0x0, 0x20000), range(0xE0000, 0xE0080))


def _escape(code: int) -> str:
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _char_class(codes: Iterable[int]) -> str:
    """`codes` as regex class ranges (without the brackets)."""
    ranges: list[list[int]] = []
    for code in sorted(codes):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in ranges)


CONTROLS = _char_class(
    code
    for plane in _FORMAT_PLANES
    for code in plane
    if unicodedata.category(chr(code)) in ("Cc", "Cf") and chr(code) not in JOINERS
)
# Printable text with something besides white space in it: after `strip_whitespace`, min_length=1.
PRINTABLE_NONBLANK = f"^[^{CONTROLS}]*[^{CONTROLS}\\s][^{CONTROLS}]*$"
NONBLANK = r"\S"
# What a query string may hold: the gateway refuses an (encoded) ASCII control in it with 400.
QUERY_TEXT = r"^[^\x00-\x1f\x7f]*$"


def text(max_length: int, *, printable: bool = False) -> StringConstraints:
    """Stripped, non-empty after stripping, bounded (and with `printable`, no control characters)."""
    return StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=max_length,
        pattern=PRINTABLE_NONBLANK if printable else NONBLANK,
    )


def case_insensitive_choice(words: Iterable[str]) -> str:
    """A pattern matching any of `words` in any case, white space around allowed (it is stripped)."""

    def letters(word: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)

    return r"^\s*(?:" + "|".join(letters(word) for word in sorted(words)) + r")\s*$"


def amount(*, digits: int = 12, places: int = 2, gt: int | None = None, ge: int | None = None) -> Any:
    """A decimal amount, as a JSON string (`"12.50"`, what the API answers with) or a number.

    A number must be a multiple of 10**-places; a string is plain digits with at most `places`
    decimals (no exponent, no sign): both what pydantic's Decimal accepts under these bounds."""
    whole = digits - places
    fraction = rf"(?:\.[0-9]{{1,{places}}})?"
    if gt is not None:  # only gt=0 with two places is needed: some digit must not be zero
        assert gt == 0 and places == 2
        nonzero_fraction = r"\.(?:[1-9][0-9]?|0[1-9])"
        string_pattern = rf"^(?:0*[1-9][0-9]{{0,{whole - 1}}}{fraction}|0+{nonzero_fraction})$"
    else:
        assert ge in (None, 0)
        string_pattern = rf"^0*(?:[1-9][0-9]{{0,{whole - 1}}}|0){fraction}$"
    largest = float(Decimal(10) ** whole - Decimal(1).scaleb(-places))
    number: dict[str, Any] = {"type": "number", "maximum": largest, "multipleOf": float(Decimal(1).scaleb(-places))}
    if gt is not None:
        number["exclusiveMinimum"] = gt
    if ge is not None:
        number["minimum"] = ge
    schema = {"anyOf": [number, {"type": "string", "pattern": string_pattern}]}
    return Annotated[
        Decimal,
        Field(gt=gt, ge=ge, max_digits=digits, decimal_places=places),
        _StringPattern(string_pattern),
        WithJsonSchema(schema),
    ]


class _StringPattern:
    """Validation half of `amount`: a string must match the pattern the schema shows."""

    def __init__(self, pattern: str) -> None:
        import re

        self.regex = re.compile(pattern)

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def check(value: Any) -> Any:
            if isinstance(value, str) and not self.regex.match(value):
                raise ValueError(f"expected plain digits, e.g. '12.50' (pattern {self.regex.pattern})")
            return value

        return core_schema.no_info_before_validator_function(check, handler(source))


def omit_default(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of a field that may be absent but not null: no `"default": null` shown."""
    schema.pop("default", None)


# Money amounts of the API (12 digits, 2 of them decimals, as stored): to mypy, plain Decimals.
if TYPE_CHECKING:
    PositiveAmount = Decimal
    NonNegativeAmount = Decimal
else:
    PositiveAmount = amount(gt=0)
    NonNegativeAmount = amount(ge=0)


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer is a number with no fraction: 3 and 3.0, never "3" nor true.
    if isinstance(value, bool | str | bytes):
        raise ValueError("expected a JSON integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# For a body's integer field, after its bounds (`Annotated[int, Field(ge=1), JSON_INTEGER]`, so that
# the bounds stay in the schema): what JSON Schema calls an integer, no more (pydantic's lax int also
# takes "3" and true) and no less (its strict int refuses 3.0).
JSON_INTEGER = BeforeValidator(_json_integer)
