"""The compute behind each notebook (what trains, samples, renders and scores). Each stage
reuses finished artifacts, so re-running a notebook or `make reproduce` redoes nothing done."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import Config
from .data import build_corpus
from .model import get_base_model, pick_device
from .render import RenderPool, RenderSettings, available_soundfonts
from .reward import default_weights, load_scorer
from .runs import RunDir


def scorer_for(cfg: Config):
    """The configured scorer; what it is goes to runs/<profile>/reward.json for figure stamps."""
    import json

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        scorer = load_scorer(cfg.reward_backend, cfg.audiobox_checkpoint)
    cfg.profile_dir.mkdir(parents=True, exist_ok=True)
    (cfg.profile_dir / "reward.json").write_text(json.dumps(scorer.describe(), indent=1))
    return scorer


def unconditional_samples(cfg: Config, model, n: int = 32, pool: RenderPool | None = None) -> pd.DataFrame:
    """n samples from [BOS] alone, decoded; saved with MIDI beside the base model."""
    from .rollout import generate_and_score
    from .tokenizer import BOS_ID, Prompt

    path = cfg.base_model_dir / "unconditional_samples.parquet"
    if path.exists():
        return pd.read_parquet(path)
    scorer = load_scorer("standin")
    own = pool is None
    pool = pool or RenderPool(RenderSettings.from_config(cfg), cfg.render_workers)
    try:
        gen = torch.Generator(device=pick_device()).manual_seed(cfg.seed)
        ro = generate_and_score(model.eval(), [Prompt((BOS_ID,), "unconditional")] * n, cfg, pool, scorer,
                                default_weights(scorer), gen, keep_audio=False)
    finally:
        if own:
            pool.close()
    table = ro.table()
    folder = cfg.base_model_dir / "samples"
    folder.mkdir(exist_ok=True)
    table["midi_path"] = [str(folder / f"{i:03d}.mid") for i in range(n)]
    for p, data in zip(table["midi_path"], ro.midi):
        Path(p).write_bytes(data)
    table.to_parquet(path, index=False)
    return table


def soundfont_table(cfg: Config, corpus, scorer, n_pieces: int = 10) -> pd.DataFrame:
    """The paper's SoundFont table: n corpus pieces (cropped to 100 beats, 10 s) rendered with
    every available SoundFont, mean score per axis and their average."""
    path = cfg.profile_dir / "soundfonts.parquet"
    if path.exists():
        return pd.read_parquet(path)
    pieces = (corpus.paths("test") + corpus.paths("val") + corpus.paths("train"))[:n_pieces]
    rows = []
    fonts = available_soundfonts() if cfg.compare_soundfonts else {cfg.soundfont: cfg.soundfont}
    for name in fonts:
        with RenderPool(RenderSettings(name, cfg.sample_rate, 10.0, 100), cfg.render_workers) as pool:
            audio = pool.render(pieces)
        scores = scorer.score(audio, cfg.sample_rate)
        axes = [a for a in scorer.axes if a in ("CE", "CU", "PC", "PQ", "standin")]
        row = {"soundfont": name, "pieces": len(pieces), **{a: float(scores[a].mean()) for a in axes}}
        if len(axes) > 1:
            row["average"] = float(np.mean([row[a] for a in axes]))
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_parquet(path, index=False)
    return table


def base_model_stage(cfg: Config, progress: bool = True) -> dict:
    corpus = build_corpus(cfg)
    model, source = get_base_model(cfg, corpus, progress=progress)
    samples = unconditional_samples(cfg, model)
    scorer = scorer_for(cfg)
    fonts = soundfont_table(cfg, corpus, scorer, n_pieces=10 if cfg.profile != "tiny" else 3)
    return {"corpus": corpus, "model_source": source, "samples": samples, "soundfonts": fonts,
            "scorer": scorer.describe()}


def training_stage(cfg: Config, run_name: str, progress: bool = True) -> dict:
    """Train (or resume) one named run, then evaluate base and tuned models and sweep diversity."""
    from .evaluate import diversity_sweep, evaluate_model, prompt_overlap
    from .grpo import train

    scorer = scorer_for(cfg)
    run_cfg = cfg.for_run(run_name)
    base_dir = cfg.base_model_source
    with RenderPool(RenderSettings.from_config(cfg), cfg.render_workers) as pool:
        run = train(cfg, run_name, base_dir, scorer=scorer, pool=pool, progress=progress)
        base_eval = evaluate_model(cfg, base_dir, cfg.profile_dir / "eval" / "base", scorer, pool, progress=progress)
        final = run.checkpoints()[-1][1]
        tuned_eval = evaluate_model(cfg, final, run.eval_dir("final"), scorer, pool, progress=progress)
        sweep = diversity_sweep(run_cfg, run.path, base_dir, scorer, pool, progress=progress)
    overlap = prompt_overlap(run.samples()["prompt"], tuned_eval)
    run.update_meta(eval_prompt_overlap=overlap)
    return {"run": run, "base_eval": base_eval, "tuned_eval": tuned_eval, "sweep": sweep, "overlap": overlap}


def listening_stage(cfg: Config, simulation: dict | None = None, progress: bool = True) -> dict:
    """Stimuli for base vs the tuned ('smart') model, then real ratings if the study has any,
    otherwise a simulated study (clearly marked) from `simulation` parameters."""
    from .listening import SimulatedStudy, export_ratings, make_stimuli

    study = cfg.profile_dir / "study"
    key_path = study / "private" / "key.csv"
    if not key_path.exists():
        final = RunDir.for_run(cfg, "smart").checkpoints()[-1][1]
        make_stimuli(cfg, {"base": cfg.base_model_source, "tuned": final}, study, scorer_for(cfg),
                     max_attempts=cfg.listening_max_attempts, progress=progress)
    key = pd.read_csv(key_path)
    real = export_ratings(study)
    simulated = real.empty
    if simulated:
        params = {"n_prompts": cfg.listening_prompts, "seed": cfg.seed, **(simulation or {})}
        ratings = SimulatedStudy(**params).draw()
    else:
        ratings = real
    ratings.assign(simulated=simulated).to_csv(study / "ratings_used.csv", index=False)
    return {"key": key, "ratings": ratings, "simulated": simulated, "study_dir": study}
