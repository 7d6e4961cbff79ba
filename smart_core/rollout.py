"""One rollout: prompts -> sampled completions -> MIDI -> audio -> scores.

Training, evaluation, the diversity curves and the listening stimuli all go through
`generate_and_score`, so they share one definition of what a sample is and how it is scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .midi import n_notes
from .runtime import autocast
from .render_pool import RenderPool
from .reward import scalar_reward
from .sampling import sample
from .prompts import Prompt
from .tokenizer import EOS_ID, ids_to_score


@dataclass
class Rollout:
    prompts: list[Prompt]                 # one per sample (repeated G times for GRPO groups)
    prompt_ids: torch.Tensor              # [B, P]
    completions: torch.Tensor             # [B, T]
    mask: torch.Tensor                    # [B, T]
    midi: list[bytes]                     # prompt + completion, decoded
    audio: list[np.ndarray]
    scores: pd.DataFrame                  # one column per scorer axis
    reward: np.ndarray                    # scalar reward per sample
    n_notes: np.ndarray
    truncated: np.ndarray                 # no EOS within the token budget
    nonfinite: np.ndarray                 # scorer returned NaN/inf; reward is the fallback
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> np.ndarray:
        return self.n_notes == 0

    def table(self) -> pd.DataFrame:
        """Per-sample rows (no audio): prompt, completion tokens, every axis, reward, flags."""
        lengths = self.mask.sum(1).long().cpu().numpy()
        comp = self.completions.cpu().numpy()
        df = pd.DataFrame({
            "prompt": [p.key for p in self.prompts],
            "prompt_ids": [list(p.ids) for p in self.prompts],
            "completion_ids": [comp[i, : lengths[i]].tolist() for i in range(len(lengths))],
            "completion_length": lengths,
            "n_notes": self.n_notes,
            "empty": self.empty,
            "truncated": self.truncated,
            "nonfinite_score": self.nonfinite,
        })
        for axis in self.scores.columns:
            df[axis] = self.scores[axis].to_numpy()
        df["reward"] = self.reward
        return df


def generate_and_score(model, prompts: list[Prompt], cfg, pool: RenderPool, scorer, weights: dict[str, float],
                       generator: torch.Generator | None = None, keep_audio: bool = True) -> Rollout:
    device = next(model.parameters()).device
    seconds = {}
    t0 = time.perf_counter()
    prompt_ids = torch.tensor([p.ids for p in prompts], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    with autocast(device, cfg.precision):
        completions, mask = sample(model, prompt_ids, cfg.max_completion_tokens, cfg.temperature, generator)
    model.train(was_training)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds["generate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    full = torch.cat([prompt_ids, completions], dim=1).cpu().numpy()
    scores_midi = [ids_to_score(row) for row in full]
    midi = [s.dumps_midi() for s in scores_midi]
    notes = np.array([n_notes(s) for s in scores_midi])
    truncated = ~(completions == EOS_ID).any(dim=1).cpu().numpy()
    if getattr(scorer, "scores_in_render_workers", False):
        # a cheap CPU scorer runs next to each synth: "render" then includes its scoring
        audio, scores = pool.render_and_score(midi, scorer, keep_audio)
        seconds["render"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    else:
        audio = pool.render(midi)
        seconds["render"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = scorer.score(audio, cfg.sample_rate)
    reward, nonfinite = scalar_reward(scores, weights, cfg.fallback_reward)
    seconds["score"] = time.perf_counter() - t0
    return Rollout(prompts, prompt_ids, completions, mask, midi, audio if keep_audio else [], scores, reward,
                   notes, truncated, nonfinite, seconds)
