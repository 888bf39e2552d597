from shopkit.migrate import run_migrations
from sqlalchemy import MetaData

run_migrations(MetaData())
