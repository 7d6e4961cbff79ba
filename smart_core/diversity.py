"""How varied a set of generated pieces is: numbers behind the paper's piano-roll pictures.

Every metric takes a *set* of samples. On constructed sets they behave as documented and tested:
identical pieces give the minimum, independent random pieces score high, and mixing in more
copies of one piece moves each metric monotonically towards its minimum.
"""

from __future__ import annotations

import itertools

import numpy as np
import symusic
from scipy import sparse
from scipy.spatial.distance import cdist
from threadpoolctl import threadpool_limits

from .midi import as_score

ROLL_BEATS, FRAMES_PER_BEAT, LOW_PITCH, HIGH_PITCH = 16, 12, 21, 108


def distinct_n(sequences: list[list[int]], n: int) -> float:
    """Unique n-grams / all n-grams over the set (1.0: no n-gram repeats; small: repetitive)."""
    grams = [tuple(seq[i:i + n]) for seq in sequences for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def pianoroll(midi, beats: int = ROLL_BEATS, frames_per_beat: int = FRAMES_PER_BEAT,
              pad: bool = False) -> np.ndarray | None:
    """Binary roll [88 pitches (21-108), beats * frames_per_beat] of the first `beats` beats. A piece
    shorter than that is None (pad=False) or silent over its missing beats (pad=True; an empty
    piece is all silence)."""
    score = as_score(midi)
    tpq = score.ticks_per_quarter
    notes = [n for t in score.tracks if not t.is_drum for n in t.notes]
    if not pad and (not notes or max(n.time + n.duration for n in notes) < beats * tpq):
        return None
    roll = np.zeros((HIGH_PITCH - LOW_PITCH + 1, beats * frames_per_beat), dtype=np.float32)
    for n in notes:
        if LOW_PITCH <= n.pitch <= HIGH_PITCH:
            start = int(n.time * frames_per_beat / tpq)
            end = max(start + 1, int((n.time + n.duration) * frames_per_beat / tpq))
            roll[n.pitch - LOW_PITCH, start:min(end, roll.shape[1])] = 1.0
    return roll


def average_pianoroll(midis, n_beats: int = ROLL_BEATS,
                      frames_per_beat: int = FRAMES_PER_BEAT) -> tuple[np.ndarray, int]:
    """(mean roll over every piece, n = number of pieces averaged). Every piece counts: one shorter
    than n_beats is silence over its missing beats, an empty one silence throughout, so rolls of sets
    with the same n are comparable (the paper's figure 5; dropping short pieces would hide them)."""
    shape = (HIGH_PITCH - LOW_PITCH + 1, n_beats * frames_per_beat)
    total, n = np.zeros(shape, dtype=np.float64), 0
    for midi in midis:
        total += pianoroll(midi, n_beats, frames_per_beat, pad=True)
        n += 1
    return (total / max(n, 1)).astype(np.float32), n


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


def _unit_rows(features: np.ndarray) -> np.ndarray:
    """Each column scaled by its largest magnitude (not centred: centring would make two different
    pieces opposite), then each row to unit length (an all-zero row stays zero)."""
    x = np.nan_to_num(np.asarray(features, dtype=float))
    scale = np.abs(x).max(axis=0)
    x = x / np.where(scale > 0, scale, 1.0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0)


def _cosine_kernel(features: np.ndarray) -> np.ndarray:
    """Cosine similarity of the feature vectors (as _unit_rows scales them); 1 on the diagonal."""
    x = _unit_rows(features)
    k = x @ x.T
    np.fill_diagonal(k, 1.0)  # an all-zero (empty) piece is still one item, similar to itself
    return k


def _vendi_of_kernels(kernels: np.ndarray) -> np.ndarray:
    """Vendi score of each similarity matrix of a stack [..., n, n]."""
    n = kernels.shape[-1]
    eig = np.linalg.eigvalsh(kernels / n)
    eig = np.where(eig > 1e-12, eig, 1.0)  # log(1) = 0: (near-)zero eigenvalues add nothing
    return np.exp(-(eig * np.log(eig)).sum(-1))


def vendi_score(features: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng 2023): exp of the entropy of the eigenvalues of K / n, K the
    cosine similarity of the feature vectors (each column scaled by its largest magnitude, not
    centred: centring would make two different pieces opposite). 1 for identical items, up to n
    for n mutually orthogonal ones: "the effective number of distinct pieces"."""
    if len(features) == 0:
        return float("nan")
    return float(_vendi_of_kernels(_cosine_kernel(features)))


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


def bootstrap_indices(n: int, n_boot: int, prompts: list | None = None, seed: int = 0) -> np.ndarray:
    """[n_boot, n] resampled sample indices, with replacement; with prompts, within each prompt (a
    position keeps its prompt), so every resample has the design of the original set."""
    rng = np.random.default_rng(seed)
    if prompts is None:
        return rng.integers(0, n, size=(n_boot, n))
    idx = np.empty((n_boot, n), dtype=np.int64)
    keys = np.asarray([str(p) for p in prompts])
    for key in dict.fromkeys(keys):  # first-seen order: deterministic
        members = np.flatnonzero(keys == key)
        idx[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return idx


def _ngram_ids(sequences: list[list[int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(id of every n-gram occurrence of the set, the sequence it is in); equal n-grams share an id."""
    windows, rows = [], []
    for i, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) >= n:
            windows.append(np.lib.stride_tricks.sliding_window_view(seq, n))
            rows.append(np.full(len(seq) - n + 1, i))
    if not windows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    grams = np.concatenate(windows)
    low, base = grams.min(), int(grams.max() - grams.min()) + 1
    if base ** n < 2 ** 62:  # one integer per n-gram: a 1-d sort, much faster than rows
        grams = (grams - low) @ (base ** np.arange(n, dtype=np.int64))
    _, ids = np.unique(grams, axis=0 if grams.ndim > 1 else None, return_inverse=True)
    return ids.reshape(-1), np.concatenate(rows)


