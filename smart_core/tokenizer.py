"""The paper's REMI tokenizer and id <-> score conversion that never raises (prompts: prompts.py).

`paper_tokenizer()` matches `paper_piano_vocab.json` (the vocabulary of the authors' checkpoint)
token for token and id for id; tests/test_tokenizer.py checks it.
"""

from __future__ import annotations

import functools
import logging

import miditok
import numpy as np
import symusic

from .midi import PIANO_HIGHEST, PIANO_LOWEST, merge_to_piano

log = logging.getLogger(__name__)

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
VOCAB_SIZE = 413

TIME_SIGNATURES = {8: [3, 5, 6, 7, 9, 10, 11, 12], 4: [2, 3, 4, 5, 6], 2: [2, 3]}
SPECIAL_TOKENS = ["PAD", "BOS", "EOS", "PRE", "SUF"] + [f"INF{i}" for i in range(1, 17)]


@functools.lru_cache(maxsize=1)
def paper_tokenizer() -> miditok.REMI:
    """miditok REMI with no programs: 413 tokens, identical to the paper's vocabulary."""
    config = miditok.TokenizerConfig(
        pitch_range=(PIANO_LOWEST, PIANO_HIGHEST),
        beat_res={(0, 4): 12},
        num_velocities=32,
        special_tokens=SPECIAL_TOKENS,
        use_chords=False,
        use_rests=False,
        use_tempos=True,
        use_time_signatures=True,
        use_sustain_pedals=False,
        use_pitch_bends=False,
        use_programs=False,
        use_pitchdrum_tokens=False,  # miditok 3.x defaults to True, which adds tokens
        num_tempos=64,
        tempo_range=(40, 250),
        time_signature_range=TIME_SIGNATURES,
    )
    tokenizer = miditok.REMI(config)
    if len(tokenizer.vocab) != VOCAB_SIZE:
        raise RuntimeError(f"paper tokenizer has {len(tokenizer.vocab)} tokens, expected {VOCAB_SIZE}")
    return tokenizer


def token_id(token: str) -> int:
    return paper_tokenizer().vocab[token]


def id_to_token(i: int) -> str:
    return paper_tokenizer()[int(i)]


def score_to_ids(score: symusic.Score, add_bos_eos: bool = True) -> list[int]:
    """Tokenize a (single-track, piano) score. Multi-track scores are merged first."""
    tokenizer = paper_tokenizer()
    if len(score.tracks) > 1:
        score = merge_to_piano(score)
    sequences = tokenizer.encode(score)
    ids = list(sequences[0].ids) if sequences else []
    return [BOS_ID, *ids, EOS_ID] if add_bos_eos else ids


def ids_to_score(ids) -> symusic.Score:
    """Decode token ids to a score. Never raises: undecodable input gives an empty score.

    Special tokens (PAD, BOS, EOS, infilling tokens) are dropped before decoding; decoding stops at
    the first EOS. miditok's decode mutates its input, so it gets a copy.
    """
    tokenizer = paper_tokenizer()
    clean: list[int] = []
    for i in np.asarray(ids, dtype=np.int64).ravel().tolist():
        if i == EOS_ID:
            break
        if i < len(SPECIAL_TOKENS) or i >= VOCAB_SIZE:
            continue
        clean.append(int(i))
    try:
        score = tokenizer.decode([list(clean)])
    except Exception as err:  # garbage from an untrained model; the reward treats it as empty
        log.debug("undecodable token sequence (%s): %s", type(err).__name__, err)
        score = symusic.Score(tokenizer.time_division)
    return score
