#!/usr/bin/env bash
# System packages SMART needs: the FluidSynth library (for pyfluidsynth), every Debian SoundFont the
# SoundFont and reward-transfer tables use, Chromium + its driver (the listening page's browser test), and
# pdflatex + pdftotext (paper/: make paper, tests/test_paper.py), without TeX's recommends (172 MB, not 409).
# Runs apt-get when we are root on Debian/Ubuntu; otherwise prints the exact command to run.
set -euo pipefail
PKGS="libfluidsynth3 fluid-soundfont-gm fluidr3mono-gm-soundfont timgm6mb-soundfont musescore-general-soundfont-small chromium chromium-driver"
TEX_PKGS="texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils"
missing=""
missing_tex=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
for p in $TEX_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing_tex="$missing_tex $p"; done
[ -z "$missing$missing_tex" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "[setup] apt-get install$missing$missing_tex"
  apt-get update -qq
  [ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  [ -z "$missing_tex" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing_tex >/dev/null
else
  echo "[setup] missing system packages:$missing$missing_tex" >&2
  [ -z "$missing" ] || echo "[setup] run:  sudo apt-get install -y$missing" >&2
  [ -z "$missing_tex" ] || echo "[setup] run:  sudo apt-get install -y --no-install-recommends$missing_tex" >&2
  echo "[setup] (conda users: 'conda env create -f environment.yml' brings fluidsynth from conda-forge)" >&2
  exit 1
fi
