# SMART reproduction. Two commands matter:  make reproduce   and   make test
PROFILE ?= small
SEED ?= 0
FORCE ?= 0
ARGS ?=
PY := .venv/bin/python
STAMP := .venv/.installed

BEYOND ?= 0

.PHONY: setup reproduce beyond test test-fast figures bench paper clean-runs lab

$(STAMP): pyproject.toml scripts/install_python.sh scripts/install_system.sh
	bash scripts/install_system.sh
	bash scripts/install_python.sh
	touch $(STAMP)

setup: $(STAMP)

## Run every notebook in order with papermill (skips steps whose inputs did not change; FORCE=1 redoes all;
## ARGS="key=value ..." overrides any config field, e.g. make reproduce PROFILE=paper ARGS="steps=50";
## BEYOND=1 adds the analyses beyond the paper, as make beyond)
reproduce: $(STAMP)
	$(PY) -m smart_core reproduce --profile $(PROFILE) --seed $(SEED) $(if $(filter 1,$(FORCE)),--force,) $(if $(filter 1,$(BEYOND)),--beyond,) $(ARGS)

## The paper's pipeline (done steps skipped) plus beyond the paper: best-of-N, reward transfer to unheard
## SoundFonts, the GRPO design-choice ablations (notebook 05)
beyond: $(STAMP)
	$(PY) -m smart_core reproduce --profile $(PROFILE) --seed $(SEED) $(if $(filter 1,$(FORCE)),--force,) --beyond $(ARGS)

## The test suite (CPU, real FluidSynth, real miditok, tiny models)
test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

## Rebuild every figure and table from saved run artifacts (no training, no sampling)
figures: $(STAMP)
	$(PY) -m smart_core figures --profile $(PROFILE) $(ARGS)

## Benchmarks: render, score, sample, then our GRPO step vs TRL's GRPOTrainer (a few minutes on CPU)
bench: $(STAMP)
	$(PY) bench/run_all.py
	$(PY) bench/grpo_vs_trl.py

## Build paper/build/smart_repro.pdf from figures/$(PROFILE) (pdflatex: installed by make setup via scripts/install_system.sh)
paper: figures
	@command -v pdflatex >/dev/null || { echo "pdflatex not found: run  make setup  (or: sudo apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils)"; exit 1; }
	@mkdir -p paper/build
	@cd paper && for pass in 1 2; do max_print_line=10000 pdflatex -interaction=nonstopmode -halt-on-error -output-directory build -jobname smart_repro '\def\figdir{../figures/$(PROFILE)}\input{smart_repro.tex}' >/dev/null || { tail -n 20 build/smart_repro.log; exit 1; }; done
	@grep -F 'Overfull \hbox' paper/build/smart_repro.log || true
	@echo "paper/build/smart_repro.pdf"

## Remove run outputs under runs/; listening studies holding human ratings are kept (DELETE_RATINGS=1 deletes them too)
clean-runs: $(STAMP)
	$(PY) -m smart_core clean-runs $(if $(filter 1,$(DELETE_RATINGS)),--delete-ratings,)

lab: $(STAMP)
	.venv/bin/jupyter lab notebooks
