"""Run folders: metadata, parquet logs, checkpoints, resume.

runs/<profile>/<run>/
  config.json            resolved Config
  meta.json              seed, git commit, package versions, reward backend, device, times
  log/steps-<n>.parquet  one row per step (metrics, seconds per stage)
  log/samples-<n>.parquet one row per training sample
  midi/step-<n>/<i>.mid  every training sample
  audio/step-<n>/<i>.wav every `audio_every` steps
  checkpoints/step-<n>/  save_pretrained + trainer_state.pt (optimizer, scheduler, step)
  eval/<name>/           samples.parquet + midi/ of an evaluation
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import Config

TRACKED_PACKAGES = ("torch", "transformers", "miditok", "symusic", "pyfluidsynth", "audiobox-aesthetics", "muspy",
                    "numpy", "pandas", "scipy", "statsmodels", "papermill", "trl")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_metadata(cfg: Config, reward: dict | None = None, **extra) -> dict:
    import torch

    return {
        "profile": cfg.profile, "seed": cfg.seed, "git_commit": git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(),
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(), "packages": package_versions(),
        "reward": reward or {}, **extra,
    }


@dataclass
class RunDir:
    path: Path

    def __post_init__(self):
        self.path = Path(self.path)

    @classmethod
    def for_run(cls, cfg: Config, name: str) -> "RunDir":
        return cls(cfg.profile_dir / name)

    # -- metadata --------------------------------------------------------------------------------
    def write_start(self, cfg: Config, reward: dict, **extra) -> None:
        """Store config and metadata; on resume, refuse a config that differs from the stored one."""
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_path = self.path / "config.json"
        if cfg_path.exists():
            stored = json.loads(cfg_path.read_text())
            diff = {k: (stored.get(k), v) for k, v in cfg.to_dict().items() if stored.get(k) != v}
            if diff:
                raise ValueError(f"run {self.path} exists with a different config {diff}; "
                                 "use another run name or delete the folder")
        else:
            cfg.save(cfg_path)
        meta_path = self.path / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else run_metadata(cfg, reward, **extra)
        meta.setdefault("sessions", []).append({"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                                "git_commit": git_commit()})
        meta_path.write_text(json.dumps(meta, indent=1))

    @property
    def meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())

    @property
    def config(self) -> Config:
        return Config.load(self.path / "config.json")

    def update_meta(self, **values) -> None:
        meta = self.meta
        meta.update(values)
        (self.path / "meta.json").write_text(json.dumps(meta, indent=1))

    # -- logs ------------------------------------------------------------------------------------
    def log_step(self, step: int, step_row: dict, samples: pd.DataFrame) -> None:
        log = self.path / "log"
        log.mkdir(exist_ok=True)
        samples.to_parquet(log / f"samples-{step:06d}.parquet", index=False)
        # written last: a step counts as logged only when its steps file exists
        pd.DataFrame([step_row]).to_parquet(log / f"steps-{step:06d}.parquet", index=False)

    def _read(self, kind: str) -> pd.DataFrame:
        files = sorted((self.path / "log").glob(f"{kind}-*.parquet"))
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def steps(self) -> pd.DataFrame:
        return self._read("steps")

    def samples(self) -> pd.DataFrame:
        return self._read("samples")

    def truncate_after(self, step: int) -> None:
        """Forget everything logged after `step` (before resuming from that step's checkpoint)."""
        for kind in ("steps", "samples"):
            for f in (self.path / "log").glob(f"{kind}-*.parquet"):
                if int(f.stem.split("-")[1]) > step:
                    f.unlink()
        for folder in ("midi", "audio"):
            for d in (self.path / folder).glob("step-*"):
                if int(d.name.split("-")[1]) > step:
                    shutil.rmtree(d)

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step-{step:06d}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (trainer_state.pt is written last), oldest first."""
        found = []
        for d in sorted((self.path / "checkpoints").glob("step-*")):
            if (d / "trainer_state.pt").exists():
                found.append((int(d.name.split("-")[1]), d))
        return found

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = self.checkpoints()
        return found[-1] if found else None

    @property
    def finished(self) -> bool:
        return (self.path / "FINISHED").exists()

    def eval_dir(self, name: str) -> Path:
        return self.path / "eval" / name
