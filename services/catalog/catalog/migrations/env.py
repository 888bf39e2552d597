from shopkit.migrate import run_migrations

from catalog.models import Base

run_migrations(Base.metadata)
