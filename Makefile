# Maskmill: `make run` sets up and starts the platform on embedded defaults; `make test` sets up
# and runs the whole suite. Both create .venv on first use and reinstall when requirements change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: setup setup-test run test lint bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# The reference packages (segment-anything, MobileSAM) are for equivalence tests only; MobileSAM
# is installed without its optional dependencies, which would pull torchvision and timm.
$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -r requirements-test-nodeps.txt
	touch $@

setup: $(VENV)/.runtime

setup-test: $(VENV)/.test

test: setup-test
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check engine annotator benchmarks tests

clean:
	rm -rf $(VENV) var

# Embedded platform: migrate, demo project + admin (credentials printed once), then the web server
# on 127.0.0.1:8000, a Celery worker and beat on the filesystem broker. One Ctrl-C stops them all.
run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setup_demo
	$(PY) -m annotator.devrun
