from shopkit.migrate import run_migrations

from orders.models import Base

run_migrations(Base.metadata)
