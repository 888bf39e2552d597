"""Typed reads of decoded form parameters, refusing bad values the way Stripe words it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.stripe_sandbox.errors import StripeError, parameter_invalid, parameter_missing, parameter_unknown
from sandbox.web import is_web_url

_INTEGER = re.compile(r"^-?\d+$")
# The currencies the shop can be configured with, plus a few common ones.
CURRENCIES = frozenset({"bdt", "usd", "eur", "gbp", "inr", "cad", "aud", "sgd", "jpy"})
# Stripe's limits on metadata.
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500


def reject_unknown(params: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    allowed_set = set(allowed)
    for name in params:
        if name not in allowed_set:
            raise parameter_unknown(f"{prefix}[{name}]" if prefix else name)


def opt_str(params: Mapping[str, Any], name: str, *, max_length: int = 5000) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise parameter_invalid(name, f"Invalid string: {name} must be a string.")
    if len(value) > max_length:
        raise parameter_invalid(name, f"Invalid string: {value[:20]}...; must be at most {max_length} characters")
    return value


def req_str(params: Mapping[str, Any], name: str, *, max_length: int = 5000) -> str:
    value = opt_str(params, name, max_length=max_length)
    if value is None or value == "":
        raise parameter_missing(name)
    return value


def opt_int(params: Mapping[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _INTEGER.match(value):
        raise parameter_invalid(name, f"Invalid integer: {value}", code="parameter_invalid_integer")
    return int(value)


def req_int(params: Mapping[str, Any], name: str) -> int:
    value = opt_int(params, name)
    if value is None:
        raise parameter_missing(name)
    return value


def opt_url(params: Mapping[str, Any], name: str) -> str | None:
    value = opt_str(params, name, max_length=5000)
    if value is None:
        return None
    if not is_web_url(value):
        raise StripeError(400, "Not a valid URL", code="url_invalid", param=name)
    return value


def currency(value: Any, param: str) -> str:
    if not isinstance(value, str) or value == "":
        raise parameter_missing(param)
    code = value.lower()
    if code not in CURRENCIES:
        raise parameter_invalid(param, f"Invalid currency: {value}.")
    return code


def opt_dict(params: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if value is None:
        return None
    if value == "":
        # `metadata=` (an empty value) is how Stripe clients send an empty hash.
        return {}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise parameter_invalid(name, f"Invalid object: {name} must be a hash.", code="parameter_invalid_empty")
    return value


def metadata(params: Mapping[str, Any], name: str = "metadata") -> dict[str, str]:
    raw = opt_dict(params, name) or {}
    if len(raw) > METADATA_MAX_KEYS:
        raise parameter_invalid(name, f"Invalid {name}: at most {METADATA_MAX_KEYS} keys are allowed.")
    result: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise parameter_invalid(f"{name}[{key}]", f"Invalid {name}[{key}]: must be a string.")
        if len(key) > METADATA_KEY_MAX or len(value) > METADATA_VALUE_MAX:
            raise parameter_invalid(
                f"{name}[{key}]",
                f"Metadata keys can be at most {METADATA_KEY_MAX} characters and values at most "
                f"{METADATA_VALUE_MAX} characters.",
            )
        # An empty value unsets the key, as in Stripe.
        if value != "":
            result[key] = value
    return result


def expand(params: Mapping[str, Any]) -> list[str]:
    value = params.get("expand")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise parameter_invalid("expand", "Invalid array: expand must be a list of strings.")
