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
          redis-sentinel:redis-sentinel nft:nftables
PYTEST_ARGS ?=
# The hot path compiled with mypyc (src/shieldwall/_build.py lists it): the
# editable install is rebuilt whenever one of these sources changes, so
# `make test` always runs what is in the tree. (Run pytest directly after an
# edit and the stale compiled build is skipped: the pure modules run, with
# one line on stderr saying so.)
HOT_SRC := $(shell sed -n 's/^    "shieldwall\.\(.*\)",$$/\1/p' src/shieldwall/_build.py | tr . / | sed 's|.*|src/shieldwall/&.py|')
# A quick subset run against the pure-Python modules too (SHIELDWALL_PURE=1)
PURE_TESTS := tests/proxy/test_proxy_framing.py tests/proxy/test_proxy_path.py tests/proxy/test_proxy_early.py \
              tests/guard/test_guard_core.py tests/test_build.py

.PHONY: demo test lint bench venv build debs clean

$(STAMP): pyproject.toml setup.py src/shieldwall/_build.py $(HOT_SRC)
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel 'mypy>=1.10'
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	$(PY) -c 'from shieldwall._build import main; main()'
	touch $(STAMP)

venv: $(STAMP)
build: $(STAMP)

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
	SHIELDWALL_PURE=1 $(PY) -m pytest -q -n 2 --dist loadfile $(PURE_TESTS)

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
	find src -name '*.so' -delete
