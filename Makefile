# The README's two commands: `make run` and `make test`. .ci/run calls `make test` only.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
DEMO_HOME ?= $(CURDIR)/.bastion-demo
# System packages the tests need (Debian names). Installed by `make test` when run as root.
SYSTEM_PACKAGES := sqlite3 gnome-keyring dbus libsecret-tools chromium wrk postgresql curl locales

.PHONY: driver-fix run test venv system-deps lint typecheck pytest pytest-portable docs bench clean dist mutate node-deps ts-types

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the project in ~2 s instead of pip's ~20 s; it comes from the package index too.
$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

# The bench extra (SQLAlchemy, sqlite-utils: bench/repo.py's comparison points) too, so every
# bench/ script runs in this venv (tests/test_bench.py runs each once); and the dist extra
# (PyInstaller): the tests build the standalone executable once and run it.
$(VENV)/.installed: pyproject.toml Makefile | $(UV)
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet -e '.[test,bench,dist]'
	@$(MAKE) --no-print-directory driver-fix
	touch $@

# apsw-sqlite3mc and the plain apsw both install the `apsw` package: a venv made before the
# switch has both, and the files of whichever came last. Remove both, then reinstall ours.
driver-fix:
	@if $(BIN)/python -c "import importlib.metadata as m; m.distribution('apsw')" 2>/dev/null; then \
	  VIRTUAL_ENV=$(VENV) $(UV) pip uninstall --quiet apsw apsw-sqlite3mc; \
	  VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet 'apsw-sqlite3mc>=3.54'; \
	fi

venv: $(VENV)/.installed

# What the daemon needs and nothing more: bastion with its server extra (no test tools, no
# browser driver). `make test` adds the rest to the same venv.
$(VENV)/.installed-server: pyproject.toml Makefile | $(UV)
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet -e '.[server]'
	@$(MAKE) --no-print-directory driver-fix
	touch $@

# The demo: a home in .bastion-demo/ with two demo services (HTTP echo, log-printing worker)
# and the daemon in the foreground. It prints the API/dashboard URL once it listens; Ctrl-C
# stops the services and the daemon.
run: $(VENV)/.installed-server
	@BASTION_HOME=$(DEMO_HOME) $(BIN)/bastion init
	@BASTION_HOME=$(DEMO_HOME) $(BIN)/python -m bastion.demo
	@echo "API token: $(DEMO_HOME)/run/token  (send it as 'Authorization: Bearer <token>')"
	@echo "CLI on this home, from another terminal: export BASTION_HOME=$(DEMO_HOME); .venv/bin/bastion services list"
	@BASTION_HOME=$(DEMO_HOME) exec $(BIN)/bastion serve --port 0

system-deps:
	@bash scripts/system-deps.sh $(SYSTEM_PACKAGES)

lint: venv
	$(BIN)/ruff check conftest.py src tests bench examples scripts
	$(BIN)/ruff format --check conftest.py src tests bench examples scripts

# src/ is checked as Linux, macOS and Windows see it: every platform branch type-checks.
typecheck: venv
	$(BIN)/mypy --strict src
	$(BIN)/mypy --strict --platform darwin src
	$(BIN)/mypy --strict --platform win32 src
	$(BIN)/mypy --strict examples

pytest: venv
	bash scripts/run-tests.sh $(PYTEST_ARGS)

# The TypeScript client's packages (clients/typescript): the committed lockfile, exactly;
# install scripts off (.npmrc), so nothing but the registry's packages is fetched.
TS_DIR := clients/typescript
$(TS_DIR)/node_modules/.installed: $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund
	touch $@

node-deps: $(TS_DIR)/node_modules/.installed

# Regenerate the client's types from the daemon's OpenAPI (tests fail while they are stale).
ts-types: venv node-deps
	$(BIN)/python scripts/openapi_json.py > $(TS_DIR)/openapi.json
	cd $(TS_DIR) && npm run --silent generate && rm openapi.json

# The paths macOS and Windows take, run here (docs/platforms.md): the store and supervisor
# suites once more with BASTION_PORTABLE=1 -- no /proc, children die with the supervisor
# through the pipe shim, backups copy through the SQLite backup API. Slow tests and the ones
# that need Linux's subreaper are left to the main run (about 2 minutes on 2 cores).
PORTABLE_TESTS ?= tests/supervisor tests/store tests/test_platform.py tests/test_fs.py tests/test_runfiles.py
pytest-portable: venv
	BASTION_PORTABLE=1 bash scripts/run-tests.sh $(PORTABLE_TESTS) -m "not slow and not subreaper" -q

test: system-deps venv node-deps lint typecheck pytest pytest-portable

docs: venv
	$(BIN)/python -m bastion._docs

# The standalone executable: dist/bastion and dist/bastion-<target-triple> (Tauri's
# externalBin name), one file, no Python needed where it runs (docs/desktop.md).
dist: venv
	$(BIN)/python scripts/build_dist.py --out dist --work build/dist

# Mutation testing of the modules that carry the promises (minutes per module, not in `make
# test`): docs/mutation.md is rewritten; fails while a survivor is unexplained.
# MODULES="vault/crypto.py store/plan.py" limits the run.
mutate: venv
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet -e '.[test,bench,dist,mutate]'
	$(BIN)/python scripts/mutate.py $(MODULES)

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .mutate
