# Two entry points: `make demo` and `make test`. Both create .venv when missing
# and install the package with its test extras (torch from the local wheel cache).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_RUN ?= demo-run

.PHONY: install demo test docs lint browser viewer-assets node clean

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

VIEWER_JS := src/medcne/viewer/js
VIEWER_BUNDLE := src/medcne/viewer/static/medcne-viewer.js

# Node.js/npm to bundle the viewer's JavaScript (Debian's packages when missing).
node:
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "error: npm is needed to build the viewer (install Node.js)"; exit 1; fi; }

# The viewer's JavaScript (regl-scatterplot + viewer.js) bundled by esbuild into one file, with the
# licence notices of the npm packages inside it at its top (js/build.js, `npm run build`). A wheel
# or sdist is built after it (setup.py refuses to build one without the bundle).
viewer-assets: $(VIEWER_BUNDLE)
$(VIEWER_BUNDLE): $(wildcard $(VIEWER_JS)/*.js) $(VIEWER_JS)/package.json $(VIEWER_JS)/package-lock.json
	@$(MAKE) --no-print-directory node
	cd $(VIEWER_JS) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

SAMPLE := src/medcne/datasets/data/bloodmnist_sample.npz

# The main job on the bundled sample: summary, t-SimCNE map (fast CPU settings), viewer.
demo: install viewer-assets
	$(BIN)/medcne info $(SAMPLE)
	$(BIN)/medcne fit $(SAMPLE) --out $(DEMO_RUN) --quick --preset rotate --overwrite
	$(BIN)/medcne view $(DEMO_RUN) --overwrite > /dev/null
	@echo
	@echo "map:     $(DEMO_RUN)/map.png"
	@echo "metrics: $(DEMO_RUN)/metrics.json"
	@echo "viewer:  $(DEMO_RUN)/viewer/index.html (open it in a browser)"
	@echo
	@echo "Next, on your own folder of images (one sub-folder per class):"
	@echo "  source .venv/bin/activate"
	@echo "  medcne info my_images/ --size 28"
	@echo "  medcne fit my_images/ --size 28 --budget 15m --preset rotate --out my-run"
	@echo "  medcne view my-run --open"
	@echo "Documentation: make docs, then open site/index.html (sources in docs/)"

test: install browser viewer-assets
	$(BIN)/python -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The documentation site (MkDocs + Material + mkdocstrings), built offline into site/.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "documentation: site/index.html"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_RUN) site .pytest_cache src/medcne/viewer/static $(VIEWER_JS)/node_modules
