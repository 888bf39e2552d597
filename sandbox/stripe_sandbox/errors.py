"""Stripe's error shape: `{"error": {"type", "code", "message", "param"}}` with an HTTP status."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class StripeError(Exception):
    """An API error as Stripe reports it.

    `saved` says whether an idempotent request that failed this way keeps its answer for replay.
    Stripe saves a result only once the endpoint began executing: a request refused while parsing
    or validating its parameters (or for a missing object) may be retried with the same key.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        saved: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.saved = saved

    def body(self) -> dict[str, Any]:
        # Like Stripe, leave out `code` and `param` when they do not apply.
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def parameter_missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def parameter_invalid(param: str, message: str, code: str = "parameter_invalid_string") -> StripeError:
    return StripeError(400, message, code=code, param=param)


def parameter_unknown(param: str) -> StripeError:
    return StripeError(
        400,
        f"Received unknown parameter: {param}",
        code="parameter_unknown",
        param=param,
    )


def resource_missing(kind: str, object_id: str, *, param: str | None = None) -> StripeError:
    """A missing object: 404 when it is named in the path, 400 when it is a parameter's value."""
    return StripeError(
        400 if param else 404,
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param or "id",
    )


def cannot_expand(expand: list[str], expandable: Collection[str]) -> None:
    for index, name in enumerate(expand):
        if name not in expandable:
            raise StripeError(400, f"This property cannot be expanded ({name}).", param=f"expand[{index}]")
