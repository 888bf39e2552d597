"""Every dependency a route declares is async: FastAPI runs a sync one in its threadpool, a thread hop
(tens of microseconds of CPU and a wake-up) on every request, before the route's own hop."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, get_type_hints

import pytest
from fastapi import params

pytestmark = pytest.mark.unit

ROUTE_MODULES = ("auth.api", "catalog.api", "orders.api", "payments.api", "shopkit.auth")


def _declared(function: Callable[..., Any]) -> Iterator[params.Depends]:
    for parameter in inspect.signature(function).parameters.values():
        if isinstance(parameter.default, params.Depends):
            yield parameter.default
    for hint in get_type_hints(function, include_extras=True).values():
        yield from (meta for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, params.Depends))


def _functions(module: ModuleType) -> Iterator[Callable[..., Any]]:
    for value in vars(module).values():
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            yield value


def sync_dependencies(module: ModuleType) -> set[str]:
    found = set()
    for function in _functions(module):
        for depends in _declared(function):
            call = depends.dependency
            if call is not None and not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)):
                found.add(f"{function.__qualname__} -> {call.__qualname__}")
    return found


@pytest.mark.parametrize("name", ROUTE_MODULES)
def test_route_dependencies_are_async(name: str) -> None:
    assert sync_dependencies(importlib.import_module(name)) == set()


def test_a_sync_dependency_is_found() -> None:
    module = ModuleType("demo")

    def context() -> int:
        return 1

    def route(value: int = params.Depends(context)) -> int:
        return value

    route.__module__ = context.__module__ = "demo"
    module.route = route  # type: ignore[attr-defined]

    assert sync_dependencies(module) == {
        "test_a_sync_dependency_is_found.<locals>.route -> test_a_sync_dependency_is_found.<locals>.context"
    }
