"""The email pattern the API's schema shows accepts what valid_email accepts, and nothing else."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from auth.domain import EMAIL_PATTERN, InvalidCredentialsFormat, valid_email
from auth.schemas import Email

pytestmark = pytest.mark.unit

SAMPLES = [
    "rina@example.com",
    " Rina@Example.COM ",
    "\trina@example.com\n",
    "a@b.co",
    "a@b",
    "@b.co",
    "a@@b.co",
    "a b@c.de",
    "a@b..co",
    "a@.b.co",
    "a\x1d@b.co",
    "a@b.co\x1c",
    "a\x00@b.co",
    "a\x85@b.co",
    "ü@bücher.de",
    "a@b.c\u3000",
    "",
]


@pytest.mark.parametrize("email", SAMPLES)
def test_the_schema_s_pattern_is_valid_email(email: str) -> None:
    try:
        valid_email(email)
        accepted = True
    except InvalidCredentialsFormat:
        accepted = False
    assert bool(re.search(EMAIL_PATTERN, email)) == accepted, repr(email)
    # And pydantic (its own regex engine) enforcing the pattern before valid_email agrees.
    try:
        TypeAdapter(Email).validate_python(email)
        validated = True
    except ValidationError:
        validated = False
    assert validated == accepted, repr(email)
