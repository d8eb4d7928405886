# Two entry points: `make demo` and `make test`. Both create .venv when missing
# and install the package with its test extras (torch from the local wheel cache).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_RUN ?= demo-run

.PHONY: install demo test lint browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests of the viewer (root on CI and dev machines).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "warning: chromium not found and not root; browser tests will be skipped"; fi; }

demo: install
	$(BIN)/medcne info src/medcne/datasets/data/bloodmnist_sample.npz

test: install browser
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests bench scripts

clean:
	rm -rf $(VENV) $(DEMO_RUN) .pytest_cache
