"""Evaluation sets: one completion per evaluation prompt, rendered, scored, saved with MIDI.

Also the diversity-along-training sweep: a fixed set of samples from every saved checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .config import Config
from .grpo import _generator, evaluation_prompts, step_seed
from .model import load_pretrained, pick_device
from .render import RenderPool, RenderSettings
from .reward import default_weights
from .rollout import generate_and_score

EVAL_BATCH = 64


def sample_set(model, prompts, cfg: Config, pool: RenderPool, scorer, seed: int, desc: str = "evaluate",
               progress: bool = True) -> tuple[pd.DataFrame, list[bytes]]:
    """Generate, render and score one completion per prompt, in batches; (table, MIDI bytes)."""
    weights = cfg.reward_weights or default_weights(scorer)
    device = next(model.parameters()).device
    tables, midis = [], []
    batches = range(0, len(prompts), EVAL_BATCH)
    for b, start in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False)):
        rollout = generate_and_score(model, prompts[start:start + EVAL_BATCH], cfg, pool, scorer, weights,
                                     _generator(device, step_seed(seed, b, 3)), keep_audio=False)
        tables.append(rollout.table())
        midis += rollout.midi
    return pd.concat(tables, ignore_index=True), midis


def evaluate_model(cfg: Config, model_dir: str | Path, out_dir: str | Path, scorer, pool: RenderPool | None = None,
                   n_prompts: int | None = None, progress: bool = True, force: bool = False) -> pd.DataFrame:
    """Evaluation set of `model_dir` in out_dir (samples.parquet + midi/). Reused when present."""
    out_dir = Path(out_dir)
    table_path = out_dir / "samples.parquet"
    if table_path.exists() and not force:
        return pd.read_parquet(table_path)
    n = n_prompts or cfg.eval_prompts
    prompts = evaluation_prompts(cfg, n)
    own_pool = pool is None
    pool = pool or RenderPool(RenderSettings.from_config(cfg), cfg.render_workers)
    try:
        model = load_pretrained(model_dir, pick_device()).eval()
        table, midis = sample_set(model, prompts, cfg, pool, scorer, cfg.seed, f"evaluate {out_dir.name}", progress)
    finally:
        if own_pool:
            pool.close()
    (out_dir / "midi").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(midis):
        path = out_dir / "midi" / f"{i:05d}.mid"
        path.write_bytes(data)
        paths.append(str(path))
    table["midi_path"] = paths
    table["model"] = str(model_dir)
    table.to_parquet(table_path, index=False)
    (out_dir / "info.json").write_text(json.dumps({"model": str(model_dir), "n_prompts": n,
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
                    n_prompts: int = 4, progress: bool = True) -> pd.DataFrame:
    """Reward and diversity of a fixed sample set at step 0 (base) and every checkpoint of a run.

    The set is n_prompts evaluation prompts x (diversity_samples / n_prompts) samples each, so
    within- and between-prompt distances exist. Cached in <run>/eval/diversity.parquet."""
    from .diversity import diversity_report
    from .runs import RunDir

    run = RunDir(run_dir)
    cache = run.eval_dir("diversity") / "sweep.parquet"
    done = pd.read_parquet(cache) if cache.exists() else pd.DataFrame()
    per_prompt = max(2, cfg.diversity_samples // n_prompts)
    prompts = [p for p in evaluation_prompts(cfg, n_prompts) for _ in range(per_prompt)]
    points = [(0, Path(base_model_dir))] + run.checkpoints()
    rows = [] if done.empty else done.to_dict("records")
    seen = {r["step"] for r in rows}
    for step, folder in tqdm(points, desc=f"diversity {run.path.name}", disable=not progress):
        if step in seen:
            continue
        model = load_pretrained(folder, pick_device()).eval()
        table, midis = sample_set(model, prompts, cfg, pool, scorer, cfg.seed + 1, progress=False)
        tokens = [list(p) + list(c) for p, c in zip(table["prompt_ids"], table["completion_ids"])]
        report = diversity_report(tokens, midis, list(table["prompt"]))
        rows.append({"run": run.path.name, "step": step, "reward_mean": float(table["reward"].mean()),
                     "n_notes_mean": float(table["n_notes"].mean()), **report})
        cache.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).sort_values("step").to_parquet(cache, index=False)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return pd.DataFrame(rows).sort_values("step").reset_index(drop=True)

