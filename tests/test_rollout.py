"""One rollout: prompts -> completions -> MIDI -> audio -> scores -> reward, on the tiny base model."""

import numpy as np
import pandas as pd
import pytest
import torch

from smart_core import rollout as rollout_module
from smart_core.midi import as_score, n_notes
from smart_core.model import load_pretrained
from smart_core.prompts import evaluation_prompts, generator
from smart_core.render_pool import RenderPool, RenderSettings
from smart_core.reward import StandInScorer, default_weights
from smart_core.rollout import generate_and_score
from smart_core.sampling import completion_mask
from smart_core.tokenizer import EOS_ID, PAD_ID, score_to_ids


@pytest.fixture(scope="module")
def model(tiny_base_model):
    return load_pretrained(tiny_base_model).eval()


@pytest.fixture(scope="module")
def pool(tiny_cfg):
    with RenderPool(RenderSettings.from_config(tiny_cfg), 1) as pool:  # in this process: no start-up
        yield pool


def _rollout(model, cfg, pool, prompts, seed=0, scorer=None, keep_audio=True):
    scorer = scorer or StandInScorer()
    return generate_and_score(model, prompts, cfg, pool, scorer, default_weights(scorer),
                              generator(torch.device("cpu"), seed), keep_audio=keep_audio)


def test_a_rollout_has_one_row_per_sample_everywhere_and_the_papers_reward(tiny_cfg, model, pool):
    prompts = evaluation_prompts(tiny_cfg, 3)
    ro = _rollout(model, tiny_cfg, pool, prompts)
    b, t = ro.completions.shape
    assert b == 3 and 1 <= t <= tiny_cfg.max_completion_tokens
    assert ro.prompt_ids.shape == (3, len(prompts[0].ids)) and ro.mask.shape == (3, t)
    assert ro.prompt_ids.tolist() == [list(p.ids) for p in prompts]
    assert len(ro.prompts) == len(ro.midi) == len(ro.audio) == len(ro.scores) == 3
    for array in (ro.reward, ro.n_notes, ro.truncated, ro.nonfinite, ro.empty):
        assert array.shape == (3,)
    assert list(ro.scores.columns) == list(StandInScorer.axes)
    # the paper's reward for the stand-in's default weights: its primary axis / 10
    assert default_weights(StandInScorer()) == {"standin": 0.1}
    np.testing.assert_allclose(ro.reward, 0.1 * ro.scores["standin"].to_numpy(), rtol=1e-12)
    assert not ro.nonfinite.any()
    # the MIDI is the decoded prompt + completion; the note counts are its notes
    assert ro.n_notes.tolist() == [n_notes(as_score(m)) for m in ro.midi]
    cap = int(tiny_cfg.max_seconds * tiny_cfg.sample_rate)
    assert all(a.ndim == 2 and a.shape[0] == 2 and 0 < a.shape[1] <= cap for a in ro.audio)  # stereo, capped
    assert set(ro.seconds) == {"generate", "render", "score"}


def test_without_audio_a_rollout_returns_none_and_the_same_scores(tiny_cfg, model, pool):
    prompts = evaluation_prompts(tiny_cfg, 2)
    kept = _rollout(model, tiny_cfg, pool, prompts, seed=3)
    dropped = _rollout(model, tiny_cfg, pool, prompts, seed=3, keep_audio=False)
    assert len(kept.audio) == 2 and dropped.audio == []
    assert torch.equal(kept.completions, dropped.completions) and dropped.midi == kept.midi
    pd.testing.assert_frame_equal(dropped.scores, kept.scores)


def test_truncated_means_no_eos_in_the_completion(tiny_cfg, model, pool, fixtures, monkeypatch):
    """Completions made to order: EOS on the budget's last token (not truncated, though as long as
    the budget), EOS early, no EOS (truncated), EOS first (empty, not truncated)."""
    notes = score_to_ids(as_score((fixtures / "c_major_scale.mid").read_bytes()))[5:]  # Pitch, Velocity, ...
    t = 12
    rows = [notes[:t - 1] + [EOS_ID], notes[:4] + [EOS_ID] + [PAD_ID] * (t - 5), notes[:t],
            [EOS_ID] + [PAD_ID] * (t - 1)]
    completions = torch.tensor(rows)

    def made_to_order(model, prompt_ids, max_new_tokens, temperature, generator):
        assert prompt_ids.size(0) == len(rows) and max_new_tokens == tiny_cfg.max_completion_tokens
        return completions.clone(), completion_mask(completions)

    monkeypatch.setattr(rollout_module, "sample", made_to_order)
    ro = _rollout(model, tiny_cfg, pool, evaluation_prompts(tiny_cfg, 1) * len(rows))
    assert ro.truncated.tolist() == [False, False, True, False]
    assert ro.n_notes.tolist() == [3, 1, 3, 0] and ro.empty.tolist() == [False, False, False, True]
    table = ro.table()
    assert table["truncated"].tolist() == [False, False, True, False]
    assert table["completion_length"].tolist() == [12, 5, 12, 1]
    assert [len(c) for c in table["completion_ids"]] == [12, 5, 12, 1]
    assert table["completion_ids"][1] == notes[:4] + [EOS_ID]


def test_the_table_has_one_row_per_sample_with_every_axis(tiny_cfg, model, pool):
    prompts = evaluation_prompts(tiny_cfg, 3)
    ro = _rollout(model, tiny_cfg, pool, prompts, seed=1, keep_audio=False)
    table = ro.table()
    assert len(table) == 3
    assert table["prompt"].tolist() == [p.key for p in prompts]
    assert table["prompt_ids"].tolist() == [list(p.ids) for p in prompts]
    for axis in StandInScorer.axes:
        np.testing.assert_array_equal(table[axis].to_numpy(), ro.scores[axis].to_numpy())
    np.testing.assert_array_equal(table["reward"].to_numpy(), ro.reward)
    lengths = ro.mask.sum(1).long().tolist()
    assert table["completion_length"].tolist() == lengths
    assert table["completion_ids"].tolist() == [ro.completions[i, :n].tolist() for i, n in enumerate(lengths)]
    assert table["n_notes"].tolist() == ro.n_notes.tolist()
    assert "audio" not in table.columns


class HalfBroken(StandInScorer):
    """The stand-in, except that the second clip's scores come back NaN."""

    scores_in_render_workers = False

    def score(self, audios, sample_rate):
        scores = super().score(audios, sample_rate)
        scores.loc[1, :] = np.nan
        return scores


def test_a_nonfinite_score_gets_the_fallback_reward_and_is_flagged(tiny_cfg, model, pool):
    cfg = tiny_cfg.replace(fallback_reward=-0.5)
    ro = _rollout(model, cfg, pool, evaluation_prompts(cfg, 3), scorer=HalfBroken(), keep_audio=False)
    assert ro.nonfinite.tolist() == [False, True, False]
    assert ro.reward[1] == -0.5
    np.testing.assert_allclose(ro.reward[[0, 2]], 0.1 * ro.scores["standin"].to_numpy()[[0, 2]])
    assert ro.table()["nonfinite_score"].tolist() == [False, True, False]
