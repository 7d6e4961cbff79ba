"""Reward transfer: does the base-to-tuned gain survive SoundFonts the policy never heard?

The policy was rewarded for audio rendered with one SoundFont. If tuning found what the reward
likes in *music*, the gain should hold when the same MIDI is rendered with other pianos; if it found
what the reward likes in *that font's sound* (reward hacking through the renderer), it should shrink.
So every base and tuned evaluation output (the paper's runs, every replicate) is re-rendered with
every installed SoundFont other than the training one, scored again with the run's scorer, and the
tuned-minus-base differences are tested per font and per axis exactly as the claims are (paired by
prompt, pairs pooled over seeds, Wilcoxon signed-rank, bootstrap CIs within seeds, Holm over the
axes). Where the other scorer is available (Audiobox's weights present offline for a stand-in run;
the stand-in, always, for an Audiobox run), the first `cross_score_limit` outputs of each set are
also scored by it on the training font: does a gain on one judge show on the other?
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .config import Config
from .render_pool import RenderPool, RenderSettings
from .runs import RunDir, read_keyed, write_keyed
from .soundfonts import SOUNDFONTS, available_soundfonts, resolve_soundfont, soundfont_identity
from .stats import PAIRED_TEST, compare_paired, movement

# the verdict on one font, axis and scorer: the change measured on the training font, again?
TRANSFER_VERDICTS = ("survives", "not significant", "seeds disagree", "reversed", "no gain to transfer")


def transfer_fonts(cfg: Config) -> dict[str, str]:
    """The fonts the outputs are re-rendered with (name -> file): cfg.transfer_soundfonts (registry names
    or paths; one that is not installed is one line saying what to install), else every installed
    registry font; in both cases without the training one (a font whose file is the training font's)."""
    training = resolve_soundfont(cfg.soundfont)
    if cfg.transfer_soundfonts.strip():
        chosen = [f.strip() for f in cfg.transfer_soundfonts.split(",") if f.strip()]
        fonts = {f if f in SOUNDFONTS else Path(f).stem: resolve_soundfont(f) for f in chosen}
    else:
        fonts = available_soundfonts()
    return {name: path for name, path in fonts.items() if path != training}


def training_font_name(cfg: Config) -> str:
    training = resolve_soundfont(cfg.soundfont)
    return next((name for name, path in available_soundfonts().items() if path == training), cfg.soundfont)


def paired_sets(cfg: Config, run_names: list[str]) -> list[dict]:
    """For each run with a finished evaluation: its seed and the base and tuned evaluation folders
    (the base one it was compared with, recorded in its meta.json)."""
    out = []
    for name in run_names:
        run = RunDir.for_run(cfg, name)
        tuned = run.eval_dir("final")
        meta = run.path / "meta.json"
        base_name = json.loads(meta.read_text()).get("base_eval_dir") if meta.exists() else None
        base = cfg.profile_dir / "eval" / Path(base_name).name if base_name else None
        if (tuned / "info.json").exists() and base is not None and (base / "info.json").exists():
            out.append({"run": name, "seed": cfg.for_run(name).seed, "base": base, "tuned": tuned})
    return out


def _cache_path(cfg: Config, folder: Path, font: str, scorer_name: str) -> Path:
    rel = folder.relative_to(cfg.profile_dir).as_posix().replace("/", "__")
    label = font if font in SOUNDFONTS else Path(font).stem  # a registry name, or a font file's name
    return cfg.profile_dir / "beyond" / "transfer" / rel / f"{label}__{scorer_name}.parquet"


def _rescore_key(cfg: Config, folder: Path, font: str, scorer, n: int) -> dict:
    info = json.loads((folder / "info.json").read_text())
    settings = RenderSettings.from_config(cfg, soundfont=font)
    return {"evaluation": info["key"], "n": n, "soundfont": soundfont_identity(font), "scorer": scorer.describe(),
            "render": [settings.sample_rate, settings.max_seconds, settings.max_beats, settings.backend]}


def rescore(cfg: Config, folders: list[Path], font: str, scorer, limit: int | None = None,
            progress: bool = True) -> dict[Path, pd.DataFrame]:
    """Each evaluation set in `folders` (its first `limit` outputs) rendered with SoundFont `font` and
    scored by `scorer`: folder -> one row per output (prompt + every axis). Each set is cached under
    runs/<profile>/beyond/transfer/ and reused while the evaluation, the font's file, the scorer and
    the rendering settings match; the sets still to do are rendered by one pool (the font is parsed
    once per worker, not once per set)."""
    out, todo = {}, []
    for folder in dict.fromkeys(folders):
        samples = pd.read_parquet(folder / "samples.parquet")
        samples = samples.head(limit) if limit is not None else samples
        key = _rescore_key(cfg, folder, font, scorer, len(samples))
        cached = read_keyed(_cache_path(cfg, folder, font, scorer.name), key)
        if cached is not None:
            out[folder] = cached
        else:
            todo.append((folder, samples, key))
    if not todo:
        return out
    midis = [Path(p).read_bytes() for _, samples, _ in todo for p in samples["midi_path"]]
    with RenderPool(RenderSettings.from_config(cfg, soundfont=font), cfg.render_workers) as pool:
        if getattr(scorer, "scores_in_render_workers", False):
            _, scores = pool.render_and_score(midis, scorer, keep_audio=False)
        else:  # a scorer in this process (Audiobox): eval_batch clips of audio in memory at a time, not all
            chunks = range(0, len(midis), cfg.eval_batch)
            scores = pd.concat([scorer.score(pool.render(midis[i:i + cfg.eval_batch]), cfg.sample_rate)
                                for i in tqdm(chunks, desc=f"render and score with {font}", disable=not progress,
                                              leave=False)], ignore_index=True)
    start = 0
    for folder, samples, key in todo:
        part = scores.iloc[start:start + len(samples)].reset_index(drop=True)
        start += len(samples)
        part.insert(0, "prompt", samples["prompt"].to_numpy())
        out[folder] = write_keyed(part, _cache_path(cfg, folder, font, scorer.name), key)
    return out


def recorded_scores(folder: Path, axes: list[str], limit: int | None = None) -> pd.DataFrame:
    """The evaluation's own scores (the training font, the run's scorer), as `rescore` returns them."""
    samples = pd.read_parquet(folder / "samples.parquet")
    samples = samples.head(limit) if limit is not None else samples
    return samples[["prompt", *axes]].reset_index(drop=True)


def collect(cfg: Config, sets: list[dict], scorer, cross_scorer=None, progress: bool = True) -> pd.DataFrame:
    """Long table of scores: one row per (run, system, soundfont, scorer, output), every axis of the
    scorer that made it. The training font's run-scorer rows are the evaluations' own scores."""
    training = training_font_name(cfg)
    folders = [s[system] for s in sets for system in ("base", "tuned")]
    by_source = {(training, scorer.name): {f: recorded_scores(f, list(scorer.axes)) for f in folders}}
    for font, path in tqdm(transfer_fonts(cfg).items(), desc="reward transfer: fonts", disable=not progress):
        source = font if font in SOUNDFONTS else path  # a font given by its path renders from that path
        by_source[(font, scorer.name)] = rescore(cfg, folders, source, scorer, progress=progress)
    if cross_scorer is not None and cfg.cross_score_limit:
        by_source[(training, cross_scorer.name)] = rescore(cfg, folders, cfg.soundfont, cross_scorer,
                                                          limit=cfg.cross_score_limit, progress=progress)
    frames = [scores[s[system]].assign(run=s["run"], seed=s["seed"], system=system, soundfont=font, scorer=name,
                                       output=np.arange(len(scores[s[system]])))
              for (font, name), scores in by_source.items() for s in sets for system in ("base", "tuned")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scores_key(cfg: Config, sets: list[dict], scorer) -> dict:
    """What the collected scores are a function of: each set's evaluations (their recorded keys), the
    fonts and their files, the run's scorer and the cross-scoring limit."""
    import hashlib

    def digest(folder: Path) -> str:
        return hashlib.sha256((folder / "info.json").read_bytes()).hexdigest()[:16]

    return {"sets": [{"run": s["run"], "seed": s["seed"], "base": digest(s["base"]), "tuned": digest(s["tuned"])}
                     for s in sets],
            "fonts": {name: soundfont_identity(path) for name, path in transfer_fonts(cfg).items()},
            "training_font": soundfont_identity(cfg.soundfont),
            "scorer": scorer.describe(), "cross_score_limit": cfg.cross_score_limit}


def scores_path(cfg: Config) -> Path:
    return cfg.profile_dir / "beyond" / "transfer_scores.parquet"


def transfer_scores(cfg: Config, run_names: list[str], scorer, cross_scorer=None, progress: bool = True) -> pd.DataFrame:
    """`collect` for the runs' paired evaluations, saved as runs/<profile>/beyond/transfer_scores.parquet,
    keyed by `scores_key` and the cross scorer (its record, or None), and reused while both hold."""
    sets = paired_sets(cfg, run_names)
    key = {**scores_key(cfg, sets, scorer), "cross": None if cross_scorer is None or not cfg.cross_score_limit
           else cross_scorer.describe()}
    cached = read_keyed(scores_path(cfg), key)
    if cached is not None:
        return cached
    return write_keyed(collect(cfg, sets, scorer, cross_scorer, progress), scores_path(cfg), key)


def load_scores(cfg: Config, scorer) -> tuple[pd.DataFrame, dict | None] | None:
    """(the saved scores, the cross scorer's record or None) when they were collected from the runs'
    current evaluations, fonts and scorer (whatever the cross scorer was); else None. For the report,
    which never renders."""
    path = scores_path(cfg)
    sidecar = path.with_suffix(".json")
    if not path.exists() or not sidecar.exists():
        return None
    stored = json.loads(sidecar.read_text()).get("key", {})
    current = json.loads(json.dumps(scores_key(cfg, paired_sets(cfg, cfg.all_runs()), scorer)))
    if {k: v for k, v in stored.items() if k != "cross"} != current:
        return None
    return pd.read_parquet(path), stored.get("cross")


def family_of(run: str) -> str:
    """Replicates are pooled with their run (smart_seed1 -> smart), as in the claims."""
    from .config import REPLICATE_RE

    match = REPLICATE_RE.fullmatch(run)
    return match.group(1) if match else run


def transfer_table(scores: pd.DataFrame, training_font: str, run_scorer: str, primary_axis: str,
                   axes_of: dict[str, list[str]], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired tuned-minus-base statistics per run family, soundfont, scorer and axis (stats.compare_paired:
    Holm over the scorer's axes within one run, font and scorer), the share of the reference gain that
    remains, and a verdict from TRANSFER_VERDICTS against the reference gain: the same run, scorer and
    axis on the training font; for a cross-scored axis, the training reward (primary axis) on it."""
    rows = []
    scores = scores.assign(family=scores["run"].map(family_of))
    for (family, font, scorer_name), part in scores.groupby(["family", "soundfont", "scorer"], sort=False):
        pairs = []
        for run_seed, one in part.groupby("seed", sort=True):
            base = one[one["system"] == "base"].sort_values("output")
            tuned = one[one["system"] == "tuned"].sort_values("output")
            pairs.append((int(run_seed), base.reset_index(drop=True), tuned.reset_index(drop=True)))
        stats = compare_paired(pairs, axes_of[scorer_name], n_boot=n_boot, seed=seed)
        stats.insert(0, "run", family)
        stats.insert(1, "soundfont", font)
        stats.insert(2, "heard_in_training", font == training_font)
        stats.insert(3, "scorer", scorer_name)
        stats.insert(4, "scorer_role", "training reward" if scorer_name == run_scorer else "cross-scored")
        rows.append(stats.rename(columns={"measure": "axis"}))
    table = pd.concat(rows, ignore_index=True)
    table["change"] = [movement(row) for _, row in table.iterrows()]
    reference = table[table["heard_in_training"]].set_index(["run", "scorer", "axis"])
    verdicts, retained = [], []
    for _, row in table.iterrows():
        cross = row["scorer"] != run_scorer
        ref = reference.loc[(row["run"], run_scorer, primary_axis) if cross else (row["run"], row["scorer"], row["axis"])]
        verdicts.append(_verdict(row["change"], ref["change"]))
        ref_gain = ref["median_difference"]  # a cross-scored axis has another scale: no share
        retained.append(row["median_difference"] / ref_gain if not cross and np.isfinite(ref_gain) and ref_gain != 0
                        else np.nan)
    table["gain_retained"] = retained
    table["verdict"] = verdicts
    table["training_reward_axis"] = (table["scorer"] == run_scorer) & (table["axis"] == primary_axis)
    return table


def _verdict(here: str, reference: str) -> str:
    """Against the change on the training font (the same run, scorer and axis; for a cross-scored
    axis, the training reward's): survives (the same direction) / reversed / this row's own
    "not significant" or "seeds disagree"; "no gain to transfer" when the reference moved neither way."""
    if reference not in ("up", "down"):
        return "no gain to transfer"
    if here not in ("up", "down"):
        return here
    return "survives" if here == reference else "reversed"


def describe_test() -> str:
    return f"{PAIRED_TEST} (over the scorer's axes, per run, font and scorer)"
