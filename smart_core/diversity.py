"""How varied a set of generated pieces is: numbers behind the paper's piano-roll pictures.

Every metric takes a *set* of samples. On constructed sets they behave as documented and tested:
identical pieces give the minimum, independent random pieces score high, and mixing in more
copies of one piece moves each metric monotonically towards its minimum.
"""

from __future__ import annotations

import itertools

import numpy as np
import symusic

from .midi import as_score

ROLL_BEATS, FRAMES_PER_BEAT, LOW_PITCH, HIGH_PITCH = 16, 12, 21, 108


def distinct_n(sequences: list[list[int]], n: int) -> float:
    """Unique n-grams / all n-grams over the set (1.0: no n-gram repeats; small: repetitive)."""
    grams = [tuple(seq[i:i + n]) for seq in sequences for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def pianoroll(midi, beats: int = ROLL_BEATS, frames_per_beat: int = FRAMES_PER_BEAT) -> np.ndarray | None:
    """Binary roll [88 pitches (21-108), beats * frames_per_beat] of the first `beats` beats, or
    None when the piece is shorter than that (the paper drops those)."""
    score = as_score(midi)
    tpq = score.ticks_per_quarter
    notes = [n for t in score.tracks if not t.is_drum for n in t.notes]
    if not notes or max(n.time + n.duration for n in notes) < beats * tpq:
        return None
    roll = np.zeros((HIGH_PITCH - LOW_PITCH + 1, beats * frames_per_beat), dtype=np.float32)
    for n in notes:
        if LOW_PITCH <= n.pitch <= HIGH_PITCH:
            start = int(n.time * frames_per_beat / tpq)
            end = max(start + 1, int((n.time + n.duration) * frames_per_beat / tpq))
            roll[n.pitch - LOW_PITCH, start:min(end, roll.shape[1])] = 1.0
    return roll


def average_pianoroll(midis) -> tuple[np.ndarray, int, int]:
    """(mean roll, pieces used, pieces dropped for being shorter than 16 beats)."""
    rolls = [pianoroll(m) for m in midis]
    kept = [r for r in rolls if r is not None]
    shape = (HIGH_PITCH - LOW_PITCH + 1, ROLL_BEATS * FRAMES_PER_BEAT)
    mean = np.mean(kept, axis=0) if kept else np.zeros(shape, np.float32)
    return mean, len(kept), len(rolls) - len(kept)


def profile(midi) -> np.ndarray:
    """A 24-dim description of one piece: its pitch-class histogram (12) and the histogram of its
    onsets over the 12 positions of a beat (12), each summing to 1 (zeros for an empty piece)."""
    score: symusic.Score = as_score(midi)
    tpq = score.ticks_per_quarter
    notes = [n for t in score.tracks if not t.is_drum for n in t.notes]
    vec = np.zeros(24)
    if not notes:
        return vec
    for n in notes:
        vec[n.pitch % 12] += 1
        vec[12 + int(round((n.time % tpq) * 12 / tpq)) % 12] += 1
    vec[:12] /= vec[:12].sum()
    vec[12:] /= vec[12:].sum()
    return vec


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs (0 for identical items)."""
    vectors = np.asarray(vectors, dtype=float)
    if len(vectors) < 2:
        return float("nan")
    diffs = vectors[:, None, :] - vectors[None, :, :]
    dist = np.sqrt((diffs ** 2).sum(-1))
    return float(dist[np.triu_indices(len(vectors), 1)].mean())


def vendi_score(features: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng 2023): exp of the entropy of the eigenvalues of K / n, K the
    cosine similarity of the feature vectors (each column scaled by its largest magnitude, not
    centred: centring would make two different pieces opposite). 1 for identical items, up to n
    for n mutually orthogonal ones: "the effective number of distinct pieces"."""
    x = np.nan_to_num(np.asarray(features, dtype=float))
    n = len(x)
    if n == 0:
        return float("nan")
    scale = np.abs(x).max(axis=0)
    x = x / np.where(scale > 0, scale, 1.0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0)
    k = x @ x.T
    np.fill_diagonal(k, 1.0)  # an all-zero (empty) piece is still one item, similar to itself
    eig = np.linalg.eigvalsh(k / n)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))


def prompt_dependence(vectors: np.ndarray, prompt_keys: list[str]) -> float:
    """1 - (mean within-prompt distance / mean between-prompt distance). 0: outputs do not depend
    on the prompt; towards 1: each prompt fixes its output. Needs several samples per prompt."""
    vectors = np.asarray(vectors, dtype=float)
    within, between = [], []
    for i, j in itertools.combinations(range(len(vectors)), 2):
        d = float(np.linalg.norm(vectors[i] - vectors[j]))
        (within if prompt_keys[i] == prompt_keys[j] else between).append(d)
    if not within or not between or np.mean(between) == 0:
        return float("nan")
    return float(1 - np.mean(within) / np.mean(between))


def diversity_report(token_sequences: list[list[int]], midis: list, prompt_keys: list[str] | None = None) -> dict:
    from .features import FEATURES, midi_features

    profiles = np.stack([profile(m) for m in midis])
    feats = np.array([[midi_features(m)[k] for k in FEATURES] for m in midis], dtype=float)
    report = {f"distinct_{n}": distinct_n(token_sequences, n) for n in (1, 2, 3, 4)}
    report["pairwise_distance"] = mean_pairwise_distance(profiles)
    report["vendi"] = vendi_score(np.hstack([profiles, feats]))
    report["vendi_profile"] = vendi_score(profiles)
    if prompt_keys is not None:
        report["prompt_dependence"] = prompt_dependence(profiles, prompt_keys)
    return report
