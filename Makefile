# Shop: `make run` (the whole shop in one process) and `make test` (every test) are all you need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SRC_DIRS := libs services/auth services/catalog services/orders services/payments services/gateway .

.PHONY: help install run run-distributed up test test-unit test-e2e lint bench schemas clean

help:
	@echo "make run              the whole shop in one process on http://127.0.0.1:8000 (SQLite, in-process bus, sandboxes)"
	@echo "make test             every test (PostgreSQL and RabbitMQ from SHOP_TEST_DATABASE_URL / SHOP_TEST_AMQP_URL)"
	@echo "make run-distributed  one process per service against SHOP_DATABASE_URL and SHOP_AMQP_URL"
	@echo "make bench            the benchmark (distributed mode, local PostgreSQL and RabbitMQ); BENCH_ARGS=--short for a quick run"
	@echo "make lint             ruff and mypy"

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed") if sys.version_info < (3, 11) else None'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -c 'import site, sys; open(site.getsitepackages()[0] + "/shop-src.pth", "w").write("\n".join(sys.argv[1:]) + "\n")' $(abspath $(SRC_DIRS))
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	MALLOC_ARENA_MAX=2 $(BIN)/python -m allinone

# Local defaults for the servers this machine runs; the environment overrides them.
run-distributed: export SHOP_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/shop
run-distributed: export SHOP_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
run-distributed: $(STAMP)
	$(BIN)/python -m tools.supervisor --log-dir var/log

test: $(STAMP)
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m unit

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -m e2e tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy libs/shopkit libs/contracts $(foreach s,auth catalog orders payments gateway,services/$(s)/$(s)) sandbox allinone tools

up:
	docker compose up --build

bench: $(STAMP)
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

schemas: $(STAMP)
	$(BIN)/python -m contracts.export_schemas docs/events

clean:
	rm -rf var
