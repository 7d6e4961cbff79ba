#!/usr/bin/env bash
# Creates .venv with the pinned stack from pyproject.toml.
# Two packages need care (see the README, "Installing by hand"):
#  * audiobox-aesthetics and torchaudio are installed with --no-deps, so they cannot pull a CUDA torch
#    over the pinned torch==2.13.0;
#  * torchaudio 2.11's compiled extensions are built against another torch and fail to load; removing
#    them leaves the pure-Python parts (resample) working, which is all audiobox needs.
set -euo pipefail
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e ".[test,bench,lab]"
"$VENV/bin/python" -m pip install -q --no-deps audiobox-aesthetics==0.0.4 torchaudio==2.11.0
rm -f "$VENV"/lib/python3*/site-packages/torchaudio/lib/*.so
# the authors' renderer, for the benchmark baseline only (its pyaudio dependency does not build here)
"$VENV/bin/python" -m pip install -q --no-deps tinysoundfont==0.3.7 || echo "[setup] tinysoundfont unavailable: its benchmark baseline will be skipped"
"$VENV/bin/python" -m ipykernel install --user --name smart --display-name "SMART (.venv)" >/dev/null
"$VENV/bin/python" -c "import torch, miditok, fluidsynth, audiobox_aesthetics.infer; print('[setup] python env ok: torch', torch.__version__)"
