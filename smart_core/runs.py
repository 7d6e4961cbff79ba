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
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import Config
from .errors import RunMismatch, UserError

CHECKPOINT_RE = re.compile(r"step-(\d{6,})")


class IncompleteRun(UserError):
    """A run whose final checkpoint (or evaluation) is missing."""

TRACKED_PACKAGES = ("torch", "transformers", "miditok", "symusic", "pyfluidsynth", "audiobox-aesthetics", "muspy",
                    "numpy", "pandas", "scipy", "statsmodels", "papermill", "trl")


def read_keyed(path: Path, key: dict) -> pd.DataFrame | None:
    """The parquet at path if its sidecar (path.json) records `key`, else None: a cached table made
    from other inputs, or left half-written, is never reused."""
    sidecar = Path(path).with_suffix(".json")
    as_stored = json.loads(json.dumps(key))  # tuples are stored as lists: compare what JSON keeps
    if Path(path).exists() and sidecar.exists() and json.loads(sidecar.read_text()).get("key") == as_stored:
        return pd.read_parquet(path)
    return None


def write_keyed(table: pd.DataFrame, path: Path, key: dict) -> pd.DataFrame:
    """Write a table and, last (so it marks the table complete), the key it was made from."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)
    Path(path).with_suffix(".json").write_text(json.dumps({"key": key}, indent=1))
    return table


REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_SOURCES = ("smart_core", "notebooks", "pyproject.toml", "scripts")  # what computes results


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=REPO_ROOT)
        commit = out.stdout.strip() or "unknown"
        # dirty: uncommitted changes to what computes results (the package, the notebooks, the pinned
        # dependencies), not to its outputs: rewriting figures/ or the README's generated section
        # while making them must not mark them as made by uncommitted code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *RESULT_SOURCES],
                               capture_output=True, text=True, timeout=5, cwd=REPO_ROOT).stdout.strip()
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
        "cuda_available": torch.cuda.is_available(),
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
    def check_config(self, cfg: Config) -> None:
        """Refuse, in one line naming the differing keys, a config other than the stored one. A run
        that never logged a step holds nothing worth keeping: its folder is cleared instead."""
        cfg_path = self.path / "config.json"
        if not cfg_path.exists():
            return
        diff = Config.load(cfg_path).differences(cfg)
        if not diff:
            return
        if self.steps().empty and not self.checkpoints():
            shutil.rmtree(self.path)
            return
        keys = ", ".join(f"{k} (stored {old!r}, asked {new!r})" for k, (old, new) in list(diff.items())[:6])
        more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
        raise RunMismatch(f"run {self.path} exists with a different config: {keys}{more}; "
                          "use another run name (--run NAME) or delete that folder")

    def write_start(self, cfg: Config, reward: dict, **extra) -> None:
        """Store config and metadata (check_config has refused a differing config before)."""
        self.check_config(cfg)
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_path = self.path / "config.json"
        if not cfg_path.exists():
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
                if int(f.stem.split("-")[1].split(".")[0]) > step:
                    f.unlink()
        for folder in ("midi", "audio"):
            for d in (self.path / folder).glob("step-*"):
                match = CHECKPOINT_RE.fullmatch(d.name)
                if match is None or int(match.group(1)) > step:
                    shutil.rmtree(d)

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step-{step:06d}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (trainer_state.pt is written last, then the folder is renamed from
        step-N.tmp), oldest first. Leftovers of a write that was killed are removed."""
        found = []
        for d in sorted((self.path / "checkpoints").glob("step-*")):
            match = CHECKPOINT_RE.fullmatch(d.name)
            if match is None:
                if d.name.endswith(".tmp") and d.is_dir():
                    shutil.rmtree(d, ignore_errors=True)  # a half-written checkpoint: never a result
                continue
            if (d / "trainer_state.pt").exists():
                found.append((int(match.group(1)), d))
        return found

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def final_checkpoint(self, cfg: Config | None = None) -> Path:
        """The checkpoint of the run's last step; an error (never an earlier one) if it is missing."""
        steps = (cfg or self.config).steps
        for step, folder in self.checkpoints():
            if step == steps:
                return folder
        raise IncompleteRun(f"run {self.path} has no final checkpoint (step {steps}); "
                            f"train it first: python -m smart_core train --run {self.path.name}")

    @property
    def finished(self) -> bool:
        return (self.path / "FINISHED").exists()

    def is_complete(self, cfg: Config) -> bool:
        """FINISHED and its final checkpoint present (a deleted checkpoint makes it incomplete)."""
        if not self.finished:
            return False
        try:
            self.final_checkpoint(cfg)
            return True
        except IncompleteRun:
            return False

    def reopen(self) -> None:
        """Drop a FINISHED mark that no longer holds (the trainer resumes from the last checkpoint)."""
        (self.path / "FINISHED").unlink(missing_ok=True)

    def eval_dir(self, name: str) -> Path:
        return self.path / "eval" / name


def clean_runs(runs_dir: str | Path = "runs", delete_ratings: bool = False) -> list[Path]:
    """Delete runs_dir, except listening studies whose database holds ratings: people's ratings are
    not a cache (the study folder is kept whole, since ratings mean nothing without its key).
    Returns the kept study folders."""
    from .ratings import ratings_state

    root = Path(runs_dir)
    if not root.exists():
        print(f"nothing to delete: {root} does not exist")
        return []
    kept = []
    for db in sorted(root.glob("*/study/private/ratings.sqlite")):
        state = ratings_state(db)
        n = state[0] if isinstance(state[0], int) else 1  # unreadable: keep it rather than guess
        if n and not delete_ratings:
            kept.append(db.parent.parent)
            print(f"kept {db.parent.parent} ({n} ratings; --delete-ratings deletes it too)")
    for child in root.iterdir():
        study = child / "study"
        for entry in (child.iterdir() if study in kept else [child]):
            if entry != study:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if not kept:
        root.rmdir()
    print(f"deleted {root}" + (f" except {len(kept)} listening stud{'y' if len(kept) == 1 else 'ies'}" if kept else ""))
    return kept
