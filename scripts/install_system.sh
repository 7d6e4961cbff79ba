#!/usr/bin/env bash
# System packages SMART needs: the FluidSynth library (for pyfluidsynth), every Debian SoundFont the
# SoundFont and reward-transfer tables use, and Chromium + its driver (the listening page's browser test).
# Runs apt-get when we are root on Debian/Ubuntu; otherwise prints the exact command to run.
set -euo pipefail
PKGS="libfluidsynth3 fluid-soundfont-gm fluidr3mono-gm-soundfont timgm6mb-soundfont musescore-general-soundfont-small chromium chromium-driver"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "[setup] apt-get install$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "[setup] missing system packages:$missing" >&2
  echo "[setup] run:  sudo apt-get install -y$missing" >&2
  echo "[setup] (conda users: 'conda env create -f environment.yml' brings fluidsynth from conda-forge)" >&2
  exit 1
fi
