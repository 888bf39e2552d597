"""What both sandboxes need from HTTP: their public base URL, bodies, HTML pages, a CLI.

The sandboxes are plain Starlette apps rather than FastAPI ones: they run inside the benchmark,
and FastAPI's per-request dependency solving and extra middleware cost about as much CPU as
everything a sandbox does for a request.
"""

from __future__ import annotations

import argparse
import html
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import uvicorn
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

Model = TypeVar("Model", bound=BaseModel)


def public_base_url(request: Request) -> str:
    """The absolute URL this app is served at, mount prefix included, without a trailing slash.

    `request.base_url` is not enough: Starlette builds it from the *outermost* app's root path, so
    inside `parent.mount("/sandbox/stripe", app)` it would drop the prefix. The mount prefix is in
    the scope's `root_path`.
    """
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    root_path = str(scope.get("root_path", "")).rstrip("/")
    return f"{scope.get('scheme', 'http')}://{host}{root_path}"


class InvalidControlBody(Exception):
    def __init__(self, errors: Sequence[Mapping[str, object]]) -> None:
        super().__init__("invalid control body")
        self.errors = errors


async def control_body(request: Request, model: type[Model]) -> Model:
    """A control's JSON body as `model`; a bad one is answered 422, as FastAPI would."""
    try:
        return model.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        raise InvalidControlBody(exc.errors(include_url=False, include_context=False)) from None


async def invalid_control_body(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidControlBody)
    return JSONResponse({"detail": [dict(error) for error in exc.errors]}, status_code=422)


def form_fields(body: bytes) -> dict[str, str]:
    """A flat urlencoded form (the hosted pages' forms); the last value of a repeated field wins."""
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` appended to whatever query it already carries."""
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def is_web_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """A minimal self-contained HTML page (no external assets: the sandbox runs offline)."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{esc(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
        "form{margin:1rem 0}input,button{font-size:1rem;padding:.4rem .8rem;margin:.2rem 0}"
        ".error{color:#b00020}.note{color:#555;font-size:.9rem}</style></head>"
        f"<body><h1>{esc(title)}</h1>{body}</body></html>"
    )


# As shopkit.serve's, which the sandbox image (docker/service.Dockerfile) does not ship with.
KEEP_ALIVE_SECONDS = 75


def run_cli(description: str, create_app: Callable[[], ASGIApp], default_port: int) -> None:
    """`python -m sandbox.<provider>_sandbox [--host H] [--port P] [--access-log]`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--log-level", default="info")
    # Off by default, like the services': a log line per request is CPU the benchmark would measure.
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        # uvicorn's 5 s default closes idle connections before browsers and pooled clients drop them,
        # and a customer reusing one at that moment reads a reset instead of the payment page.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
