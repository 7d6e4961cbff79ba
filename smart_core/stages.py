"""The compute behind each notebook (what trains, samples, renders and scores). Each stage
reuses finished artifacts, so re-running a notebook or `make reproduce` redoes nothing done."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import ABLATION_PREFIX, REPLICATE_RE, Config
from .data import build_corpus
from .distributed import device_for, world_from_env
from .model import get_base_model, model_card
from .render_pool import RenderPool, RenderSettings
from .soundfonts import available_soundfonts
from .reward import default_weights, load_scorer
from .runs import RunDir, read_keyed, write_keyed
from .runtime import resolve_device, use_bf16


def scoring_device(cfg: Config) -> torch.device:
    """The device a scorer loads onto: the configured one, under torchrun this process's GPU (made the
    current GPU: the package's loaders put the model on the current GPU first)."""
    device = device_for(world_from_env(), resolve_device(cfg.device))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def scorer_for(cfg: Config):
    """The configured scorer on the configured device; what it is (backend, axes, weights' provenance)
    goes to runs/<profile>/reward.json, from which every figure and table takes its axes and stamp."""
    world = world_from_env()
    device = scoring_device(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        scorer = load_scorer(cfg.reward_backend, cfg.audiobox_checkpoint, device, use_bf16(cfg.precision, device))
    cfg.profile_dir.mkdir(parents=True, exist_ok=True)
    record, text = cfg.profile_dir / "reward.json", json.dumps(scorer.describe(), indent=1)
    if world.is_main and (not record.exists() or record.read_text() != text):  # unchanged: untouched (digested)
        record.write_text(text)
    return scorer


def unconditional_samples(cfg: Config, model, model_sha256: str, scorer, pool: RenderPool | None = None) -> pd.DataFrame:
    """cfg.unconditional_samples samples from [BOS] alone, decoded, rendered and scored with the run's
    scorer; saved with MIDI in runs/<profile>/base_model/samples/."""
    from .rollout import generate_and_score
    from .prompts import Prompt, generator
    from .tokenizer import BOS_ID

    n = cfg.unconditional_samples
    path = cfg.base_model_dir / "unconditional_samples.parquet"
    key = {"model_sha256": model_sha256, "n": n, "seed": cfg.seed, "reward": scorer.describe().get("asset", scorer.name),
           **{k: getattr(cfg, k) for k in ("max_completion_tokens", "temperature", "soundfont", "max_seconds")}}
    cached = read_keyed(path, key)
    if cached is not None:
        return cached
    own = pool is None
    pool = pool or RenderPool(RenderSettings.from_config(cfg), cfg.render_workers)
    try:
        gen = generator(next(model.parameters()).device, cfg.seed)
        ro = generate_and_score(model.eval(), [Prompt((BOS_ID,), "unconditional")] * n, cfg, pool, scorer,
                                cfg.reward_weights or default_weights(scorer), gen, keep_audio=False)
    finally:
        if own:
            pool.close()
    table = ro.table()
    folder = cfg.base_model_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    table["midi_path"] = [str(folder / f"{i:03d}.mid") for i in range(n)]
    for p, data in zip(table["midi_path"], ro.midi):
        Path(p).write_bytes(data)
    return write_keyed(table, path, key)


def soundfont_table(cfg: Config, corpus, scorer) -> pd.DataFrame:
    """The paper's SoundFont table: cfg.soundfont_pieces corpus pieces (cropped to the paper's 100 beats
    and 10 s) rendered with every available SoundFont; the mean of every scorer axis, and the mean of
    the scorer's `average_axes` as the paper's "average" column (Audiobox: CE, CU, PC, PQ)."""
    pieces = (corpus.paths("test") + corpus.paths("val") + corpus.paths("train"))[:cfg.soundfont_pieces]
    fonts = available_soundfonts() if cfg.compare_soundfonts else {cfg.soundfont: cfg.soundfont}
    path = cfg.profile_dir / "soundfonts.parquet"
    key = {"pieces": [p.name for p in pieces], "fonts": sorted(fonts), "reward": scorer.describe().get("asset", scorer.name),
           "sample_rate": cfg.sample_rate, "renderer": cfg.renderer}
    cached = read_keyed(path, key)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in fonts:
        # the paper's table rendered every piece the paper's way (the defaults: 100 beats, 10 s), whatever
        # the profile's clip length
        settings = RenderSettings.from_config(cfg, soundfont=name, max_seconds=Config.max_seconds,
                                              max_beats=Config.max_beats)
        with RenderPool(settings, cfg.render_workers) as pool:
            audio = pool.render(pieces)
        scores = scorer.score(audio, cfg.sample_rate)
        row = {"soundfont": name, "pieces": len(pieces), **{a: float(scores[a].mean()) for a in scorer.axes}}
        if scorer.average_axes:
            row["average"] = float(np.mean([row[a] for a in scorer.average_axes]))
        rows.append(row)
    return write_keyed(pd.DataFrame(rows), path, key)


def base_model_stage(cfg: Config, progress: bool = True) -> dict:
    """Corpus, base model (trained here, or resolved from a folder or the Hub), its model card,
    unconditional samples and the SoundFont table, all scored with the run's scorer."""
    corpus = build_corpus(cfg)
    model, asset = get_base_model(cfg, corpus, progress=progress)
    card = model_card(model, asset)
    cfg.base_model_dir.mkdir(parents=True, exist_ok=True)
    (cfg.base_model_dir / "model_card.json").write_text(json.dumps(card, indent=1))
    scorer = scorer_for(cfg)
    samples = unconditional_samples(cfg, model, card["sha256"], scorer)
    fonts = soundfont_table(cfg, corpus, scorer)
    return {"corpus": corpus, "model_source": asset.repo_id or str(asset.path), "model_card": card,
            "samples": samples, "soundfonts": fonts, "scorer": scorer.describe()}


def training_stage(cfg: Config, run_name: str, progress: bool = True) -> dict:
    """Train (or resume) one named run, then evaluate base and tuned models and sweep diversity."""
    from .evaluate import base_eval_dir, diversity_sweep, evaluate_model, evaluation_key, prompt_overlap
    from .grpo import train

    scorer = scorer_for(cfg)
    run_cfg = cfg.for_run(run_name)
    base_dir = cfg.base_model_source
    world = world_from_env()
    if world.distributed:  # every process trains its share; evaluation stays on process 0
        run = train(cfg, run_name, base_dir, scorer=scorer, progress=progress, world=world)
        if not world.is_main:
            return {"run": run}
    with RenderPool(RenderSettings.from_config(cfg), cfg.render_workers) as pool:
        if not world.distributed:
            run = train(cfg, run_name, base_dir, scorer=scorer, pool=pool, progress=progress)
        # with the run's own config: a replicate evaluates (and pairs base with tuned) under its own seed
        base_folder = base_eval_dir(run_cfg, evaluation_key(run_cfg, base_dir, scorer, run_cfg.eval_prompts))
        base_eval = evaluate_model(run_cfg, base_dir, base_folder, scorer, pool, progress=progress)
        tuned_eval = evaluate_model(run_cfg, run.final_checkpoint(run_cfg), run.eval_dir("final"), scorer, pool,
                                    progress=progress)
        # the diversity sweep follows the main seed's runs only (replicates feed the claims and the
        # curves; the ablations are compared at their final checkpoint, in notebook 05)
        sweep = (diversity_sweep(run_cfg, run.path, base_dir, scorer, pool, progress=progress)
                 if REPLICATE_RE.fullmatch(run_name) is None and not run_name.startswith(ABLATION_PREFIX) else None)
    overlap = prompt_overlap(run.samples()["prompt"], tuned_eval)
    run.update_meta(eval_prompt_overlap=overlap, base_eval_dir=base_folder.name)  # a name inside <profile>/eval
    return {"run": run, "base_eval": base_eval, "tuned_eval": tuned_eval, "sweep": sweep, "overlap": overlap}


def cross_scorer_for(cfg: Config, scorer):
    """The other judge for the reward-transfer table, when it can be had offline: Audiobox for a
    stand-in run (its weights configured or in the Hugging Face cache), the stand-in for an Audiobox
    run; None otherwise (the table then has no cross-scored rows, and notebook 05 says why)."""
    from .assets import audiobox_available_offline

    if scorer.name == "standin":
        if not audiobox_available_offline(cfg.audiobox_checkpoint):
            return None
        device = scoring_device(cfg)
        return load_scorer("audiobox", cfg.audiobox_checkpoint, device, use_bf16(cfg.precision, device))
    return load_scorer("standin")


def beyond_stage(cfg: Config, progress: bool = True) -> dict:
    """Notebook 05's compute beyond the paper (the ablation runs train in notebook 01): the base
    model's best-of-N draws, and every paired evaluation re-rendered with the other SoundFonts and
    scored again (and by the other scorer where it is available)."""
    from . import best_of_n, transfer

    scorer = scorer_for(cfg)
    with RenderPool(RenderSettings.from_config(cfg), cfg.render_workers) as pool:
        draws = best_of_n.draw_pool(cfg, scorer, pool, progress=progress)
    cross = cross_scorer_for(cfg, scorer)
    scores = transfer.transfer_scores(cfg, cfg.all_runs(), scorer, cross, progress=progress)
    return {"draws": draws, "transfer_scores": scores, "fonts": transfer.transfer_fonts(cfg),
            "cross_scorer": None if cross is None else cross.name,
            "cross_note": ("" if cross is not None else "Audiobox's weights are not available offline: no cross-scoring "
                           "(set audiobox_checkpoint or put them in the Hugging Face cache)")}


def listening_stage(cfg: Config, simulation: dict | None = None, progress: bool = True) -> dict:
    """Stimuli for base vs the tuned ('smart') model, then real ratings if the study has any,
    otherwise a simulated study (clearly marked) from `simulation` parameters."""
    from .listening import SimulatedStudy
    from .stimuli import make_stimuli
    from .ratings import export_ratings, write_spreadsheet_safe_csv

    study = cfg.profile_dir / "study"
    key_path = study / "private" / "key.csv"
    if not key_path.exists():
        final = RunDir.for_run(cfg, "smart").final_checkpoint(cfg.for_run("smart"))
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
    write_spreadsheet_safe_csv(ratings.assign(simulated=simulated), study / "ratings_used.csv")
    return {"key": key, "ratings": ratings, "simulated": simulated, "study_dir": study}
