"""Prompts, and the named random streams every stage draws from.

Every random draw of a run comes from its seed through a named stream here, so that a resumed run
repeats exactly what an uninterrupted one does (without storing RNG state), evaluation prompts are
independent of training prompts, and nothing else in the package holds a magic seed number.
The stream numbers are the ones every run so far used: changing one changes results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .tokenizer import id_to_token, paper_tokenizer, token_id

# ------------------------------------------------------------------------------------------------
# Named streams: stream_seed(seed, index, STREAM) -> an independent 32-bit seed


class Stream:
    TRAIN_PROMPTS = 0      # index = step: the step's prompt groups
    TRAIN_SAMPLES = 1      # the step's completions: one generator per prompt group (group_seed)
    PROMPT_POOL = 2        # index = 0: the fixed prompt pool (prompt_pool > 0)
    EVAL_SAMPLES = 3       # index = batch: evaluation completions (diversity sweeps use seed + 1)
    STIMULI = 5            # + the system's position; index = prompt * 1000 + attempt: listening stimuli
    BEST_OF_N = 8          # index = batch: the base model's best-of-N draws (notebook 05)


# SeedSequence([seed, key]) streams of whole lists
EVAL_PROMPT_KEY = 7_777_777     # the evaluation prompt list (never the training prompts)
STIMULUS_PROMPT_KEY = 424_242   # which evaluation prompts the listening study uses
PRETRAIN_VALIDATION_BASE = 10_000  # default_rng(10_000 + i): the i-th fixed validation batch (seed-free)
DIVERSITY_SEED_OFFSET = 1       # the diversity sweep samples with seed + 1 (apart from the evaluation set)


def stream_seed(seed: int, index: int, stream: int = Stream.TRAIN_PROMPTS) -> int:
    """An independent seed for (run seed, index, stream)."""
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1)[0])


def group_seed(seed: int, step: int, group: int) -> int:
    """The seed of one prompt group's completions at one training step: the same whichever process
    samples the group (smart_core.distributed), so 1 and N processes draw the same completions."""
    return int(np.random.SeedSequence([seed, step, Stream.TRAIN_SAMPLES, group]).generate_state(1)[0])


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch generator on `device` (sampling draws on the model's device)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


# ------------------------------------------------------------------------------------------------
# Prompt builders. A prompt is a list of ids beginning with BOS; every prompt of one kind has one
# length, so a batch of prompts needs no padding.


@dataclass(frozen=True)
class Prompt:
    ids: tuple[int, ...]
    kind: str

    @property
    def key(self) -> str:
        return " ".join(id_to_token(i) for i in self.ids)


def _vocab_tokens(prefix: str) -> list[str]:
    return sorted((t for t in paper_tokenizer().vocab if t.startswith(prefix)), key=token_id)


def procedural_prompt(rng: np.random.Generator, with_note: bool = False) -> Prompt:
    """[BOS, Bar, TimeSig, Position_0, Tempo] (+ [Pitch, Velocity, Duration]); 15 x 64 = 960 distinct."""
    tokens = ["BOS_None", "Bar_None", rng.choice(_vocab_tokens("TimeSig_")), "Position_0", rng.choice(_vocab_tokens("Tempo_"))]
    if with_note:
        tokens += [rng.choice(_vocab_tokens(p)) for p in ("Pitch_", "Velocity_", "Duration_")]
    return Prompt(tuple(token_id(t) for t in tokens), "procedural+note" if with_note else "procedural")


def dataset_prompt(score_ids: list[int]) -> Prompt:
    """[BOS, Bar, TimeSig, Position_0, Tempo] with the first TimeSig and Tempo of a held-out piece."""
    tokens = [id_to_token(i) for i in score_ids]
    time_sig = next((t for t in tokens if t.startswith("TimeSig_")), "TimeSig_4/4")
    tempo = next((t for t in tokens if t.startswith("Tempo_")), "Tempo_120.0")
    ids = ("BOS_None", "Bar_None", time_sig, "Position_0", tempo)
    return Prompt(tuple(token_id(t) for t in ids), "dataset")


def make_prompts(kind: str, n: int, rng: np.random.Generator, dataset_ids: list[list[int]] | None = None) -> list[Prompt]:
    if kind == "procedural":
        return [procedural_prompt(rng) for _ in range(n)]
    if kind == "procedural+note":
        return [procedural_prompt(rng, with_note=True) for _ in range(n)]
    if kind == "dataset":
        if not dataset_ids:
            raise ValueError("dataset prompts need tokenized held-out pieces (the corpus test split)")
        picks = rng.integers(0, len(dataset_ids), size=n)
        return [dataset_prompt(dataset_ids[i]) for i in picks]
    raise ValueError(f"unknown prompt kind {kind!r}; use procedural, procedural+note or dataset")


# ------------------------------------------------------------------------------------------------
# The prompt streams of training and evaluation


def held_out_ids(cfg, dataset_ids=None):
    """Token ids of held-out pieces for "dataset" prompts: the given ones, else the corpus's test
    split (never the training split). None for the procedural kinds."""
    if dataset_ids is not None or cfg.prompt_kind != "dataset":
        return dataset_ids
    from .data import Corpus
    from .errors import MissingInput

    corpus = Corpus(Path(cfg.corpus_dir))
    if not (corpus.root / "tokens-test.npz").exists():
        raise MissingInput(f"dataset prompts need the built corpus in {cfg.corpus_dir} (python -m smart_core data)")
    return [t.tolist() for t in corpus.tokens("test")]


def training_prompts(cfg, step: int, dataset_ids=None) -> list[Prompt]:
    """The step's prompts, each repeated group_size times (consecutive groups of G)."""
    dataset_ids = held_out_ids(cfg, dataset_ids)
    rng = np.random.default_rng(stream_seed(cfg.seed, step, Stream.TRAIN_PROMPTS))
    if cfg.prompt_pool:
        pool_rng = np.random.default_rng(stream_seed(cfg.seed, 0, Stream.PROMPT_POOL))
        pool = make_prompts(cfg.prompt_kind, cfg.prompt_pool, pool_rng, dataset_ids)
        prompts = [pool[i] for i in rng.integers(0, len(pool), size=cfg.prompts_per_step)]
    else:
        prompts = make_prompts(cfg.prompt_kind, cfg.prompts_per_step, rng, dataset_ids)
    return [p for p in prompts for _ in range(cfg.group_size)]


def evaluation_prompts(cfg, n: int, dataset_ids=None) -> list[Prompt]:
    """An independent stream (not the training prompt list, unlike the authors' code)."""
    dataset_ids = held_out_ids(cfg, dataset_ids)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, EVAL_PROMPT_KEY]))
    return make_prompts(cfg.prompt_kind, n, rng, dataset_ids)