def _distinct_n_resampled(sequences: list[list[int]], n: int, weights: np.ndarray) -> np.ndarray:
    """distinct_n of every resample (rows of weights: how often each sequence was drawn).

    distinct_n = (sum over n-gram occurrences of 1 / occurrences of that n-gram in the set) / number
    of occurrences. In a resample, copies of one sequence do not make each other's n-grams repeats
    (as a pair of copies is no pair in the distances): an occurrence in sequence i is counted
    against its own sequence once and every other sequence as often as it was drawn. On the set
    itself (all weights 1) this is exactly distinct_n."""
    ids, rows = _ngram_ids(sequences, n)
    out = np.full(len(weights), np.nan)
    if not len(ids):
        return out
    n_ids = int(ids.max()) + 1
    # each (sequence, n-gram) once, with how often the n-gram occurs in that sequence
    pairs, own = np.unique(rows * n_ids + ids, return_counts=True)
    pair_rows, pair_ids, own = pairs // n_ids, pairs % n_ids, own.astype(float)
    lengths = np.bincount(rows, minlength=len(sequences)).astype(float)
    weights = np.asarray(weights, dtype=float)
    # an n-gram of one sequence only counts 1 / own per occurrence, 1 per (sequence, n-gram), in any
    # resample: linear in the weights. Only n-grams shared between sequences need the division.
    shared = np.bincount(pair_ids, minlength=n_ids)[pair_ids] > 1
    solo = np.bincount(pair_rows[~shared], minlength=len(sequences)).astype(float)
    pair_rows, pair_ids, own = pair_rows[shared], pair_ids[shared], own[shared]
    counts_t = sparse.csr_matrix((own, (pair_ids, pair_rows)), shape=(n_ids, len(sequences)))  # n-gram x sequence
    step = max(1, 2_000_000 // max(len(own), 1))  # resamples at a time: a few million numbers in flight
    for start in range(0, len(weights), step):
        w_all = weights[start:start + step]
        occurrences = w_all @ lengths
        total = np.asarray(counts_t @ w_all.T).T[:, pair_ids]  # occurrences of each n-gram in each resample
        w = w_all[:, pair_rows]
        counted = total - (w - 1.0) * own  # the other copies of its own sequence left out
        with np.errstate(invalid="ignore", divide="ignore"):
            share = ((w * own / np.where(w > 0, counted, 1.0)).sum(1) + w_all @ solo) / occurrences
        out[start:start + step] = np.where(occurrences > 0, share, np.nan)
    return out


def _pair_mean(dist: np.ndarray, weights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per resample (rows of weights), the mean of dist over pairs of draws of two different samples
    (a sample drawn twice is no pair: its zero distance to itself says nothing about diversity),
    restricted to the pairs where mask is true: sum w_i w_j d_ij / sum w_i w_j over i != j."""
    w = np.asarray(weights, dtype=float)
    mask = np.ones(dist.shape, dtype=bool) if mask is None else mask.copy()
    np.fill_diagonal(mask, False)
    num = ((w @ np.where(mask, dist, 0.0)) * w).sum(1)
    den = ((w @ mask.astype(float)) * w).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _vendi_resampled(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Vendi score of every resample, a sample drawn k times being k items (all similar 1).

    The non-zero eigenvalues of K / n, K = X X^T over the drawn unit rows, are those of the small
    X^T diag(w) X / n (features x features), so a resample costs a d x d eigenproblem, whatever n.
    An empty piece (a zero row, similar only to itself) gets a dimension of its own."""
    x = _unit_rows(features)
    empty = np.flatnonzero(~x.any(axis=1))
    if len(empty):
        x = np.hstack([x, np.eye(len(x))[:, empty]])
    w = np.asarray(weights, dtype=float)
    if x.shape[1] >= x.shape[0]:  # more dimensions than samples: the n x n kernel is the smaller one
        root = np.sqrt(w)
        grams = root[:, :, None] * (x @ x.T)[None] * root[:, None, :]
    else:
        grams = np.einsum("bi,ij,ik->bjk", w, x, x)
    # _vendi_of_kernels divides by the last dimension: rescale so that the division is by the draws
    return _vendi_of_kernels(grams * (grams.shape[-1] / w.sum(1))[:, None, None])


def _interval(estimate: float, resampled: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """95% percentile interval of the resampled metric, shifted by the offset of their median from
    the estimate. A with-replacement resample repeats samples, which by itself moves a set metric
    (Vendi most: a piece drawn k times weighs k times; distinct-n's 1 / count is convex) though the
    set is no more or less diverse; the shift removes that offset and keeps the bootstrap spread,
    so the interval always holds the estimate."""
    values = resampled[np.isfinite(resampled)]
    if not np.isfinite(estimate) or len(values) < 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, mid, high = np.percentile(values, [tail, 50, 100 - tail])
    return float(low - mid + estimate), float(high - mid + estimate)


def diversity_report(token_sequences: list[list[int]], midis: list, prompts: list | None = None, n_boot: int = 0,
                     seed: int = 0) -> dict:
    """distinct-1..4 of the token sequences, pairwise profile distance, Vendi (profile + features,
    and profile alone) and, with prompts, prompt dependence. n_boot > 0 adds `<metric>_ci_low` and
    `<metric>_ci_high`: a 95% bootstrap interval over samples (resampled within prompt when prompts
    are given), from the feature vectors and distance / similarity matrices computed once."""
    with threadpool_limits(1):  # one BLAS thread: the same numbers whatever the machine's thread count
        return _diversity_report(token_sequences, midis, prompts, n_boot, seed)


def _set_vectors(midis: list) -> tuple[np.ndarray, np.ndarray]:
    """(profiles [n, 24], profiles and MIDI features side by side): what the distance and Vendi see."""
    from .features import FEATURES, midi_features

    profiles = np.stack([profile(m) for m in midis])
    feats = np.array([[midi_features(m)[k] for k in FEATURES] for m in midis], dtype=float)
    return profiles, np.hstack([profiles, feats])


PAIRED_METRICS = ("pairwise_distance", "vendi")


def paired_difference(midis_a: list, midis_b: list, n_boot: int = 200, seed: int = 0) -> dict:
    """metric(set b) - metric(set a) for PAIRED_METRICS, two output sets paired by position (row i of
    both answers one prompt), each with a 95% bootstrap interval (`<metric>_difference_ci_low/high`)
    from resampling positions, the same resample for both sets (so the prompts' own spread cancels)."""
    if len(midis_a) != len(midis_b):
        raise ValueError(f"paired sets must have one output per prompt each ({len(midis_a)} vs {len(midis_b)})")
    with threadpool_limits(1):
        (prof_a, both_a), (prof_b, both_b) = _set_vectors(midis_a), _set_vectors(midis_b)
        out = {"pairwise_distance_difference": mean_pairwise_distance(prof_b) - mean_pairwise_distance(prof_a),
               "vendi_difference": vendi_score(both_b) - vendi_score(both_a)}
        if n_boot <= 0 or len(midis_a) < 2:  # no resamples: the intervals are unknown, never left out
            return {**out, **{f"{name}_ci_{end}": float("nan") for name in list(out) for end in ("low", "high")}}
        idx = bootstrap_indices(len(midis_a), n_boot, seed=seed)
        weights = np.stack([np.bincount(row, minlength=len(midis_a)) for row in idx])
        resampled = {"pairwise_distance_difference": _pair_mean(cdist(prof_b, prof_b), weights)
                     - _pair_mean(cdist(prof_a, prof_a), weights),
                     "vendi_difference": _vendi_resampled(both_b, weights) - _vendi_resampled(both_a, weights)}
    for name, values in resampled.items():
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = _interval(out[name], values)
    return out


SUMMARY_METRICS = ("distinct_4", "pairwise_distance", "vendi")


def output_set_summary(table, n_boot: int, seed: int) -> dict:
    """Mean reward and SUMMARY_METRICS of one output set (a samples table: reward, prompt_ids,
    completion_ids, midi_path; one output per prompt), each with a 95% bootstrap interval."""
    from pathlib import Path

    from .stats import mean_with_interval

    mean, low, high = mean_with_interval(table["reward"], n_boot, seed)
    midis = [Path(p).read_bytes() for p in table["midi_path"]]
    tokens = [list(p) + list(c) for p, c in zip(table["prompt_ids"], table["completion_ids"])]
    report = diversity_report(tokens, midis, n_boot=n_boot, seed=seed)
    out = {"n_outputs": len(table), "mean_reward": mean, "mean_reward_ci_low": low, "mean_reward_ci_high": high}
    for metric in SUMMARY_METRICS:
        out[metric] = report[metric]
        out[f"{metric}_ci_low"] = report.get(f"{metric}_ci_low", float("nan"))
        out[f"{metric}_ci_high"] = report.get(f"{metric}_ci_high", float("nan"))
    return out


def _diversity_report(token_sequences, midis, prompts, n_boot, seed) -> dict:
    profiles, both = _set_vectors(midis)
    report = {f"distinct_{n}": distinct_n(token_sequences, n) for n in (1, 2, 3, 4)}
    report["pairwise_distance"] = mean_pairwise_distance(profiles)
    report["vendi"] = vendi_score(both)
    report["vendi_profile"] = vendi_score(profiles)
    if prompts is not None:
        report["prompt_dependence"] = prompt_dependence(profiles, prompts)
    if n_boot <= 0 or len(midis) < 2:
        return report

    idx = bootstrap_indices(len(midis), n_boot, prompts, seed)
    weights = np.stack([np.bincount(row, minlength=len(midis)) for row in idx])  # draws of each sample
    resampled = {f"distinct_{n}": _distinct_n_resampled(token_sequences, n, weights) for n in (1, 2, 3, 4)}
    dist = cdist(profiles, profiles)
    resampled["pairwise_distance"] = _pair_mean(dist, weights)
    resampled["vendi"] = _vendi_resampled(both, weights)
    resampled["vendi_profile"] = _vendi_resampled(profiles, weights)
    if prompts is not None:
        keys = np.asarray([str(p) for p in prompts])
        same = keys[:, None] == keys[None, :]
        within, between = _pair_mean(dist, weights, same), _pair_mean(dist, weights, ~same)
        with np.errstate(invalid="ignore", divide="ignore"):
            resampled["prompt_dependence"] = np.where(between > 0, 1 - within / between, np.nan)
    with_ci = {}
    for name, value in report.items():  # each metric followed by its interval
        with_ci[name] = value
        with_ci[f"{name}_ci_low"], with_ci[f"{name}_ci_high"] = _interval(value, resampled[name])
    return with_ci
