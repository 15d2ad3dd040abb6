# The two commands a new user needs: `make demo` and `make test`.
# Each installs what it needs: a virtual environment in .venv, and (for tests
# and benches only) Debian packages that are missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# binary:package pairs the tests and benches need from Debian
DEBS   := redis-server:redis-server nginx:nginx-light wrk:wrk chromium:chromium \
          chromedriver:chromium-driver slowhttptest:slowhttptest haproxy:haproxy \
          redis-sentinel:redis-sentinel
PYTEST_ARGS ?=

.PHONY: demo test lint bench venv debs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

debs:
	@missing=""; for pair in $(DEBS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${pair%%:*} ] || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(VENV)/bin/shieldwall demo

test: $(STAMP) debs
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP) debs
	$(PY) bench/proxy.py
	$(PY) bench/guard.py
	$(PY) bench/analyze.py
	$(PY) bench/monitor.py
	$(PY) bench/drill.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
