"""GRPO against a reference written here from the formulas, then the loop end to end."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import symusic
from scipy.stats import mannwhitneyu

from smart_core.grpo import (MAX_LOG_RATIO, group_advantages, group_diversity_bonus, grpo_loss, profile_similarity,
                             step_std, train)


# ---------------------------------------------------------------- reference implementations
# Written from the formulas with plain loops over groups, sequences and tokens in float64.
def ref_advantages(rewards, g, scale="group", eps=1e-4):
    def std(values):
        m = sum(values) / len(values)
        return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))

    everything = [float(r) for r in rewards]
    out = []
    for i in range(0, len(rewards), g):
        grp = everything[i:i + g]
        mean = sum(grp) / g
        div = {"group": std(grp) + eps, "batch": std(everything) + eps, "none": 1.0}[scale]
        out += [(r - mean) / div for r in grp]
    return out


def ref_loss(lp, old, ref, adv, mask, beta, eps, loss_type, level="token", truncated=None, entropy=None,
             entropy_coef=0.0, max_completion_tokens=None):
    b, t = len(lp), len(lp[0])
    # loss weights: a masked truncated completion weighs 0 everywhere
    w = [[mask[i][j] * (0.0 if truncated is not None and truncated[i] else 1.0) for j in range(t)] for i in range(b)]
    per_token = [[0.0] * t for _ in range(b)]
    for i in range(b):
        # GSPO: s_i = (prod_t pi/pi_old)^(1/|o_i|), the geometric mean of the token ratios
        n_i = int(sum(mask[i]))
        s_i = math.prod(math.exp(lp[i][j] - old[i][j]) for j in range(t) if mask[i][j]) ** (1 / max(n_i, 1))
        for j in range(t):
            ratio = math.exp(lp[i][j] - old[i][j]) if level == "token" else s_i
            obj = min(ratio * adv[i], min(max(ratio, 1 - eps), 1 + eps) * adv[i])
            kl = 0.0
            if beta:
                d = min(max(ref[i][j] - lp[i][j], -MAX_LOG_RATIO), MAX_LOG_RATIO)
                kl = math.exp(d) - d - 1
            per_token[i][j] = -(obj - beta * kl)
    total = sum(per_token[i][j] * w[i][j] for i in range(b) for j in range(t))
    tokens = max(sum(map(sum, w)), 1.0)
    if loss_type == "grpo":  # a completion with no loss tokens adds 0 and still counts in b (TRL's .mean())
        loss = sum(sum(per_token[i][j] * w[i][j] for j in range(t)) / max(sum(w[i]), 1.0) for i in range(b)) / b
    elif loss_type == "bnpo":
        loss = total / tokens
    else:
        loss = total / (b * max_completion_tokens)
    if entropy_coef:
        loss -= entropy_coef * sum(entropy[i][j] * w[i][j] for i in range(b) for j in range(t)) / tokens
    return loss


def batch(seed=0, dtype=torch.float32):
    """Six completions of lengths 7, 3, 1, 5, 7, 6 padded to 7; the two full-length ones have no EOS."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 1, 5, 7, 6])
    b, t = len(lengths), 7
    mask = (torch.arange(t)[None] < lengths[:, None]).to(dtype)
    lp = (-torch.rand(b, t, generator=g, dtype=torch.float64) * 3).to(dtype)
    # ratios far from 1, so that clipping happens
    old = (lp.double() + 0.3 * torch.randn(b, t, generator=g, dtype=torch.float64)).to(dtype)
    ref = (lp.double() + 0.5 * torch.randn(b, t, generator=g, dtype=torch.float64)).to(dtype)
    entropy = (torch.rand(b, t, generator=g, dtype=torch.float64) * 4).to(dtype)
    adv = torch.tensor([1.0, -0.5, 0.0, 2.0, -1.5, 0.7], dtype=dtype)
    truncated = torch.tensor([True, False, False, False, True, False])
    return lp, old, ref, entropy, adv, mask, truncated


