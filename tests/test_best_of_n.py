"""Best-of-N from the base model: nested draws, selection, the table against tuned runs, caching."""

import pandas as pd
import pytest

from smart_core import best_of_n
from smart_core.config import Config
from smart_core.prompts import evaluation_prompts
from smart_core.render_pool import RenderPool, RenderSettings
from smart_core.reward import StandInScorer


def test_n_values_are_powers_of_two_up_to_the_maximum():
    assert best_of_n.n_values(Config.from_profile("small")) == [1, 2, 4, 8, 16]
    assert best_of_n.n_values(Config.from_profile("tiny", best_of_n_max=12)) == [1, 2, 4, 8, 12]
    assert best_of_n.n_values(Config.from_profile("tiny", best_of_n_max=1)) == [1]


def test_select_best_keeps_the_highest_reward_of_the_first_n_draws_the_earliest_on_a_tie():
    draws = pd.DataFrame({"prompt_index": [0, 0, 0, 0, 1, 1, 1, 1], "draw": [0, 1, 2, 3] * 2,
                          "reward": [0.1, 0.5, 0.9, 0.2, 0.4, 0.4, 0.1, 0.3]})
    assert best_of_n.select_best(draws, 1)["draw"].tolist() == [0, 0]
    assert best_of_n.select_best(draws, 2)["draw"].tolist() == [1, 0]  # prompt 1: a tie, the earlier draw
    assert best_of_n.select_best(draws, 4)["reward"].tolist() == [0.9, 0.4]


@pytest.fixture(scope="module")
def pool_and_cfg(tiny_trained):
    cfg = tiny_trained["cfg"].replace(best_of_n_max=4, best_of_n_prompts=4, render_workers=1)
    with RenderPool(RenderSettings.from_config(cfg), 1) as pool:
        draws = best_of_n.draw_pool(cfg, StandInScorer(), pool, progress=False)
    return cfg, draws


def test_the_pool_draws_every_prompt_n_times_from_the_base_model_and_is_reused(pool_and_cfg, monkeypatch):
    cfg, draws = pool_and_cfg
    assert len(draws) == 4 * 4 and draws.groupby("prompt_index")["draw"].apply(list).tolist() == [[0, 1, 2, 3]] * 4
    assert draws.groupby("prompt_index")["prompt"].first().tolist() == [p.key for p in evaluation_prompts(cfg, 4)]
    assert draws.groupby("prompt_index")["completion_ids"].apply(lambda c: len({tuple(x) for x in c})).min() > 1
    monkeypatch.setattr(best_of_n, "sample_set", lambda *a, **k: pytest.fail("sampled again"))
    with RenderPool(RenderSettings.from_config(cfg), 1) as pool:
        pd.testing.assert_frame_equal(best_of_n.draw_pool(cfg, StandInScorer(), pool, progress=False), draws)
    assert best_of_n.load_pool(cfg.replace(best_of_n_max=2), StandInScorer()) is None  # another key: not this pool


def test_the_table_rises_with_n_and_counts_every_reward_evaluation(pool_and_cfg, tiny_trained):
    cfg, draws = pool_and_cfg
    tuned = {"smart": (tiny_trained["tuned_eval"], 32)}
    table = best_of_n.best_of_n_table(cfg, draws, tuned)
    assert table["system"].tolist() == ["best-of-1", "best-of-2", "best-of-4", "smart"]
    assert table["reward_evaluations"].tolist() == [4, 8, 16, 32]
    assert table["evaluations_at_inference"].tolist() == [4, 8, 16, 0]
    rewards = table["mean_reward"].head(3).tolist()
    assert rewards == sorted(rewards)  # nested draws: per prompt the best of more can only be better
    assert rewards[0] == pytest.approx(draws[draws["draw"] == 0]["reward"].mean())
    assert table.loc[3, "mean_reward"] == pytest.approx(tiny_trained["tuned_eval"]["reward"].head(4).mean())
    assert (table["mean_reward_ci_low"] <= table["mean_reward"]).all()
    assert best_of_n.smallest_n_reaching(table, rewards[0]) == 1
    assert best_of_n.smallest_n_reaching(table, rewards[2]) == min(n for n, r in zip((1, 2, 4), rewards) if r >= rewards[2])
    assert best_of_n.smallest_n_reaching(table, rewards[2] + 1) is None
    shifted = tiny_trained["tuned_eval"].iloc[1:]  # another prompt order: not paired
    with pytest.raises(ValueError, match="not be paired"):
        best_of_n.best_of_n_table(cfg, draws, {"smart": (shifted, 32)})
