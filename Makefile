# SMART reproduction. Two commands matter:  make reproduce   and   make test
PROFILE ?= small
SEED ?= 0
FORCE ?= 0
ARGS ?=
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup reproduce test test-fast figures bench paper clean-runs lab

$(STAMP): pyproject.toml scripts/install_python.sh scripts/install_system.sh
	bash scripts/install_system.sh
	bash scripts/install_python.sh
	touch $(STAMP)

setup: $(STAMP)

## Run every notebook in order with papermill (skips steps whose inputs did not change; FORCE=1 redoes all;
## ARGS="key=value ..." overrides any config field, e.g. make reproduce PROFILE=paper ARGS="steps=50")
reproduce: $(STAMP)
	$(PY) -m smart_core reproduce --profile $(PROFILE) --seed $(SEED) $(if $(filter 1,$(FORCE)),--force,) $(ARGS)

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

## Build paper/smart_repro.pdf (needs a TeX distribution: apt-get install texlive-latex-recommended texlive-latex-extra)
paper: figures
	@command -v pdflatex >/dev/null || { echo "pdflatex not found: apt-get install -y texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended"; exit 1; }
	cd paper && mkdir -p build && pdflatex -interaction=nonstopmode -output-directory build smart_repro.tex >/dev/null && pdflatex -interaction=nonstopmode -output-directory build smart_repro.tex >/dev/null && echo "paper/build/smart_repro.pdf"

## Remove run outputs under runs/; listening studies holding human ratings are kept (DELETE_RATINGS=1 deletes them too)
clean-runs: $(STAMP)
	$(PY) -m smart_core clean-runs $(if $(filter 1,$(DELETE_RATINGS)),--delete-ratings,)

lab: $(STAMP)
	.venv/bin/jupyter lab notebooks