def todays_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, beta, epsilon, loss_type):
    """grpo_loss's grpo and bnpo as they were before issue 16, operation for operation."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    objective = torch.min(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv)
    if beta != 0.0:
        log_ratio = torch.clamp(ref_logprobs - logprobs, -MAX_LOG_RATIO, MAX_LOG_RATIO)
        per_token = -(objective - beta * (torch.exp(log_ratio) - log_ratio - 1))
    else:
        per_token = -objective
    if loss_type == "grpo":
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / mask.size(0)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def test_group_advantages_match_the_reference():
    rewards = torch.tensor([0.1, 0.5, 0.3, 0.9, 2.0, 2.0, 1.0, 4.0])
    for scale in ("group", "batch", "none"):
        ours = group_advantages(rewards.double(), 4, scale=scale)
        assert np.allclose(ours.numpy(), ref_advantages(rewards.tolist(), 4, scale), rtol=1e-12, atol=1e-12)
    # the old boolean values read as TRL reads them (grpo_config.py:1078): True -> group, False -> none
    assert torch.equal(group_advantages(rewards, 4, True), group_advantages(rewards, 4, "group"))
    assert torch.equal(group_advantages(rewards, 4, False), group_advantages(rewards, 4, "none"))
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(rewards, 4, "prompt")


def test_scale_rewards_none_and_batch():
    rewards = torch.tensor([0.1, 0.5, 0.3, 0.9, 2.0, 2.0, 1.0, 4.0], dtype=torch.float64)
    grouped = rewards.view(2, 4)
    # none: the rewards minus their group's mean, nothing else
    assert torch.equal(group_advantages(rewards, 4, "none"), (grouped - grouped.mean(1, keepdim=True)).reshape(-1))
    # batch: one divisor for the step, the unbiased std of all 8 rewards (not of either group)
    values = rewards.tolist()
    mean = sum(values) / 8
    std_all = math.sqrt(sum((v - mean) ** 2 for v in values) / 7)
    ratio = group_advantages(rewards, 4, "batch") / group_advantages(rewards, 4, "none")
    assert torch.allclose(ratio, torch.full((8,), 1 / (std_all + 1e-4), dtype=torch.float64), rtol=1e-12)
    # the step's std computed from the shares (torchrun) equals the one-process std
    assert math.isclose(step_std(rewards, __import__("smart_core.distributed").distributed.SINGLE,
                                 torch.device("cpu")), std_all, rel_tol=1e-12)
    assert torch.equal(group_advantages(rewards, 4, "batch", batch_std=std_all),
                       (grouped - grouped.mean(1, keepdim=True)).reshape(-1) / (std_all + 1e-4))


def test_all_equal_group_gives_zeros_not_nan():
    adv = group_advantages(torch.tensor([0.3, 0.3, 0.3, 0.3, 0.1, 0.2, 0.3, 0.4]), 4)
    assert torch.equal(adv[:4], torch.zeros(4)) and torch.isfinite(adv).all()
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(7), 4)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("mask_truncated", [False, True])
def test_loss_matches_the_reference_with_padding(loss_type, beta, level, mask_truncated):
    for seed in range(3):
        lp, old, ref, _, adv, mask, truncated = batch(seed, torch.float64)
        adv = adv * (1 + seed)
        old = old + torch.tensor([0.3, -0.3, 0.25, -0.25, 0.3, -0.1], dtype=torch.float64)[:, None]  # GSPO clips too
        loss, stats = grpo_loss(lp, old, ref if beta else None, adv, mask, beta, 0.2, loss_type, max_completion_tokens=9,
                                importance_sampling_level=level, truncated=truncated if mask_truncated else None)
        expected = ref_loss(lp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(), beta, 0.2, loss_type,
                            level, truncated.tolist() if mask_truncated else None, max_completion_tokens=9)
        assert math.isclose(loss.item(), expected, rel_tol=1e-10, abs_tol=1e-12)
        assert 0 < stats["clip_fraction"] < 1
        assert stats["kl"] > 0 if beta else math.isnan(stats["kl"])


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("mask_truncated", [False, True])
def test_entropy_bonus_matches_the_reference(loss_type, mask_truncated):
    lp, old, ref, entropy, adv, mask, truncated = batch(1, torch.float64)
    trunc = truncated if mask_truncated else None
    args = (lp, old, ref, adv, mask, 0.04, 0.2, loss_type)
    loss, _ = grpo_loss(*args, max_completion_tokens=9, truncated=trunc, entropy=entropy, entropy_coef=0.03)
    expected = ref_loss(lp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(), 0.04, 0.2, loss_type,
                        truncated=truncated.tolist() if mask_truncated else None, entropy=entropy.tolist(),
                        entropy_coef=0.03, max_completion_tokens=9)
    assert math.isclose(loss.item(), expected, rel_tol=1e-10, abs_tol=1e-12)
    # the bonus is the loss tokens' mean entropy whatever the loss_type (TRL), and it raises entropy
    without, _ = grpo_loss(*args, max_completion_tokens=9, truncated=trunc)
    weights = mask * (~truncated).double()[:, None] if mask_truncated else mask
    assert torch.isclose(without - loss, 0.03 * (entropy * weights).sum() / weights.sum(), rtol=1e-12)
    ent = entropy.clone().requires_grad_(True)
    grpo_loss(*args, max_completion_tokens=9, truncated=trunc, entropy=ent, entropy_coef=0.03)[0].backward()
    assert (ent.grad <= 0).all() and (ent.grad[weights > 0] < 0).all() and (ent.grad[weights == 0] == 0).all()
    with pytest.raises(ValueError, match="entropy"):
        grpo_loss(*args, max_completion_tokens=9, entropy_coef=0.03)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_defaults_give_todays_loss_bit_for_bit(loss_type, beta):
    """The default options (group scaling, token ratios, nothing masked, no bonus) are the loss of
    before issue 16: equal to the last bit, gradient included, and the numbers pinned then."""
    pinned = {("grpo", 0.0): -0.24207793176174164, ("grpo", 0.04): -0.23223169147968292,
              ("bnpo", 0.0): -0.26622307300567627, ("bnpo", 0.04): -0.25865668058395386}
    lp, old, ref, _, adv, mask, _ = batch(0)
    ours, theirs = lp.clone().requires_grad_(True), lp.clone().requires_grad_(True)
    loss, _ = grpo_loss(ours, old, ref if beta else None, adv, mask, beta, 0.2, loss_type)
    before = todays_loss(theirs, old, ref, adv, mask, beta, 0.2, loss_type)
    loss.backward()
    before.backward()
    assert torch.equal(loss, before) and torch.equal(ours.grad, theirs.grad)
    assert loss.item() == pinned[loss_type, beta]


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_sequence_ratio_with_one_token_is_the_token_ratio(loss_type, beta):
    lp, old, ref, _, adv, _, _ = batch(2, torch.float64)
    mask = torch.zeros_like(lp)
    mask[:, 0] = 1  # every completion is one token long
    token, s1 = grpo_loss(lp, old, ref, adv, mask, beta, 0.2, loss_type, max_completion_tokens=9)
    sequence, s2 = grpo_loss(lp, old, ref, adv, mask, beta, 0.2, loss_type, max_completion_tokens=9,
                             importance_sampling_level="sequence")
    assert torch.isclose(token, sequence, rtol=1e-12, atol=1e-15) and s1 == pytest.approx(s2, nan_ok=True)
    with pytest.raises(ValueError, match="importance_sampling_level"):
        grpo_loss(lp, old, ref, adv, mask, beta, 0.2, loss_type, max_completion_tokens=9, importance_sampling_level="seq")


def test_sequence_ratio_clips_whole_completions():
    """GSPO: one ratio per completion (the geometric mean of its token ratios), so a completion is
    clipped entirely or not at all, and its padding never matters."""
    lp = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-1.0, -1.0, -1.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-1.3, -2.3, -3.3, 5.0], [-1.0, -1.0, -1.0, -1.0]])  # completion 0: log-ratio 0.3 per token
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    loss, stats = grpo_loss(lp, old, None, torch.tensor([1.0, 1.0]), mask, 0.0, 0.2, importance_sampling_level="sequence")
    loss.backward()
    assert stats["clip_fraction"] == pytest.approx(3 / 7)  # completion 0's three tokens, all clipped
    assert stats["ratio_mean"] == pytest.approx((3 * math.exp(0.3) + 4) / 7)
    assert torch.equal(lp.grad[0], torch.zeros(4))  # clipped with A > 0: no gradient through it
    assert torch.allclose(lp.grad[1], torch.full((4,), -1 / 2 / 4))  # d/dlp of -(1/2) exp(mean log-ratio)


def test_dr_grpo_divides_by_the_completion_budget_not_the_padding():
    lp, old, ref, _, adv, mask, _ = batch(0, torch.float64)
    a, _ = grpo_loss(lp, old, ref, adv, mask, 0.04, 0.2, "dr_grpo", max_completion_tokens=16)
    pad = lambda x: torch.cat([x, torch.zeros(x.size(0), 5, dtype=x.dtype)], 1)  # the same batch, padded further
    b, _ = grpo_loss(pad(lp), pad(old), pad(ref), adv, pad(mask), 0.04, 0.2, "dr_grpo", max_completion_tokens=16)
    assert torch.isclose(a, b, rtol=1e-12)
    # twice the budget halves the loss
    c, _ = grpo_loss(lp, old, ref, adv, mask, 0.04, 0.2, "dr_grpo", max_completion_tokens=32)
    assert torch.isclose(c, a / 2, rtol=1e-12)
    with pytest.raises(ValueError, match="max_completion_tokens"):
        grpo_loss(lp, old, ref, adv, mask, 0.04, 0.2, "dr_grpo")


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
def test_truncated_completions_contribute_nothing_when_masked(loss_type):
    lp, old, ref, entropy, adv, mask, truncated = batch(0, torch.float64)
    kw = dict(max_completion_tokens=9, truncated=truncated, entropy_coef=0.01)
    x = lp.clone().requires_grad_(True)
    loss, _ = grpo_loss(x, old, ref, adv, mask, 0.04, 0.2, loss_type, entropy=entropy, **kw)
    loss.backward()
    assert torch.equal(x.grad[truncated], torch.zeros_like(x.grad[truncated])) and (x.grad[~truncated] != 0).any()
    # whatever the truncated completions hold, the loss is the same
    changed_lp, changed_adv, changed_entropy = lp.clone(), adv.clone(), entropy.clone()
    changed_lp[truncated] -= 3
    changed_adv[truncated] = 10.0
    changed_entropy[truncated] = 100.0
    other, _ = grpo_loss(changed_lp, old, ref, changed_adv, mask, 0.04, 0.2, loss_type, entropy=changed_entropy, **kw)
    assert torch.isclose(loss, other, rtol=1e-12)
    # bnpo's normaliser counts only the kept completions' tokens
    if loss_type == "bnpo":
        kept, _ = grpo_loss(lp[~truncated], old[~truncated], ref[~truncated], adv[~truncated], mask[~truncated], 0.04,
                            0.2, "bnpo", entropy=entropy[~truncated], entropy_coef=0.01)
        assert torch.isclose(loss, kept, rtol=1e-12)


# ---------------------------------------------------------------- the group diversity bonus
def piece(pitches, onsets=None):
    s = symusic.Score(480)
    t = symusic.Track(program=0)
    for k, p in enumerate(pitches):
        t.notes.append(symusic.Note(onsets[k] if onsets else k * 480, 240, p, 80))
    s.tracks.append(t)
    return s


def test_identical_completions_get_the_largest_diversity_penalty():
    same = piece([60, 64, 67, 72])
    bonus = group_diversity_bonus([same] * 4, 4, 0.5)
    assert bonus == pytest.approx([-0.5] * 4, abs=1e-12)  # cosine 1 with each of the 3 others
    # two empty pieces are identical too; an empty piece and a non-empty one share nothing
    assert group_diversity_bonus([piece([])] * 2, 2, 0.5) == pytest.approx([-0.5, -0.5])
    assert group_diversity_bonus([piece([]), same], 2, 0.5) == pytest.approx([0.0, 0.0])


def test_diversity_bonus_matches_the_reference():
    from smart_core.diversity import profile

    group_a = [piece([60, 62, 64]), piece([60, 62, 64]), piece([61, 66], [0, 120]),
               piece([70, 71, 72, 73], [0, 40, 80, 200])]
    group_b = [piece([60]), piece([65, 67]), piece([60, 65, 67], [0, 240, 480]), piece([])]
    midis = group_a + group_b
    bonus = group_diversity_bonus(midis, 4, 0.3)
    vectors = [profile(m).tolist() for m in midis]

    def cosine(u, v):
        nu, nv = math.sqrt(sum(a * a for a in u)), math.sqrt(sum(b * b for b in v))
        if nu == 0 or nv == 0:
            return 1.0 if nu == nv else 0.0
        return sum(a * b for a, b in zip(u, v)) / (nu * nv)

    for i in range(8):
        others = [j for j in range(8) if j // 4 == i // 4 and j != i]
        assert bonus[i] == pytest.approx(-0.3 * sum(cosine(vectors[i], vectors[j]) for j in others) / 3, abs=1e-12)
    assert (bonus <= 0).all() and (bonus >= -0.3).all() and bonus[0] < bonus[2]  # the duplicated pieces pay more
    assert np.allclose(np.diag(profile_similarity(np.stack(vectors))), 1.0)
    with pytest.raises(ValueError, match="groups of 3"):
        group_diversity_bonus(midis, 3, 0.3)


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


def test_the_collapse_options_train_end_to_end(tiny_cfg, tiny_base_model):
    """Every issue-16 option at once through the real trainer: the diversity bonus is logged per
    sample and per step, within [-lambda, 0], and the scorer's reward is left as it was."""
    cfg = tiny_cfg.replace(runs={}, steps=2, checkpoint_every=2, audio_every=1000, loss_type="dr_grpo",
                           scale_rewards="batch", importance_sampling_level="sequence", mask_truncated_completions=True,
                           entropy_coef=0.01, group_diversity_bonus=0.2)
    run = train(cfg, "collapse_options", tiny_base_model, progress=False)
    steps, samples = run.steps(), run.samples()
    assert len(steps) == 2 and np.isfinite(steps["loss"]).all()
    assert samples["diversity_bonus"].between(-0.2, 0.0).all()
    assert np.allclose(steps["diversity_bonus"], samples.groupby("step")["diversity_bonus"].mean())
    # the advantages come from the shaped rewards: centred per group, scaled by the whole step's std
    shaped = samples["reward"] + samples["diversity_bonus"]
    centred = shaped - shaped.groupby([samples["step"], samples.index // cfg.group_size]).transform("mean")
    for _, step in samples.groupby("step"):
        assert np.allclose(step["advantage"], centred[step.index] / (shaped[step.index].std(ddof=1) + 1e-4), atol=1e-5)
