"""Give failed messages another go once their cause is fixed: dead outbox rows back to pending (the
running relay publishes them), dead-lettered messages back to the service's queue with a fresh retry
budget (with the in-process bus of `make run`, the dead letters kept in the service's database are
marked for replay and the running process hands them to its handlers again within seconds). With
neither flag, both. Reads the same settings as the service (SHOP_DATABASE_URL, SHOP_AMQP_URL,
SHOP_BUS_NAMESPACE).

    python -m shopkit.replay --service orders [--outbox] [--dead-letters]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from shopkit import deadletters
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.db import Database
from shopkit.outbox import replay_dead
from shopkit.settings import KitSettings


def replay_outbox(service: str, settings: KitSettings) -> int:
    db = Database(settings.service_database_url(service), service=service, pool_size=1)
    try:
        with db.engine.begin() as connection:
            return replay_dead(connection)
    finally:
        db.dispose()


def request_replay_of_kept_dead_letters(service: str, settings: KitSettings) -> int:
    db = Database(settings.service_database_url(service), service=service, pool_size=1)
    try:
        with db.engine.begin() as connection:
            return deadletters.request_replay(connection)
    finally:
        db.dispose()


async def replay_dead_letters(service: str, settings: KitSettings) -> int:
    if not settings.amqp_url:
        return request_replay_of_kept_dead_letters(service, settings)
    transport = RabbitMQTransport(settings.amqp_url, exchange=f"{settings.bus_namespace}shop.events")
    await transport.connect()
    try:
        return await transport.replay_dead_letters(f"{settings.bus_namespace}{service}")
    finally:
        await transport.close()


def main(argv: Sequence[str] | None = None, settings: KitSettings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shopkit.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", required=True, help="the service whose messages to replay, e.g. orders")
    parser.add_argument("--outbox", action="store_true", help="reset the service's dead outbox rows")
    parser.add_argument("--dead-letters", action="store_true", help="move its dead-lettered messages back")
    args = parser.parse_args(argv)
    settings = settings or KitSettings()
    both = not args.outbox and not args.dead_letters
    if args.outbox or both:
        print(f"outbox: {replay_outbox(args.service, settings)} dead row(s) set pending again")
    if args.dead_letters or both:
        moved = asyncio.run(replay_dead_letters(args.service, settings))
        where = f"{settings.bus_namespace}{args.service}" if settings.amqp_url else f"{args.service}'s handlers"
        print(f"dead letters: {moved} message(s) moved back to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
