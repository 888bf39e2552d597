from sqlalchemy import MetaData

from shopkit.migrate import run_migrations

run_migrations(MetaData())
