# Two commands from a fresh clone: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` installs only what the embedded default uses; CLIP=1 adds the cover-embedding stack (torch,
# torchvision, open-clip: ~1 GB). `make test` always installs it, so the tests cover it with random weights.
CLIP ?=
RUN_STAMP := $(VENV)/.installed-run$(if $(CLIP),-clip,)
RUN_EXTRAS := $(if $(CLIP),[clip],)

.PHONY: run test dagster api clean

APT_PACKAGES := tesseract-ocr tesseract-ocr-eng fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

define system_packages
	@command -v tesseract >/dev/null && [ -d /usr/share/fonts/truetype/dejavu ] || { \
	  command -v apt-get >/dev/null || { echo "install tesseract-ocr (with English data) and DejaVu fonts, then retry"; exit 1; }; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
endef

$(STAMP): pyproject.toml
	$(system_packages)
	$(BIN)/pip install -q -e '.[clip,dev]'
	touch $(STAMP)

$(RUN_STAMP): pyproject.toml
	$(system_packages)
	$(BIN)/pip install -q -e '.$(RUN_EXTRAS)'
	touch $(RUN_STAMP)

# The main job: embedded Postgres, migrations, a sample catalog and sample photos ingested through Dagster.
run: $(RUN_STAMP)
	$(BIN)/covr demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The same instance the `covr` CLI records its runs in (Settings.dagster_home): DAGSTER_HOME, else COVR_HOME/dagster.
dagster: DAGSTER_HOME_DIR = $(abspath $(or $(DAGSTER_HOME),$(or $(COVR_HOME),.covr)/dagster))
dagster: $(RUN_STAMP)
	mkdir -p "$(DAGSTER_HOME_DIR)"
	DAGSTER_HOME="$(DAGSTER_HOME_DIR)" $(BIN)/dagster dev -w workspace.yaml

api: $(RUN_STAMP)
	$(BIN)/covr api

clean:
	rm -rf .covr
