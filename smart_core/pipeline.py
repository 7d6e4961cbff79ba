"""`make reproduce`: the notebooks in order under papermill, skipping what is already done.

A step is skipped when its executed notebook exists, a fingerprint of its code and parameters
(notebook file, parameters, the smart_core sources) matches the one recorded in
runs/<profile>/pipeline.json, and so does a digest of the artifacts it reads and writes (run
folders, evaluations, the study's ratings, the corpus source folder: `artifact_paths`). A deleted
evaluation or a new rating therefore re-runs the steps that depend on it. A failing cell stops the
pipeline, naming notebook and cell.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from .config import BEYOND_KEYS, Config

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def steps(cfg: Config, beyond: bool = False) -> list[tuple[str, str, dict]]:
    """(label, notebook, parameters) in execution order; with `beyond`, then the ablation runs
    (notebook 01 once each) and notebook 05 (`make beyond`)."""
    # every key the user set, even to the profile's own value: it must win over the runs' presets too
    values = cfg.to_dict()
    extra = {k: values[k] for k in sorted(cfg.user_keys) if k not in ("profile", "seed", "runs_dir", "corpus_dir")}
    beyond_extra = extra
    # the keys only notebook 05 and the ablations read stay out of the paper's steps (and their fingerprints)
    extra = {k: v for k, v in extra.items() if k not in BEYOND_KEYS}
    base = {"profile": cfg.profile, "seed": cfg.seed, "runs_dir": cfg.runs_dir, "corpus_dir": cfg.corpus_dir,
            "overrides": extra}
    out = [("00_base_model", "00_base_model.ipynb", base)]
    for run in cfg.all_runs():
        out.append((f"01_grpo_training-{run}", "01_grpo_training.ipynb", {**base, "run_name": run}))
    out += [("02_feature_analysis", "02_feature_analysis.ipynb", base),
            ("03_diversity_collapse", "03_diversity_collapse.ipynb", base),
            ("04_listening_study", "04_listening_study.ipynb", base)]
    if beyond:
        full = {**base, "overrides": beyond_extra}
        for run in cfg.ablation_runs():
            cfg.for_run(run)  # a user key that is a variant's identity: one line now, not after hours
            out.append((f"01_grpo_training-{run}", "01_grpo_training.ipynb", {**full, "run_name": run}))
        out.append(("05_beyond", "05_beyond.ipynb", full))
    return out


def _source_fingerprint() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")) + sorted(Path(__file__).parent.glob("*.html")):
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(notebook: Path, params: dict, figures_dir: str | None) -> str:
    h = hashlib.sha256(notebook.read_bytes())
    h.update(json.dumps({**params, "figures_dir": figures_dir}, sort_keys=True).encode())
    h.update(_source_fingerprint().encode())
    return h.hexdigest()


def artifact_paths(cfg: Config, label: str) -> list[Path]:
    """The files and folders a step reads or writes, whose state decides whether it must re-run."""
    profile = cfg.profile_dir
    runs = [profile / name for name in cfg.all_runs()]
    if label == "00_base_model":
        paths = [Path(cfg.corpus_dir) / "manifest.json", cfg.base_model_dir, profile / "soundfonts.parquet"]
        return paths + ([Path(cfg.corpus_source)] if cfg.corpus_source != "music21" else [])
    if label.startswith("01_grpo_training-"):
        run = profile / label.split("-", 1)[1]
        # the base model's evaluation this run was compared with (recorded in its meta.json), not every
        # evaluation: a replicate's own base evaluation (another seed) must not re-run this step
        meta = run / "meta.json"
        base_eval = json.loads(meta.read_text()).get("base_eval_dir") if meta.exists() else None
        return [run, cfg.base_model_dir] + ([profile / "eval" / base_eval] if base_eval else [profile / "eval"])
    if label in ("02_feature_analysis", "03_diversity_collapse"):
        return [profile / "eval", *[r / "eval" for r in runs], *[r / "log" for r in runs], profile / "reward.json"]
    if label == "04_listening_study":
        return [profile / "study", profile / "smart" / "checkpoints"]
    if label == "05_beyond":
        from .assets import AUDIOBOX_ID, hub_cache_dir
        from .soundfonts import available_soundfonts

        ablations = [profile / name for name in cfg.ablation_runs()]
        # also what notebook 05 finds installed: a new SoundFont, or Audiobox's weights appearing in the
        # cache (the cross-scorer), re-runs it
        judges = [hub_cache_dir() / f"models--{AUDIOBOX_ID.replace('/', '--')}"]
        judges += [Path(cfg.audiobox_checkpoint)] if cfg.audiobox_checkpoint else []
        return [cfg.base_model_dir, profile / "eval", profile / "beyond", profile / "reward.json",
                *[r / "eval" for r in runs + ablations], *[r / "log" for r in runs + ablations],
                *[Path(p) for p in sorted(available_soundfonts().values())], *judges]
    raise ValueError(f"unknown pipeline step {label!r}")


def artifact_digest(paths: list[Path]) -> str:
    """sha256 over (path, size, mtime) of every file under `paths` (absent paths count as absent).
    A ratings database counts by its rows (count, last rating), not its file: SQLite's WAL files
    come and go with readers while the ratings stay the same."""
    from .ratings import ratings_state

    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root] if root.exists() else []
        h.update(f"{root}:{'present' if root.exists() else 'absent'}".encode())
        for f in files:
            if f.name.endswith(("-wal", "-shm", "-journal")):
                continue
            if f.suffix == ".sqlite":
                h.update(f"{f}:{ratings_state(f)}".encode())
                continue
            st = f.stat()
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


class PipelineError(RuntimeError):
    pass


def reproduce(cfg: Config, force: bool = False, figures_dir: str | None = None, log_output: bool = True,
              kernel_name: str | None = None, beyond: bool = False) -> list[dict]:
    import papermill as pm

    out_dir = cfg.profile_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = cfg.profile_dir / "pipeline.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    report = []
    plan = steps(cfg, beyond)
    t_start = time.time()
    for i, (label, notebook, params) in enumerate(plan, 1):
        nb_path = NOTEBOOK_DIR / notebook
        params = {**params, "figures_dir": figures_dir or str(Path("figures") / cfg.profile)}
        output = out_dir / f"{label}.ipynb"
        fp = fingerprint(nb_path, params, figures_dir)
        recorded = manifest.get(label, {})
        artifacts = artifact_paths(cfg, label)
        if not force and output.exists() and recorded.get("fingerprint") == fp \
                and recorded.get("artifacts") == artifact_digest(artifacts):
            print(f"[{i}/{len(plan)}] {label}: up to date, skipped", flush=True)
            report.append({"step": label, "status": "skipped", "seconds": 0.0})
            continue
        print(f"[{i}/{len(plan)}] {label}: running {notebook} ({time.time() - t_start:.0f} s elapsed)", flush=True)
        t0 = time.time()
        try:
            pm.execute_notebook(str(nb_path), str(output), parameters=params, log_output=log_output,
                                progress_bar=False, cwd=str(Path.cwd()), kernel_name=kernel_name or "python3")
        except pm.PapermillExecutionError as err:
            raise PipelineError(f"{notebook} failed at cell {err.exec_count} ({err.ename}: {err.evalue}); "
                                f"the executed notebook is {output}") from None
        seconds = time.time() - t0
        # paths again: a step may record where its inputs are (a run's base evaluation) while it runs
        manifest[label] = {"fingerprint": fp, "artifacts": artifact_digest(artifact_paths(cfg, label)), "seconds": seconds,
                           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        manifest_path.write_text(json.dumps(manifest, indent=1))
        print(f"[{i}/{len(plan)}] {label}: done in {seconds:.0f} s", flush=True)
        report.append({"step": label, "status": "ran", "seconds": seconds})
    total = time.time() - t_start
    print(f"pipeline finished in {total:.0f} s; executed notebooks in {out_dir}", flush=True)
    return report


def main_reproduce(cfg: Config, force: bool, beyond: bool = False) -> int:
    try:
        reproduce(cfg, force=force, beyond=beyond)
    except PipelineError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0
