"""The shop's data for a run, made through the public API with the Python client (setup only: the
load itself comes from wrk and Node.js): an admin, products with plenty of stock, signed-in customers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tools.shopclient import Http, login, register


@dataclass
class Scenario:
    gateway: str
    admin_token: str
    tokens: list[str]
    products: list[str]


async def prepare(
    gateway: str, *, admin: tuple[str, str], customers: int, products: int, stock: int = 1_000_000
) -> Scenario:
    async with Http(limit=100, retry_for=60) as http:
        boss = await login(http, gateway, *admin)
        product_ids = [
            (await boss.create_product(price=f"{100 + i}.00", stock=stock, name=f"Bench product {i}"))["id"]
            for i in range(products)
        ]
        signed_in = await asyncio.gather(*(register(http, gateway) for _ in range(customers)))
    return Scenario(gateway, boss.token, [c.token for c in signed_in], product_ids)
