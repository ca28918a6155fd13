# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv on first use and are safe to re-run.
PY := .venv/bin/python
PIP := .venv/bin/pip

.PHONY: demo test lint setup
setup: .venv/.installed

# torch/torchvision are pinned to the builds pip finds on this machine's local mirror;
# elsewhere pip fetches the same versions from PyPI.
.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(PY) -m picsift demo

test: setup
	$(PY) -m pytest -q

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy
