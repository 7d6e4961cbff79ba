"""Prompt builders and the named streams: training, evaluation and the fixed pools."""

import numpy as np
import pytest
import symusic

from smart_core.prompts import (Stream, dataset_prompt, evaluation_prompts, make_prompts, stream_seed,
                                training_prompts)
from smart_core.tokenizer import BOS_ID, paper_tokenizer, score_to_ids


@pytest.mark.parametrize("kind,length", [("procedural", 5), ("procedural+note", 8)])
def test_procedural_prompts(kind, length):
    prompts = make_prompts(kind, 50, np.random.default_rng(0))
    assert all(len(p.ids) == length and p.ids[0] == BOS_ID and p.kind == kind for p in prompts)
    tokens = [paper_tokenizer()[i] for i in prompts[0].ids]
    assert tokens[1] == "Bar_None" and tokens[2].startswith("TimeSig_") and tokens[3] == "Position_0"
    assert tokens[4].startswith("Tempo_")
    again = make_prompts(kind, 50, np.random.default_rng(0))
    assert prompts == again
    assert len({p.ids for p in prompts}) > 30  # 960 distinct procedural prompts


def test_dataset_prompt_takes_time_signature_and_tempo_of_the_piece(fixtures):
    ids = score_to_ids(symusic.Score(str(fixtures / "c_major_scale.mid")))
    prompt = dataset_prompt(ids)
    assert [paper_tokenizer()[i] for i in prompt.ids] == ["BOS_None", "Bar_None", "TimeSig_3/4", "Position_0", "Tempo_90.0"]
    with pytest.raises(ValueError, match="held-out"):
        make_prompts("dataset", 3, np.random.default_rng(0), None)


def test_evaluation_prompts_are_an_independent_stream(tiny_cfg):
    cfg = tiny_cfg.replace(prompts_per_step=4)
    train_first = [p for s in range(3) for p in training_prompts(cfg, s)[:: cfg.group_size]]
    evals = evaluation_prompts(cfg, 12)
    assert [p.ids for p in evals] != [p.ids for p in train_first]
    assert evaluation_prompts(cfg, 12) == evals


def test_dataset_prompts_come_from_the_held_out_split(tiny_cfg, tiny_corpus):
    cfg = tiny_cfg.replace(prompt_kind="dataset")
    prompts = training_prompts(cfg, 0) + evaluation_prompts(cfg, 6)
    allowed = {dataset_prompt(t.tolist()).ids for t in tiny_corpus.tokens("test")}
    assert all(p.kind == "dataset" and p.ids in allowed for p in prompts)


def test_streams_keep_the_numbers_every_run_so_far_used():
    """Changing a stream number changes every result: these are the values the committed runs used."""
    assert (Stream.TRAIN_PROMPTS, Stream.TRAIN_SAMPLES, Stream.PROMPT_POOL, Stream.EVAL_SAMPLES, Stream.STIMULI) == \
        (0, 1, 2, 3, 5)
    assert stream_seed(0, 3, Stream.TRAIN_SAMPLES) == int(np.random.SeedSequence([0, 3, 1]).generate_state(1)[0])
