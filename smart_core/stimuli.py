"""Listening-study stimuli: K prompts x systems, regenerated until the paper's filters hold,
loudness-matched, with secret ids; the study folder's public description.

Study folder:
  study.json          public: question, scale, stimulus ids (what the browser may know)
  stimuli/<id>.wav    anonymous ids; loudness-matched 10 s clips
  practice.wav        optional practice clip (not rated)
  private/key.csv     id -> system, prompt, attempt, seed, reward axes (never served)
  private/ratings.sqlite  the ratings database (never served; schema and export in ratings.py)
"""

from __future__ import annotations

import json
import secrets
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .features import midi_features
from .render import save_wav


@dataclass
class StudyConfig:
    title: str = "SMART listening study"
    question: str = "How much do you enjoy this excerpt?"
    scale_min: int = 1
    scale_max: int = 10
    scale_labels: tuple[str, str] = ("not at all", "very much")
    stimuli: list[str] = field(default_factory=list)
    practice: bool = False
    seed: int = 0


# ------------------------------------------------------------------------------------------------
# Stimuli


def passes_paper_filters(midi: bytes, min_seconds: float = 8.0) -> bool:
    """The paper's stimulus filters: at least one note, empty-beat rate 0, at least 8 s long."""
    f = midi_features(midi)
    return f["n_notes"] > 0 and f["empty_beat_rate"] == 0 and f["duration_seconds"] >= min_seconds


def loudness_match(clips: list[np.ndarray], peak_limit: float = 0.99) -> tuple[list[np.ndarray], float]:
    """Scale every clip to one RMS level: the highest at which no clip peaks above peak_limit.
    Equal RMS (over the whole clip) keeps level from deciding ratings. Returns (clips, rms)."""
    rms = np.array([np.sqrt(np.mean(c ** 2)) for c in clips])
    peak = np.array([np.abs(c).max() for c in clips])
    ok = rms > 0
    target = float(np.min(peak_limit * rms[ok] / peak[ok])) if ok.any() else 0.0
    return [(c * (target / r) if r > 0 else c).astype(np.float32) for c, r in zip(clips, rms)], target


def make_stimuli(cfg, systems: dict[str, str], study_dir: str | Path, scorer, max_attempts: int = 20,
                 clip_seconds: float = 10.0, progress: bool = True) -> pd.DataFrame:
    """Generate K prompts x systems stimuli, regenerating until the paper's filters hold.

    systems: name -> model folder (e.g. {"base": ..., "tuned": ...}). The audio is fully determined
    by cfg.seed; the stimulus ids are secret (see draw_stimulus_ids). Warns when stimuli had to be
    kept without passing the filters. Returns the private key table (also in private/key.csv)."""
    from tqdm.auto import tqdm

    from .model import load_pretrained
    from .prompts import STIMULUS_PROMPT_KEY, Stream, evaluation_prompts, generator, stream_seed
    from .runtime import resolve_device
    from .rollout import generate_and_score
    from .render_pool import RenderPool, RenderSettings

    study = Path(study_dir)
    (study / "stimuli").mkdir(parents=True, exist_ok=True)
    (study / "private" / "midi").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STIMULUS_PROMPT_KEY]))
    pool_prompts = evaluation_prompts(cfg, max(cfg.listening_prompts * 4, 64))
    chosen = [pool_prompts[i] for i in rng.choice(len(pool_prompts), cfg.listening_prompts, replace=False)]
    weights = cfg.reward_weights or {scorer.primary_axis: 0.1}
    render_cfg = cfg.replace(max_seconds=clip_seconds)
    rows, clips = [], []
    with RenderPool(RenderSettings.from_config(render_cfg), 1) as pool:
        for system, model_dir in systems.items():
            model = load_pretrained(model_dir, resolve_device(cfg.device)).eval()
            for k, prompt in enumerate(tqdm(chosen, desc=f"stimuli {system}", disable=not progress)):
                for attempt in range(1, max_attempts + 1):
                    seed = stream_seed(cfg.seed, k * 1000 + attempt, Stream.STIMULI + list(systems).index(system))
                    gen = generator(next(model.parameters()).device, seed)
                    ro = generate_and_score(model, [prompt], render_cfg, pool, scorer, weights, gen)
                    passed = passes_paper_filters(ro.midi[0])
                    if passed or attempt == max_attempts:
                        break
                audio = ro.audio[0]
                n = int(clip_seconds * cfg.sample_rate)
                audio = np.pad(audio, ((0, 0), (0, max(0, n - audio.shape[1]))))[:, :n]
                clips.append(audio)
                rows.append({"system": system, "prompt": prompt.key, "prompt_index": k, "attempt": attempt,
                             "passed_filters": passed, "seed": seed,
                             **{c: float(ro.scores[c].iloc[0]) for c in ro.scores.columns}})
                rows[-1]["midi"] = ro.midi[0]
    clips, level = loudness_match(clips)
    key = write_stimuli(study, rows, clips, cfg.sample_rate, cfg.seed)
    (study / "private" / "loudness.json").write_text(json.dumps({"method": "equal RMS over the clip", "rms": level}))
    warn_filter_failures(key)
    return key


