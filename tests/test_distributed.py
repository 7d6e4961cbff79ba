"""One GRPO run data-parallel over 2 processes (torchrun, gloo on CPU) equals the one-process run:
the same completions and rewards, the same logged steps, final parameters within float tolerance;
killed after step 2 and resumed under torchrun too."""

import subprocess
import sys

import pandas as pd
import pytest
import torch

from smart_core.config import Config
from smart_core.grpo import train
from smart_core.model import load_pretrained
from smart_core.runs import RunDir

# Sums over 2 shares instead of 1 batch change the last bits of the gradients, and Adam divides by
# sqrt(v): where a gradient is almost 0 those bits move a weight by a visible fraction of lr. Measured
# after 4 steps at lr 1e-3 (at most 4e-3 of movement): worst 1.6e-5, mean far below 1e-7.
PARAM_ATOL, PARAM_MEAN_ATOL = 1e-4, 1e-7


def _overrides(tmp_path, name, tiny_cfg, tiny_base_model):
    return [f"runs_dir={tmp_path / name}", f"base_model={tiny_base_model}", f"corpus_dir={tiny_cfg.corpus_dir}",
            f"music21_cache_dir={tiny_cfg.music21_cache_dir}", "reward_backend=standin", "render_workers=1"]


def _torchrun(args, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "smart_core", "--", "train", "--profile", "tiny", "--run", "ddp", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_exactly(tmp_path, tiny_cfg, tiny_base_model):
    reference_cfg = Config.from_profile("tiny").with_cli_overrides(_overrides(tmp_path, "one", tiny_cfg, tiny_base_model))
    one = train(reference_cfg, "ddp", progress=False)

    ddp_args = _overrides(tmp_path, "two", tiny_cfg, tiny_base_model)
    _torchrun([*ddp_args, "--stop-after-step", "2"])  # as if killed after step 2 (its checkpoint exists)
    _torchrun([*ddp_args, "--stop-after-step", "4"])  # resumed from step 2 by both processes
    two = RunDir(tmp_path / "two" / "tiny" / "ddp")

    assert two.meta["world_size"] == 2 and one.meta["world_size"] == 1
    a, b = one.samples(), two.samples()
    assert set(b["rank"]) == {0, 1} and set(a["rank"]) == {0}
    assert a["completion_ids"].map(list).tolist() == b["completion_ids"].map(list).tolist()
    pd.testing.assert_series_equal(a["reward"], b["reward"])
    pd.testing.assert_series_equal(a["advantage"], b["advantage"], atol=1e-6)
    steps_a, steps_b = one.steps(), two.steps()
    for column in ("reward_mean", "loss", "kl", "entropy", "completion_length"):
        pd.testing.assert_series_equal(steps_a[column], steps_b[column], atol=1e-5, rtol=1e-4)
    cfg = reference_cfg.for_run("ddp")
    final_one = load_pretrained(one.final_checkpoint(cfg), torch.device("cpu")).state_dict()
    final_two = load_pretrained(two.final_checkpoint(cfg), torch.device("cpu")).state_dict()
    diffs = torch.cat([(final_one[k] - final_two[k]).abs().ravel() for k in final_one])
    assert diffs.max() < PARAM_ATOL and diffs.mean() < PARAM_MEAN_ATOL, (diffs.max(), diffs.mean())


def test_groups_split_evenly_or_refuse_in_one_line():
    from smart_core.distributed import World, my_groups
    from smart_core.errors import ConfigError

    assert list(my_groups(4, World(1, 2))) == [2, 3] and list(my_groups(4, World())) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="cannot be split evenly over 2 processes"):
        my_groups(3, World(0, 2))


def test_per_group_generators_draw_the_same_tokens_whoever_shares_the_batch():
    from smart_core.sampling import draw_tokens

    probs = torch.softmax(torch.randn(6, 50, generator=torch.Generator().manual_seed(0)), -1)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    together = draw_tokens(probs, gens([1, 2, 3]))
    apart = torch.cat([draw_tokens(probs[:2], gens([1])), draw_tokens(probs[2:], gens([2, 3]))])
    assert torch.equal(together, apart)
    with pytest.raises(ValueError, match="equal blocks"):
        draw_tokens(probs, gens([1, 2, 3, 4]))
