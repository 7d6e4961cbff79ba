import json

import pytest

from smart_core.config import PROFILES, Config
from smart_core.errors import ConfigError


def test_every_profile_builds_and_names_the_three_paper_runs():
    for name in PROFILES:
        cfg = Config.from_profile(name)
        assert cfg.profile == name
        assert set(cfg.runs) == {"smart", "long", "long_beta0"}
        assert cfg.for_run("long_beta0").beta == 0.0
        assert cfg.for_run("long").steps > cfg.for_run("smart").steps


def test_paper_profile_holds_the_paper_settings():
    cfg = Config.from_profile("paper")
    assert (cfg.n_layer, cfg.hidden_size, cfg.intermediate_size, cfg.n_head) == (4, 512, 2048, 8)
    assert (cfg.group_size, cfg.completions_per_step, cfg.lr, cfg.beta) == (8, 32, 1e-4, 0.04)
    assert (cfg.max_completion_tokens, cfg.checkpoint_every, cfg.temperature, cfg.num_iterations) == (256, 20, 1.0, 1)
    assert cfg.runs["smart"] == {"steps": 200, "beta": 0.04}
    assert cfg.runs["long_beta0"] == {"steps": 1000, "beta": 0.0}


def test_overrides_and_unknown_keys():
    cfg = Config.from_profile("tiny", seed=3)
    assert cfg.seed == 3
    with pytest.raises(ValueError, match="unknown config keys"):
        Config.from_profile("tiny", not_a_key=1)
    with pytest.raises(ValueError, match="unknown profile"):
        Config.from_profile("huge")


def test_cli_overrides_parse_json_values():
    cfg = Config.from_profile("tiny").with_cli_overrides(["beta=0", "soundfont=musescore", "reward_weights={\"standin\": 0.1}"])
    assert cfg.beta == 0 and cfg.soundfont == "musescore" and cfg.reward_weights == {"standin": 0.1}
    with pytest.raises(ValueError, match="key=value"):
        cfg.with_cli_overrides(["beta"])


def test_save_load_roundtrip(tmp_path):
    cfg = Config.from_profile("small", seed=5)
    cfg.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == cfg
    assert json.loads((tmp_path / "c.json").read_text())["profile"] == "small"


def test_overrides_are_type_and_range_checked_before_any_work():
    from smart_core.errors import ConfigError

    cfg = Config.from_profile("tiny")
    for pair, message in [("beta=abc", "expected a number"), ("steps=abc", "expected an integer"),
                          ("checkpoint_every=0", "at least 1"), ("group_size=1", "at least 2"),
                          ("loss_type=ppo", "use one of grpo"), ("device=gpu", "cuda:N"),
                          ("reward_weights=3", "JSON object"), ("temperature=0", "greater than 0"),
                          ("scale_rewards=true", "use one of group, batch, none"),
                          ("importance_sampling_level=seq", "use one of token, sequence"),
                          ("mask_truncated_completions=1", "true or false"), ("entropy_coef=-0.1", "at least 0"),
                          ("group_diversity_bonus=-1", "at least 0"), ("group_diversity_bonus=x", "a number")]:
        with pytest.raises(ConfigError, match=message) as err:
            cfg.with_cli_overrides([pair])
        assert "\n" not in str(err.value)
    assert cfg.with_cli_overrides(["base_model=123"]).base_model == "123"  # text fields keep the text
    assert cfg.with_cli_overrides(["lr=1"]).lr == 1.0 and isinstance(cfg.with_cli_overrides(["lr=1"]).lr, float)


def test_the_scorer_registry_and_the_config_choices_agree():
    from smart_core.config import CHOICES
    from smart_core.reward import SCORERS

    assert set(CHOICES["reward_backend"]) == {"auto", *SCORERS}


def test_a_user_error_is_one_line_on_the_command_line():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "smart_core", "train", "--profile", "tiny", "steps=abc"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == "error: steps='abc': expected an integer"


def test_the_collapse_options_are_off_by_default():
    """Issue 16's options default to the paper's GRPO; each is a validated choice."""
    cfg = Config.from_profile("paper")
    assert (cfg.scale_rewards, cfg.importance_sampling_level, cfg.mask_truncated_completions, cfg.entropy_coef,
            cfg.group_diversity_bonus) == ("group", "token", False, 0.0, 0.0)
    on = cfg.with_cli_overrides(["scale_rewards=batch", "importance_sampling_level=sequence",
                                 "mask_truncated_completions=true", "entropy_coef=0.01", "group_diversity_bonus=0.5"])
    assert (on.scale_rewards, on.importance_sampling_level, on.mask_truncated_completions, on.entropy_coef,
            on.group_diversity_bonus) == ("batch", "sequence", True, 0.01, 0.5)
    assert cfg.replace(scale_rewards="none").scale_rewards == "none"


@pytest.mark.parametrize("stored, read", [(True, "group"), (False, "none")])
def test_a_run_folder_with_the_old_boolean_scale_rewards_still_loads(tmp_path, stored, read):
    """Before issue 16 scale_rewards was a bool and the new keys did not exist: such a config.json
    loads (true -> group, false -> none, as TRL reads them) and differs from today's only there."""
    cfg = Config.from_profile("small", scale_rewards=read)
    old = cfg.to_dict()
    old["scale_rewards"] = stored
    for key in ("importance_sampling_level", "mask_truncated_completions", "entropy_coef", "group_diversity_bonus"):
        del old[key]
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = Config.load(tmp_path / "config.json")
    assert loaded.scale_rewards == read and loaded.differences(cfg) == {}
    assert loaded.differences(Config.from_profile("small")) == ({} if stored else {"scale_rewards": ("none", "group")})


def test_replicates_are_named_by_seed_and_train_their_run_with_their_own_seed():
    cfg = Config.from_profile("small", seed=5)
    assert cfg.replicate_runs() == ["smart", "smart_seed6", "smart_seed7"]
    assert cfg.all_runs() == ["smart", "smart_seed6", "smart_seed7", "long", "long_beta0"]
    replicate = cfg.for_run("smart_seed7")
    assert (replicate.seed, replicate.steps, replicate.beta) == (7, cfg.for_run("smart").steps, 0.04)
    # a user's override still wins over the run's preset, and the replicate's seed over the user's seed
    tuned = cfg.replace(steps=3).for_run("smart_seed6")
    assert (tuned.seed, tuned.steps) == (6, 3)
    assert Config.from_profile("paper").replicate_runs() == ["smart"]  # the paper trained one seed
    with pytest.raises(ConfigError, match="replicates=0"):
        Config.from_profile("small", replicates=0)
