# Two commands from a fresh clone: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test dagster api clean

APT_PACKAGES := tesseract-ocr tesseract-ocr-eng fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

$(STAMP): pyproject.toml
	@command -v tesseract >/dev/null && [ -d /usr/share/fonts/truetype/dejavu ] || { \
	  command -v apt-get >/dev/null || { echo "install tesseract-ocr (with English data) and DejaVu fonts, then retry"; exit 1; }; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[clip,dev]'
	touch $(STAMP)

# The main job: embedded Postgres, migrations, a sample catalog and sample photos ingested through Dagster.
run: $(STAMP)
	$(BIN)/covr demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The same instance the `covr` CLI records its runs in (Settings.dagster_home): DAGSTER_HOME, else COVR_HOME/dagster.
dagster: DAGSTER_HOME_DIR = $(abspath $(or $(DAGSTER_HOME),$(or $(COVR_HOME),.covr)/dagster))
dagster: $(STAMP)
	mkdir -p "$(DAGSTER_HOME_DIR)"
	DAGSTER_HOME="$(DAGSTER_HOME_DIR)" $(BIN)/dagster dev -w workspace.yaml

api: $(STAMP)
	$(BIN)/covr api

clean:
	rm -rf .covr
