"""Request and response models of the public auth API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from auth.domain import EMAIL_PATTERN, MAX_EMAIL_LENGTH, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, as_utc, valid_email
from shopkit.fields import NONBLANK

# The pattern valid_email checks (around white space that canonical_email strips), shown in the schema.
Email = Annotated[str, Field(max_length=MAX_EMAIL_LENGTH, pattern=EMAIL_PATTERN), AfterValidator(valid_email)]
RefreshTokenText = Annotated[str, Field(min_length=1, max_length=200)]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "rina@example.com", "password": "s3cret-pass", "full_name": "Rina"}]},
    )

    email: Email
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    full_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NONBLANK)]


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "rina@example.com", "password": "s3cret-pass"}]}
    )

    # Not checked against the email rules: a malformed email is just one without an account (401).
    email: str = Field(min_length=1, max_length=MAX_EMAIL_LENGTH)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: RefreshTokenText


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: RefreshTokenText


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str
    role: str
    created_at: Annotated[datetime, AfterValidator(as_utc)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
