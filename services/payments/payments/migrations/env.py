from shopkit.migrate import run_migrations

from payments.models import Base

run_migrations(Base.metadata)
