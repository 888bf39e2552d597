"""Create an admin (or promote an existing user): the createsuperuser of the shop.

    python -m auth.create_admin --email admin@example.com [--password P]

Without --password it asks twice, without echo. Reads the same settings as the service (SHOP_*), so it
writes to the database the service uses, and migrates that schema first if needed."""

from __future__ import annotations

import argparse
import getpass
import sys

from auth.app import MIGRATIONS
from auth.domain import InvalidCredentialsFormat, canonical_email
from auth.passwords import Passwords
from auth.service import ensure_admin
from auth.settings import AuthSettings
from shopkit.db import Database
from shopkit.migrate import upgrade
from shopkit.uow import unit_of_work

OUTCOMES = {
    "created": "created admin {email}",
    "promoted": "{email} already existed: promoted to admin (password unchanged)",
    "unchanged": "{email} is already an admin (password unchanged)",
}


def _prompt_password() -> str:
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != password:
        raise InvalidCredentialsFormat("the passwords do not match")
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth.create_admin", description=__doc__.splitlines()[0])
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", help="prompted for when omitted (keeps it out of the shell history)")
    parser.add_argument("--full-name", default="Shop admin")
    args = parser.parse_args(argv)
    settings = AuthSettings()
    db = Database(settings.service_database_url("auth"), service="auth")
    try:
        password = args.password if args.password is not None else _prompt_password()
        upgrade(db, MIGRATIONS)
        with unit_of_work(db) as uow:
            outcome = ensure_admin(uow, Passwords(), email=args.email, password=password, full_name=args.full_name)
    except InvalidCredentialsFormat as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(OUTCOMES[outcome].format(email=canonical_email(args.email)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
