"""The ablations: config resolution, the paired table and the question's answer."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smart_core import ablations, results
from smart_core.config import Config
from smart_core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_a_users_steps_reach_the_ablations_unless_ablation_steps_is_set_too():
    cfg = Config.from_profile("small", steps=10)
    assert cfg.for_run("ablation_gspo").steps == 10 and cfg.ablation_baseline() == "long"
    both = Config.from_profile("small", steps=10, ablation_steps=5)
    assert both.for_run("ablation_gspo").steps == 5 and both.ablation_baseline() == "ablation_paper"
    # the check sees the user's own keys: steps=60 makes long the baseline, so no paper variant is needed
    assert Config.from_profile("small", steps=60, ablations={"entropy": {"entropy_coef": 0.01}}).ablation_runs() == [
        "ablation_entropy"]
    with pytest.raises(ConfigError, match="best_of_n_prompts=200"):
        Config.from_profile("small", best_of_n_prompts=200)


def test_an_ablation_is_the_long_run_with_its_variant_and_its_identity_cannot_be_overridden():
    cfg = Config.from_profile("small")
    gspo = cfg.for_run("ablation_gspo")
    assert (gspo.importance_sampling_level, gspo.num_iterations, gspo.beta, gspo.steps) == ("sequence", 2, 0.04, 60)
    assert cfg.for_run("ablation_dr_grpo").loss_type == "dr_grpo" and cfg.for_run("ablation_dr_grpo").steps == 60
    assert cfg.ablation_baseline() == "ablation_paper" and cfg.ablation_runs()[0] == "ablation_paper"
    full = cfg.replace(ablation_steps=100)  # long's own steps: long is the baseline, no paper variant run
    assert full.ablation_baseline() == "long" and "ablation_paper" not in full.ablation_runs()
    assert full.for_run("ablation_entropy").steps == 100
    # a user key the pipeline applies to every run still reaches the variants...
    assert cfg.replace(lr=5e-5).for_run("ablation_gspo").lr == 5e-5
    # ...but not one that is a variant's identity: one line, before any work
    with pytest.raises(ConfigError, match="ablation 'ablation_entropy' is defined by entropy_coef=0.01") as err:
        cfg.replace(entropy_coef=0.02).for_run("ablation_entropy")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown or not allowed key"):
        cfg.replace(ablations={"bad": {"not_a_key": 1}})
    with pytest.raises(ConfigError, match="keep the 'paper' variant"):
        cfg.replace(ablations={"gspo": {"importance_sampling_level": "sequence"}})


def test_the_pipeline_refuses_a_variant_key_set_for_every_run_before_training(tiny_cfg):
    from smart_core.pipeline import steps

    with pytest.raises(ConfigError, match="gspo"):
        steps(tiny_cfg.replace(num_iterations=3), beyond=True)
    assert len(steps(tiny_cfg.replace(num_iterations=3))) == 8  # without beyond nothing is refused


def test_the_table_pairs_rewards_with_the_baseline_and_diversity_with_the_base(tiny_trained):
    cfg = tiny_trained["cfg"].replace(ablation_steps=0, diversity_bootstrap=100)
    base, tuned = tiny_trained["base_eval"], tiny_trained["tuned_eval"]
    worse = tuned.assign(reward=tuned["reward"] - 0.1)
    collapsed = tuned.assign(midi_path=tuned["midi_path"].iloc[0],  # one piece for every prompt
                             completion_ids=[tuned["completion_ids"].iloc[0]] * len(tuned))
    table = ablations.ablation_table(cfg, base, {"long": tuned, "ablation_gspo": worse,
                                                 "ablation_diversity_bonus": collapsed})
    rows = table.set_index("system")
    assert rows.index.tolist() == ["base", "long", "gspo", "diversity_bonus"]
    assert rows.loc["long", "reward_vs_baseline"] == 0 and rows.loc["long", "reaches_baseline_reward"] == "yes"
    assert rows.loc["gspo", "reward_vs_baseline"] == pytest.approx(-0.1)
    assert rows.loc["gspo", "reaches_baseline_reward"] == "no"
    assert rows.loc["diversity_bonus", "pairwise_distance"] == pytest.approx(0.0)
    assert rows.loc["diversity_bonus", "keeps_base_diversity"] == "no"
    assert rows.loc["gspo", "changes"] == "importance_sampling_level=sequence, num_iterations=2"
    assert rows.loc["base", "reaches_baseline_reward"] == ""
    answer = ablations.answer(table)
    assert answer["baseline"] == "long" and answer["n_variants"] == 2 and answer["both"] == []
    assert answer["reaching"] == ["diversity_bonus"] and answer["most_diverse_reaching"] == "diversity_bonus"
    with pytest.raises(ValueError, match="same prompts"):
        ablations.ablation_table(cfg, base, {"long": tuned, "ablation_gspo": worse.iloc[::-1]})
    text = " ".join(results.ablation_sentences(table, answer))
    assert text.startswith("No: none of the 2 variants reaches the reward of the long run")
    assert "1 of 2 reach the reward (diversity_bonus)" in text
    # without bootstrap intervals nothing is decided: "n/a", said as such, never a "no"
    bare = ablations.ablation_table(cfg.replace(diversity_bootstrap=0), base, {"long": tuned, "ablation_gspo": worse})
    assert bare.set_index("system").loc["gspo", ["reaches_baseline_reward", "keeps_base_diversity"]].tolist() == ["n/a"] * 2
    one = ablations.answer(bare, ["ablation_gspo", "ablation_diversity_bonus"])
    assert one["undecided"] == ["gspo"] and one["missing"] == ["diversity_bonus"] and one["n_variants"] == 1
    text = " ".join(results.ablation_sentences(bare, one))
    assert text.startswith("No: the one variant does not reach") and "Not decided" in text
    assert "Not evaluated yet (make beyond): diversity_bonus." in text


def test_a_run_trained_with_another_config_is_not_presented_as_this_variant(tiny_trained, capsys):
    from smart_core.report import final_evaluations

    cfg = tiny_trained["cfg"]
    assert list(final_evaluations(cfg, ["smart"])) == ["smart"]
    assert final_evaluations(cfg.replace(lr=0.5), ["smart"]) == {}  # smart asked for with another lr
    assert "smart left out: its folder holds another config (lr)" in capsys.readouterr().out


def test_shorter_variants_are_also_compared_with_the_long_run_itself(tiny_trained):
    cfg = tiny_trained["cfg"].replace(diversity_bootstrap=100)  # ablation_steps set: ablation_paper is the baseline
    assert cfg.ablation_baseline() == "ablation_paper"
    base, tuned = tiny_trained["base_eval"], tiny_trained["tuned_eval"]
    table = ablations.ablation_table(cfg, base, {"long": tuned.assign(reward=tuned["reward"] + 0.1),
                                                 "ablation_paper": tuned, "ablation_gspo": tuned,
                                                 "ablation_diversity_bonus": tuned.assign(reward=tuned["reward"] + 0.1)})
    rows = table.set_index("system")
    assert rows.loc["gspo", "reward_vs_long"] == pytest.approx(-0.1) and rows.loc["gspo", "reaches_long_reward"] == "no"
    assert rows.loc["diversity_bonus", "reward_vs_long"] == pytest.approx(0.0)
    assert rows.loc["diversity_bonus", "reaches_long_reward"] == "yes" and rows.loc["base", "reaches_long_reward"] == ""
    text = " ".join(results.ablation_sentences(table, ablations.answer(table)))
    assert "Against long itself" in text and "diversity_bonus not significantly below it" in text
    # without `long` in the table there is nothing to compare with: no column, no sentence
    alone = ablations.ablation_table(cfg, base, {"ablation_paper": tuned, "ablation_gspo": tuned})
    assert "reward_vs_long" not in alone
    assert "Against long" not in " ".join(results.ablation_sentences(alone, ablations.answer(alone)))


def test_dr_grpo_at_the_full_budget_is_read_as_the_training_paths_own_variation():
    table = pd.read_csv(ROOT / "figures" / "small" / "ablations.csv", keep_default_na=False, na_values=[""])
    table["is_ablation"] = table["is_ablation"].astype(str) == "True"
    text = " ".join(results.ablation_sentences(table, ablations.answer(table)))
    share = table.set_index("system").loc["dr_grpo", "truncated_share"]
    assert share >= 0.99 and f"dr_grpo's loss equals grpo's on every completion that reached the budget ({share:.1%}" in text
    shorter = table.assign(truncated_share=np.where(table["system"] == "dr_grpo", 0.5, table["truncated_share"]))
    assert "dr_grpo's loss equals" not in " ".join(results.ablation_sentences(shorter, ablations.answer(shorter)))
