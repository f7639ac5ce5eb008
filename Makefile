# ds01: one target per thing a person does. Each target does its own set-up.
#   make run    the daemon on a simulated host (no GPU, no root, no Docker needed)
#   make test   lint + type check + every test, end-to-end ones included (what CI runs)
#   make bench  benchmarks, as medians and ratios
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBS := libsystemd-dev pkg-config gcc libcjson-dev
FAKENVML := build/fakenvml/libnvidia-ml.so.1
# VS Code's Dev Containers CLI, which the end-to-end tests drive through ds01's Docker socket
DEVCONTAINER := build/node/node_modules/.bin/devcontainer
ROOT ?= $(CURDIR)/run/root

.PHONY: venv run check-config test lint unit e2e bench demo fakenvml fuzz clean

$(STAMP): pyproject.toml scripts/ensure-debs.sh scripts/launchers.sh
	scripts/ensure-debs.sh $(DEBS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	scripts/launchers.sh $(BIN)
	touch $(STAMP)

# bytecode for every module, written as root: the users who run ds01 cannot write __pycache__
# in root's tree, and without it each command compiles its modules anew on every call
venv: $(STAMP)
	$(BIN)/python -I -m compileall -q ds01d

run: $(STAMP)
	scripts/run.sh $(ROOT)

check-config: $(STAMP)
	$(BIN)/ds01 --root $(ROOT) check-config

lint: $(STAMP)
	$(BIN)/ruff check ds01d tests bench
	$(BIN)/mypy

# the fake libnvidia-ml.so.1 the NVML adapter's tests run the real nvidia-ml-py against
# (with the MIG profiles and placements of the GPU models it fakes beside it)
$(FAKENVML): tests/fakenvml/fakenvml.c ds01d/adapters/gpu_models.json $(STAMP)
	mkdir -p $(dir $@)
	gcc -O2 -Wall -Wextra -Werror -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o $@ $< -lcjson -ldl
	cp ds01d/adapters/gpu_models.json $(dir $@)gpu-models.json

fakenvml: $(FAKENVML)

# promtool (Debian's prometheus package) checks the alert rules and a real scrape
unit: $(STAMP) $(FAKENVML)
	scripts/ensure-debs.sh prometheus systemd
	LD_LIBRARY_PATH=$(CURDIR)/build/fakenvml $(BIN)/pytest -q

# real systemd + real dockerd in a private PID namespace (scripts/testbed.sh); needs root
$(DEVCONTAINER):
	command -v npm >/dev/null || scripts/ensure-debs.sh nodejs npm
	npm install --prefix build/node --no-audit --no-fund --silent @devcontainers/cli@0.89.0

e2e: $(STAMP) $(FAKENVML) $(DEVCONTAINER)
	scripts/e2e.sh

test: lint unit e2e

# the fuzz tests with 100,000 cases per entry point (make test runs 20,000)
fuzz: $(STAMP) $(FAKENVML)
	DS01_FUZZ_EXAMPLES=100000 DS01_FUZZ_PROCESSES=500 LD_LIBRARY_PATH=$(CURDIR)/build/fakenvml \
	  $(BIN)/pytest -q --hypothesis-show-statistics tests/unit/test_fuzz.py

demo: $(STAMP)
	scripts/demo.sh

bench: venv $(FAKENVML)
	$(BIN)/python bench/run.py
	scripts/bench-testbed.sh

clean:
	rm -rf $(VENV) build run .mypy_cache .ruff_cache .pytest_cache .hypothesis
