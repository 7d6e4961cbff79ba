"""Evaluation sets: one completion per evaluation prompt, rendered, scored, saved with MIDI.

Also the diversity-along-training sweep: a fixed set of samples from every saved checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .assets import resolve_base_model, sha256_of
from .config import Config
from .prompts import DIVERSITY_SEED_OFFSET, Stream, evaluation_prompts, generator, stream_seed
from .model import load_pretrained
from .runtime import resolve_device
from .render_pool import RenderPool, RenderSettings
from .reward import default_weights
from .rollout import generate_and_score


def sample_set(model, prompts, cfg: Config, pool: RenderPool, scorer, seed: int, desc: str = "evaluate",
               progress: bool = True, stream: int = Stream.EVAL_SAMPLES) -> tuple[pd.DataFrame, list[bytes]]:
    """Generate, render and score one completion per prompt, in batches of cfg.eval_batch, batch b
    drawing from stream_seed(seed, b, stream); (table, MIDI bytes)."""
    weights = cfg.reward_weights or default_weights(scorer)
    device = next(model.parameters()).device
    tables, midis = [], []
    batches = range(0, len(prompts), cfg.eval_batch)
    for b, start in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False)):
        rollout = generate_and_score(model, prompts[start:start + cfg.eval_batch], cfg, pool, scorer, weights,
                                     generator(device, stream_seed(seed, b, stream)), keep_audio=False)
        tables.append(rollout.table())
        midis += rollout.midi
    return pd.concat(tables, ignore_index=True), midis


def save_midi_files(folder: Path, midis: list[bytes], digits: int = 5) -> list[str]:
    """One numbered .mid file per sample in folder (00000.mid, ...), in sample order; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(midis):
        path = folder / f"{i:0{digits}d}.mid"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


# what an evaluation set depends on besides the model: a cached set is reused only if these match
EVAL_KEYS = ("seed", "prompt_kind", "max_completion_tokens", "temperature", "precision", "soundfont", "renderer",
             "sample_rate", "max_seconds", "max_beats", "reward_weights", "fallback_reward", "eval_batch")


def evaluation_key(cfg: Config, model_dir: str | Path, scorer, n_prompts: int) -> dict:
    """Everything an evaluation set is a function of: the model (its weights' sha256), the sampling,
    rendering and reward settings, and the scorer (its backend and weights)."""
    model = resolve_base_model(str(model_dir)).provenance()
    reward = scorer.describe()
    key = {"model_sha256": model["sha256"], "n_prompts": n_prompts, **{k: getattr(cfg, k) for k in EVAL_KEYS},
           "reward_backend": reward["backend"], "reward_weights_file": reward.get("asset", {}).get("sha256")}
    if cfg.prompt_kind == "dataset":  # the prompts come from the corpus's test split: its tokens are an input
        key["test_split_sha256"] = sha256_of(Path(cfg.corpus_dir) / "tokens-test.npz")
    return key


def base_eval_dir(cfg: Config, key: dict) -> Path:
    """The base model's evaluation is shared by the runs whose evaluation key matches (same base
    model, completion length, reward ...): one folder per key."""
    import hashlib

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cfg.profile_dir / "eval" / f"base-{digest}"


def evaluate_model(cfg: Config, model_dir: str | Path, out_dir: str | Path | None, scorer, pool: RenderPool | None = None,
                   n_prompts: int | None = None, progress: bool = True, force: bool = False) -> pd.DataFrame:
    """Evaluation set of `model_dir` in out_dir (samples.parquet + midi/ + info.json); out_dir None:
    the base model's shared folder for this key. Reused only when its recorded key matches."""
    n = n_prompts or cfg.eval_prompts
    key = evaluation_key(cfg, model_dir, scorer, n)
    out_dir = Path(out_dir) if out_dir is not None else base_eval_dir(cfg, key)
    table_path, info_path = out_dir / "samples.parquet", out_dir / "info.json"
    if table_path.exists() and info_path.exists() and not force and json.loads(info_path.read_text()).get("key") == key:
        return pd.read_parquet(table_path)
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)  # stale (another model, config or scorer) or partial: never a result
    prompts = evaluation_prompts(cfg, n)
    own_pool = pool is None
    pool = pool or RenderPool(RenderSettings.from_config(cfg), cfg.render_workers)
    try:
        model = load_pretrained(model_dir, resolve_device(cfg.device)).eval()
        table, midis = sample_set(model, prompts, cfg, pool, scorer, cfg.seed, f"evaluate {out_dir.name}", progress)
    finally:
        if own_pool:
            pool.close()
    table["midi_path"] = save_midi_files(out_dir / "midi", midis)
    table["model"] = str(model_dir)
    table.to_parquet(table_path, index=False)
    from .features import features_table

    # part of the evaluation, so the analysis steps only read it (and leave the folder as they found it)
    features_table(table).to_parquet(out_dir / "features.parquet", index=False)
    # written last: an evaluation counts only when its info (with the key) exists
    info_path.write_text(json.dumps({"model": str(model_dir), "n_prompts": n, "key": key,
                                     "reward": scorer.describe()}, indent=1))
    return table


