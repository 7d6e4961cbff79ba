import json

import numpy as np
import symusic

from smart_core.midi import n_notes
from smart_core.tokenizer import BOS_ID, EOS_ID, VOCAB_SIZE, ids_to_score, paper_tokenizer, score_to_ids


def test_vocabulary_matches_the_paper_checkpoint_id_for_id(fixtures):
    paper = json.loads((fixtures / "paper_piano_vocab.json").read_text())
    ours = paper_tokenizer().vocab
    assert len(ours) == len(paper) == VOCAB_SIZE == 413
    assert ours == paper


def test_roundtrip_keeps_notes(fixtures):
    score = symusic.Score(str(fixtures / "c_major_scale.mid"))
    ids = score_to_ids(score)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    tokens = [paper_tokenizer()[i] for i in ids[1:5]]
    assert tokens == ["Bar_None", "TimeSig_3/4", "Position_0", "Tempo_90.0"]
    back = ids_to_score(ids)
    assert [n.pitch for n in back.tracks[0].notes] == [60, 62, 64, 65, 67, 69, 71, 72]


def test_multitrack_scores_are_merged_before_tokenizing(fixtures):
    score = symusic.Score(str(fixtures / "two_tracks_tempo_change.mid"))
    back = ids_to_score(score_to_ids(score))
    assert n_notes(back) == n_notes(score)


def test_decode_never_raises_on_garbage():
    rng = np.random.default_rng(0)
    for length in (0, 1, 5, 50, 300):
        for _ in range(40):
            score = ids_to_score(rng.integers(-5, VOCAB_SIZE + 20, size=length))
            assert isinstance(score, symusic.Score)
    assert n_notes(ids_to_score([])) == 0
    assert n_notes(ids_to_score([EOS_ID, 22, 130, 160])) == 0  # everything after EOS is ignored


def test_decode_does_not_mutate_its_input():
    ids = [BOS_ID, 21, 408, 190, 358, 61, 129, 153, EOS_ID]
    before = list(ids)
    ids_to_score(ids)
    assert ids == before
