# Two commands do everything:  `make run` (execute the series)  and  `make test` (the test suite).
# Each creates .venv and installs what it needs on first use. FULL=1 runs FULL mode.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
FULL    ?= 0
NB      ?=

.PHONY: run test lab unit install clean store-outputs site student

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[notebooks,dev,audio,docs]"
	touch $(STAMP)

install: $(STAMP)

# execute every notebook (FAST by default, FULL=1 for FULL) into build/executed/, figures saved
run: $(STAMP)
	$(BIN)/tcmax series run $(if $(filter 1,$(FULL)),--full) $(if $(NB),--only $(NB))

# unit tests + every notebook executed once (FAST) and read by every notebook layer, in one pytest call
test: $(STAMP)
	TCMAX_SUITE_TARGET="make test" TCMAX_FAST=1 TQDM_DISABLE=1 $(BIN)/python -m pytest tests -p no:cacheprovider \
	  --durations=15

# the unit tests alone, spread over one pytest-xdist worker a core (each worker on one thread)
unit: $(STAMP)
	TCMAX_SUITE_TARGET="make unit" TCMAX_FAST=1 TQDM_DISABLE=1 $(BIN)/python -m pytest tests -m "not notebooks" -q \
	  -p no:cacheprovider -n auto --dist worksteal --durations=10

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# the HTML book in build/site/ (offline): executes the notebooks FAST if build/executed/ lacks any, then Sphinx
site: $(STAMP)
	@for nb in notebooks/[0-9][0-9]_*.ipynb; do test -f build/executed/$$(basename $$nb) || { $(BIN)/tcmax series run --no-publish; break; }; done
	$(BIN)/tcmax site
	@echo "open build/site/index.html (or: $(BIN)/python -m http.server -d build/site 8000)"

# the student edition into build/student/: solutions removed, an answer and a check cell per exercise
student: $(STAMP)
	$(BIN)/tcmax course student

# maintainers: re-execute in FAST mode and keep only the outputs of cells tagged keep_output
store-outputs: $(STAMP)
	$(BIN)/tcmax series store-outputs $(if $(NB),--only $(NB))

clean:
	rm -rf build .pytest_cache