def prompt_overlap(train_prompts: pd.Series, eval_table: pd.DataFrame) -> dict:
    """How many evaluation prompts also occur among the training prompts (the procedural space
    has only 960 prompts, so some overlap in content is expected; the lists are independent)."""
    train_set = set(train_prompts)
    hits = eval_table["prompt"].isin(train_set)
    return {"eval_prompts": len(eval_table), "distinct_train_prompts": len(train_set),
            "eval_prompts_seen_in_training": int(hits.sum()), "fraction": float(hits.mean())}


def diversity_sweep(cfg: Config, run_dir: Path, base_model_dir: str | Path, scorer, pool: RenderPool,
                    progress: bool = True) -> pd.DataFrame:
    """Reward and diversity of a fixed sample set at step 0 (base) and every checkpoint of a run.

    The set is up to 4 evaluation prompts x (diversity_samples / prompts) samples each (at least 2),
    so within- and between-prompt distances exist; each metric with its 95% bootstrap interval
    (`<metric>_ci_low`, `<metric>_ci_high`; cfg.diversity_bootstrap resamples, 0 for none). Cached in
    <run>/eval/diversity/sweep.parquet."""
    n_prompts = max(1, min(4, cfg.diversity_samples // 2))
    from .diversity import diversity_report
    from .runs import RunDir, read_keyed, write_keyed

    run = RunDir(run_dir)
    cache = run.eval_dir("diversity") / "sweep.parquet"
    per_prompt = max(2, cfg.diversity_samples // n_prompts)
    key = {**evaluation_key(cfg, base_model_dir, scorer, n_prompts * per_prompt), "diversity_samples": cfg.diversity_samples,
           "diversity_bootstrap": cfg.diversity_bootstrap}  # a cache without (these) intervals is recomputed
    done = read_keyed(cache, key)
    prompts = [p for p in evaluation_prompts(cfg, n_prompts) for _ in range(per_prompt)]
    points = [(0, Path(base_model_dir))] + [(s, f) for s, f in run.checkpoints() if s <= cfg.steps]
    shas = {step: resolve_base_model(str(folder)).provenance()["sha256"] for step, folder in points}
    # a row counts only for the very checkpoint it sampled (a retrained run has other weights)
    rows = [] if done is None else [r for r in done.to_dict("records") if shas.get(r["step"]) == r.get("model_sha256")]
    seen = {r["step"] for r in rows}
    for step, folder in tqdm(points, desc=f"diversity {run.path.name}", disable=not progress):
        if step in seen:
            continue
        model = load_pretrained(folder, resolve_device(cfg.device)).eval()
        table, midis = sample_set(model, prompts, cfg, pool, scorer, cfg.seed + DIVERSITY_SEED_OFFSET, progress=False)
        tokens = [list(p) + list(c) for p, c in zip(table["prompt_ids"], table["completion_ids"])]
        # 95% intervals: samples resampled within prompt, seeded by the step (reproducible per point)
        report = diversity_report(tokens, midis, list(table["prompt"]), n_boot=cfg.diversity_bootstrap,
                                  seed=cfg.seed + step)
        rows.append({"run": run.path.name, "step": step, "reward_mean": float(table["reward"].mean()),
                     "n_notes_mean": float(table["n_notes"].mean()), **report, "model_sha256": shas[step]})
        write_keyed(pd.DataFrame(rows).sort_values("step"), cache, key)  # after every checkpoint: resumable
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return pd.DataFrame(rows).sort_values("step").reset_index(drop=True)

