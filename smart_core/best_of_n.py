"""Best-of-N from the base model: the inference-time baseline a tuned model has to beat.

For each evaluation prompt (the tuned runs' own prompts, so every comparison is paired by prompt)
the base model draws `best_of_n_max` completions, each rendered and scored; best-of-N keeps, per
prompt, the highest-reward completion among the first N draws (N = 1, 2, 4, ... best_of_n_max).
The draws are nested, so one pool of samples gives every N, and the curve over N is monotone in
expectation, as in the inference-time alignment literature. What each costs in reward evaluations:
best-of-N spends N per prompt at inference; a tuned model spent its training rollouts (steps x
completions per step) and needs none at inference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config
from .diversity import output_set_summary
from .evaluate import evaluation_key, sample_set, save_midi_files
from .model import load_pretrained
from .prompts import Stream, evaluation_prompts
from .render_pool import RenderPool
from .runs import read_keyed, write_keyed
from .runtime import resolve_device


def n_values(cfg: Config) -> list[int]:
    """1, 2, 4, ... up to best_of_n_max (which is included when it is not a power of two)."""
    values = [1 << k for k in range(cfg.best_of_n_max.bit_length()) if 1 << k <= cfg.best_of_n_max]
    return values + ([cfg.best_of_n_max] if values[-1] != cfg.best_of_n_max else [])


def n_prompts(cfg: Config) -> int:
    return cfg.best_of_n_prompts or cfg.eval_prompts


def pool_folder(cfg: Config) -> Path:
    return cfg.profile_dir / "beyond" / "best_of_n"


def draw_pool(cfg: Config, scorer, pool: RenderPool, progress: bool = True) -> pd.DataFrame:
    """best_of_n_max scored completions per evaluation prompt from the base model: one row per draw
    (prompt_index, draw, prompt, ids, every scorer axis, reward, midi_path), saved with its MIDI
    under runs/<profile>/beyond/best_of_n/ and reused while its key (the base model's weights,
    sampling, rendering and reward settings, prompts and draws) matches."""
    cached = load_pool(cfg, scorer)
    if cached is not None:
        return cached
    n, draws, key, folder = n_prompts(cfg), cfg.best_of_n_max, pool_key(cfg, scorer), pool_folder(cfg)
    # another pool's key goes first: a redraw stopped halfway must not leave that key over new MIDI files
    (folder / "samples.json").unlink(missing_ok=True)
    if (folder / "midi").exists():
        import shutil

        shutil.rmtree(folder / "midi")
    prompts = evaluation_prompts(cfg, n)
    model = load_pretrained(cfg.base_model_source, resolve_device(cfg.device)).eval()
    table, midis = sample_set(model, [p for p in prompts for _ in range(draws)], cfg, pool, scorer, cfg.seed,
                              desc="best-of-N draws", progress=progress, stream=Stream.BEST_OF_N)
    table.insert(0, "prompt_index", np.repeat(np.arange(n), draws))
    table.insert(1, "draw", np.tile(np.arange(draws), n))
    table["midi_path"] = save_midi_files(folder / "midi", midis, digits=6)
    return write_keyed(table, folder / "samples.parquet", key)


def pool_key(cfg: Config, scorer) -> dict:
    """What the pool is a function of: the base model's evaluation key (weights, sampling, rendering,
    reward), the number of prompts and draws, and its sampling stream."""
    return {**evaluation_key(cfg, cfg.base_model_source, scorer, n_prompts(cfg)), "draws": cfg.best_of_n_max,
            "stream": Stream.BEST_OF_N}


def load_pool(cfg: Config, scorer) -> pd.DataFrame | None:
    """The saved pool if it was drawn with this key and its MIDI files are all there, else None."""
    cached = read_keyed(pool_folder(cfg) / "samples.parquet", pool_key(cfg, scorer))
    if cached is not None and all(Path(p).exists() for p in cached["midi_path"]):
        return cached
    return None


def select_best(draws: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per prompt, the highest-reward row among its first n draws (the earliest draw on a tie), in
    prompt order."""
    first = draws[draws["draw"] < n].sort_values(["prompt_index", "draw"])
    return first.loc[first.groupby("prompt_index", sort=True)["reward"].idxmax()].reset_index(drop=True)


def best_of_n_table(cfg: Config, draws: pd.DataFrame, tuned: dict[str, tuple[pd.DataFrame, int]]) -> pd.DataFrame:
    """One row per N (system "best-of-N") and one per tuned run (its evaluation's first n prompts,
    the same prompts): mean reward and diversity with 95% intervals, and the reward evaluations
    spent (N x prompts; a tuned run's training rollouts). tuned: label -> (evaluation table, rollouts)."""
    n = int(draws["prompt_index"].nunique())
    rows = []
    for N in n_values(cfg):
        chosen = select_best(draws, N)
        rows.append({"system": f"best-of-{N}", "N": N, "reward_evaluations": N * n,
                     "evaluations_at_inference": N * n, **output_set_summary(chosen, cfg.diversity_bootstrap, cfg.seed + N)})
    prompts = draws.sort_values(["prompt_index", "draw"]).groupby("prompt_index", sort=True)["prompt"].first().tolist()
    for label, (table, rollouts) in tuned.items():
        if len(table) < n or table["prompt"].head(n).tolist() != prompts:
            raise ValueError(f"{label}: its evaluation does not answer best-of-N's {n} prompts in order (another seed "
                             "or prompt kind): the comparison would not be paired")
        rows.append({"system": label, "N": np.nan, "reward_evaluations": rollouts, "evaluations_at_inference": 0,
                     **output_set_summary(table.head(n), cfg.diversity_bootstrap, cfg.seed)})
    return pd.DataFrame(rows)


def smallest_n_reaching(table: pd.DataFrame, reward: float) -> int | None:
    """The smallest N whose best-of-N mean reward reaches `reward` (None if none does)."""
    hits = table[table["N"].notna() & (table["mean_reward"] >= reward)]
    return int(hits["N"].min()) if len(hits) else None