def draw_stimulus_ids(n: int) -> list[str]:
    """n distinct anonymous ids from the operating system's secret source.

    Not from the study seed: ids drawn from a public seed in row order (base rows first) would let
    anyone recompute which id is which system. The audio stays reproducible from the seed; only
    the names are secret, and the id -> system map lives in private/key.csv alone."""
    ids: list[str] = []
    while len(ids) < n:
        sid = f"s{secrets.randbits(32):08x}"  # 32 bits: the 8 hex digits the server accepts
        if sid not in ids:
            ids.append(sid)
    return ids  # in the order drawn, so pairing them with rows in row order is random too


def write_stimuli(study: Path, rows: list[dict], clips: list[np.ndarray], sample_rate: int, seed: int) -> pd.DataFrame:
    """Name each clip with a secret id, write stimuli/, private/midi/, private/key.csv and the
    public study.json (ids sorted: the list carries no system order). Returns the key."""
    ids = draw_stimulus_ids(len(rows))
    # files written in id order, not row order: their timestamps must not sort them by system
    for sid, audio, row in sorted(zip(ids, clips, rows), key=lambda item: item[0]):
        save_wav(study / "stimuli" / f"{sid}.wav", audio, sample_rate)
        (study / "private" / "midi" / f"{sid}.mid").write_bytes(row.pop("midi"))
        row["stimulus"] = sid
    first = ["stimulus", "system", "prompt", "prompt_index", "attempt", "passed_filters", "seed"]
    key = pd.DataFrame(rows)
    key = key[first + [c for c in key.columns if c not in first]]
    key.to_csv(study / "private" / "key.csv", index=False)
    write_study_config(study, StudyConfig(stimuli=sorted(ids), seed=seed))
    return key


def filter_failures(key: pd.DataFrame) -> pd.Series:
    """True for each stimulus kept although it did not pass the paper's filters (its attempts ran
    out). A key without the column (hand-made studies) has none."""
    if "passed_filters" not in key.columns:
        return pd.Series(False, index=key.index)
    return key["passed_filters"].map(lambda v: str(v).strip().lower() in ("false", "0", "0.0"))


def filter_failure_lines(key: pd.DataFrame, by_system: bool = False) -> list[str]:
    """One warning line (or one per system) for stimuli that did not pass the paper's filters."""
    failed = filter_failures(key)
    groups = key.groupby("system").groups.items() if by_system and "system" in key.columns else [(None, key.index)]
    lines = []
    for system, index in groups:
        n_failed, n = int(failed.loc[index].sum()), len(index)
        if n_failed:
            whose = f" of system {system!r}" if system is not None else ""
            lines.append(f"{n_failed} of {n} stimuli{whose} did not pass the paper's filters "
                         "(at least one note, no empty beat, at least 8 s; kept after the last regeneration "
                         "attempt; private/key.csv column passed_filters says which)")
    return lines


def warn_filter_failures(key: pd.DataFrame) -> None:
    """A warning per system whose stimuli include some that did not pass the paper's filters."""
    for line in filter_failure_lines(key, by_system=True):
        warnings.warn(line, stacklevel=3)


def write_study_config(study_dir: str | Path, config: StudyConfig) -> None:
    Path(study_dir, "study.json").write_text(json.dumps(asdict(config), indent=1))


def read_study_config(study_dir: str | Path) -> StudyConfig:
    data = json.loads(Path(study_dir, "study.json").read_text())
    data["scale_labels"] = tuple(data.get("scale_labels", ("", "")))
    return StudyConfig(**data)
