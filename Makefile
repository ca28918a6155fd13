# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv on first use and are safe to re-run.
PY := .venv/bin/python
PIP := .venv/bin/pip
STATIC := src/picsift/static/gallery.js

.PHONY: demo test lint setup js chromium
setup: .venv/.installed $(STATIC) chromium

# torch/torchvision are pinned to the builds pip finds on this machine's local mirror;
# elsewhere pip fetches the same versions from PyPI.
.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install --quiet -e ".[dev]"
	touch $@

# The widget front-ends (js/) bundled by esbuild into src/picsift/static/ (generated, not committed).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(STATIC): node_modules/.installed js/build.mjs $(wildcard js/*.js js/*.css)
	npm run build

js: $(STATIC)

# The real-browser tests drive Debian's Chromium (Playwright's own browser download is not used).
chromium:
	@test -x /usr/bin/chromium || { \
	  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y --no-install-recommends chromium; }; }

demo: .venv/.installed $(STATIC)
	$(PY) -m picsift demo --notebook notebooks/quickstart.ipynb --out demo-output

# Two pytest-xdist workers, one per core: each gets whole modules (tests/conftest.py), the Ray modules share one,
# and the longest groups start first (bench/README.md, "The suite").
test: setup
	$(PY) -m pytest -q -n 2

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy
