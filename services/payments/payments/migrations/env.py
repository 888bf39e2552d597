from payments.models import Base
from shopkit.migrate import run_migrations

run_migrations(Base.metadata)
