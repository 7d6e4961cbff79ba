"""GRPO against a reference written here from the formulas, then the loop end to end."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import mannwhitneyu

from smart_core.grpo import MAX_LOG_RATIO, group_advantages, grpo_loss, train


# ---------------------------------------------------------------- reference implementations
def ref_advantages(rewards, g, scale=True, eps=1e-4):
    out = []
    for i in range(0, len(rewards), g):
        grp = [float(r) for r in rewards[i:i + g]]
        mean = sum(grp) / g
        std = math.sqrt(sum((r - mean) ** 2 for r in grp) / (g - 1))
        out += [(r - mean) / (std + eps) if scale else r - mean for r in grp]
    return out


def ref_loss(lp, old, ref, adv, mask, beta, eps, loss_type):
    b, t = len(lp), len(lp[0])
    per_token = [[0.0] * t for _ in range(b)]
    for i in range(b):
        for j in range(t):
            ratio = math.exp(lp[i][j] - old[i][j])
            obj = min(ratio * adv[i], min(max(ratio, 1 - eps), 1 + eps) * adv[i])
            kl = 0.0
            if beta:
                d = min(max(ref[i][j] - lp[i][j], -MAX_LOG_RATIO), MAX_LOG_RATIO)
                kl = math.exp(d) - d - 1
            per_token[i][j] = -(obj - beta * kl)
    if loss_type == "grpo":
        return sum(sum(per_token[i][j] * mask[i][j] for j in range(t)) / sum(mask[i]) for i in range(b)) / b
    total = sum(per_token[i][j] * mask[i][j] for i in range(b) for j in range(t))
    return total / sum(map(sum, mask)) if loss_type == "bnpo" else total / (b * t)


def test_group_advantages_match_the_reference():
    rewards = torch.tensor([0.1, 0.5, 0.3, 0.9, 2.0, 2.0, 1.0, 4.0])
    for scale in (True, False):
        ours = group_advantages(rewards, 4, scale=scale)
        assert np.allclose(ours.numpy(), ref_advantages(rewards.tolist(), 4, scale), atol=1e-6)


def test_all_equal_group_gives_zeros_not_nan():
    adv = group_advantages(torch.tensor([0.3, 0.3, 0.3, 0.3, 0.1, 0.2, 0.3, 0.4]), 4)
    assert torch.equal(adv[:4], torch.zeros(4)) and torch.isfinite(adv).all()
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(7), 4)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_matches_the_reference_with_padding(loss_type, beta):
    g = torch.Generator().manual_seed(0)
    b, t = 4, 6
    lp = -torch.rand(b, t, generator=g) * 3
    old = lp + 0.3 * torch.randn(b, t, generator=g)  # ratios away from 1 so clipping happens
    ref = lp + 0.5 * torch.randn(b, t, generator=g)
    adv = torch.tensor([1.0, -0.5, 0.0, 2.0])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]]).float()
    loss, stats = grpo_loss(lp, old, ref if beta else None, adv, mask, beta, 0.2, loss_type)
    expected = ref_loss(lp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(), beta, 0.2, loss_type)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5, abs_tol=1e-6)
    assert 0 < stats["clip_fraction"] < 1
    assert stats["kl"] > 0 if beta else math.isnan(stats["kl"])


def test_padding_values_do_not_matter():
    lp = torch.tensor([[-1.0, -2.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    a, _ = grpo_loss(lp, lp, lp - 0.1, torch.tensor([1.0]), mask, 0.04)
    lp2 = lp.clone()
    lp2[0, 2] = -50.0
    b, _ = grpo_loss(lp2, lp2, lp2 - 0.1, torch.tensor([1.0]), mask, 0.04)
    assert torch.isclose(a, b)


def test_extreme_log_ratios_stay_finite():
    lp = torch.tensor([[-200.0, 0.0]], requires_grad=True)
    ref = torch.tensor([[0.0, -200.0]])
    loss, stats = grpo_loss(lp, lp.detach(), ref, torch.tensor([1.0]), torch.ones(1, 2), beta=0.04)
    loss.backward()
    assert torch.isfinite(loss) and math.isfinite(stats["kl"]) and torch.isfinite(lp.grad).all()


def test_gradient_flows_only_through_logprobs():
    lp = torch.randn(2, 3, requires_grad=True)
    old = torch.randn(2, 3, requires_grad=True)
    ref = torch.randn(2, 3, requires_grad=True)
    loss, _ = grpo_loss(lp, old.detach(), ref.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 3), 0.04)
    loss.backward()
    assert lp.grad is not None and old.grad is None and ref.grad is None
    # with ratio = 1 the surrogate's gradient is -A / |o| per token (grpo loss type, beta 0)
    lp2 = torch.zeros(2, 3, requires_grad=True)
    loss2, _ = grpo_loss(lp2, lp2.detach(), None, torch.tensor([1.0, -1.0]), torch.ones(2, 3), beta=0.0)
    loss2.backward()
    assert torch.allclose(lp2.grad, torch.tensor([[-1 / 6] * 3, [1 / 6] * 3]))


# ---------------------------------------------------------------- the loop, end to end (tiny)
def test_tiny_run_writes_every_artifact(tiny_cfg, tiny_base_model):
    run = train(tiny_cfg, "smart", tiny_base_model, progress=False)
    steps, samples = run.steps(), run.samples()
    cfg = tiny_cfg.for_run("smart")
    assert len(steps) == cfg.steps and len(samples) == cfg.steps * cfg.completions_per_step
    for col in ("reward_mean", "kl", "clip_fraction", "frac_zero_std_groups", "entropy", "n_empty", "n_truncated",
                "seconds_generate", "seconds_render", "seconds_score", "seconds_update", "standin_mean"):
        assert col in steps.columns
    for col in ("prompt", "completion_ids", "standin", "reward", "advantage", "completion_length", "n_notes"):
        assert col in samples.columns
    assert len(list((run.path / "midi").rglob("*.mid"))) == len(samples)
    assert len(list((run.path / "audio").rglob("*.wav"))) > 0
    assert [s for s, _ in run.checkpoints()] == [2, 4]
    meta = run.meta
    assert meta["reward"]["backend"] == "standin" and meta["seed"] == 0 and "torch" in meta["packages"]
    assert meta["git_commit"]
    assert run.finished


def test_grpo_learns_a_cheap_fixed_reward(tiny_cfg, tiny_base_model):
    """One fixed prompt, the stand-in's onset-activity axis as reward: per-sample rewards of the
    last steps beat those of the first steps (one-sided Mann-Whitney, fixed seed)."""
    cfg = tiny_cfg.replace(steps=20, prompts_per_step=1, group_size=16, prompt_pool=1, lr=1e-3, beta=0.0,
                           num_iterations=4, max_completion_tokens=64, checkpoint_every=100, audio_every=1000,
                           reward_weights={"standin_activity": 1.0}, runs={})
    run = train(cfg, "learns", tiny_base_model, progress=False)
    samples = run.samples()
    first, last = samples[samples.step <= 4].reward, samples[samples.step > 16].reward
    assert last.mean() > first.mean()
    assert mannwhitneyu(last, first, alternative="greater").pvalue < 0.01


def test_interrupted_run_resumes_to_identical_numbers(tiny_cfg, tiny_base_model):
    base = tiny_cfg.replace(runs={}, steps=4, checkpoint_every=2)
    full = train(base, "uninterrupted", tiny_base_model, progress=False)
    # killed after step 3: step 3 is logged but only step 2 is checkpointed
    train(base, "interrupted", tiny_base_model, progress=False, stop_after_step=3)
    interrupted = full.path.parent / "interrupted"
    assert len(list((interrupted / "log").glob("steps-*"))) == 3
    resumed = train(base, "interrupted", tiny_base_model, progress=False)
    a, b = full.steps(), resumed.steps()
    timing = [c for c in a.columns if c.startswith("seconds")]
    pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing))
    pd.testing.assert_frame_equal(full.samples(), resumed.samples())
    assert len(resumed.meta["sessions"]) == 2


def test_changed_config_refuses_to_resume(tiny_cfg, tiny_base_model):
    base = tiny_cfg.replace(runs={}, steps=2, checkpoint_every=1)
    train(base, "fixed", tiny_base_model, progress=False, stop_after_step=1)
    with pytest.raises(ValueError, match="different config"):
        train(base.replace(beta=0.5), "fixed", tiny_base_model, progress=False)


def test_beta_zero_runs_measure_their_kl_without_training_on_it(tiny_cfg, tiny_base_model):
    """The paper's beta = 0 run drifts the most: its KL to the reference is logged too (no gradient)."""
    cfg = tiny_cfg.replace(steps=3, checkpoint_every=3, beta=0.0, kl_log_every=2)
    kl = train(cfg, "beta0_kl", tiny_base_model, progress=False).steps()["kl"].tolist()
    assert kl[0] == 0.0  # step 1 measures the reference against itself
    assert math.isnan(kl[1]) and kl[2] > 0  # measured every 2nd step; after two updates the policy has moved
    unmeasured = train(cfg.replace(kl_log_every=0), "beta0_nokl", tiny_base_model, progress=False).steps()
    assert unmeasured["kl"].isna().all()
    # the measurement does not change training: same rewards, same losses
    pd.testing.assert_series_equal(unmeasured["loss"], train(cfg, "beta0_kl", tiny_base_model, progress=False)
                                   .steps()["loss"])
