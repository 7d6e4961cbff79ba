"""GRPO as in the paper (and TRL's GRPOTrainer of spring 2025), written to be read next to it.

For a prompt q, sample G completions o_1..o_G, score them, and normalise within the group:

    A_i = (r_i - mean(r)) / (std(r) + eps)

then, per completion token t (ratio = pi_theta / pi_old, KL the k3 estimator against pi_ref):

    L = -1/G sum_i 1/|o_i| sum_t [ min(ratio * A_i, clip(ratio, 1-eps, 1+eps) * A_i) - beta * KL ]
    KL = exp(ref - logp) - (ref - logp) - 1

With one policy update per batch (num_iterations = 1) pi_old = pi_theta, so ratio = 1 in value
and only its gradient matters; the reference pass is skipped when beta = 0.

The loss is built from named pieces. Each design choice against the collapse (issue 16) is off by
default, so the paper's runs do not change, and sits where TRL 1.16.0 puts it
(trl/trainer/grpo_trainer.py, cited "TRL:<line>"; grpo_config.py, cited "TRL config:<line>"):

    reward       r_i; with group_diversity_bonus = lambda > 0,
                 r_i - lambda * mean_{j != i in the group} cos(profile_i, profile_j)    (ours, not TRL's)
    advantages   group_advantages: r - group mean, divided by the group's std (scale_rewards=group, the
                 paper), by the std of every reward of the step (batch) or by nothing (none)   TRL:2765-2788
    ratio        importance_ratio: per token (the paper), or per sequence (GSPO: the geometric mean of
                 the completion's token ratios, one ratio and so one clip per completion)        TRL:3083-3095
    objective    clipped_objective: min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)           TRL:3112-3120
    KL           k3, added per token with weight beta                                           TRL:3098-3101, 3149-3150
    loss mask    completion tokens; with mask_truncated_completions, none of a completion that
                 has no EOS (in every term, and not counted as loss tokens)                     TRL:2487-2492
    normaliser   normalise: grpo (each completion's token mean, then / completions), bnpo (/ loss
                 tokens), dr_grpo (/ completions x max_completion_tokens, a constant)           TRL:3153-3164
    entropy      loss -= entropy_coef * the loss tokens' mean entropy, whatever the loss_type   TRL:3186-3211
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .config import Config
from .errors import ConfigError, RunMismatch
from .runtime import autocast, resolve_device, use_bf16
from .render import save_wav
from .render_pool import RenderPool, RenderSettings
from .reward import default_weights, load_scorer
from .rollout import generate_and_score
from .runs import RunDir
from .sampling import token_logprobs
from .distributed import SINGLE, World, all_sum, barrier, device_for, gather_to_main, init, my_groups, world_from_env
from .prompts import generator, group_seed, held_out_ids, training_prompts

MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: the KL estimate stays finite however far the policy drifts


SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str | bool = "group", eps: float = 1e-4,
                     batch_std: float | None = None) -> torch.Tensor:
    """r - its group's mean over consecutive groups of `group_size`, then scaled (TRL:2765-2788):

    scale="group": / (the group's std + eps), the paper; "batch": / (the std of every reward of the
    step + eps), the group mean still centring (TRL's "batch"; `batch_std` gives that std when this
    process holds only a share of the step); "none": not scaled (Dr. GRPO). True / False are read
    as group / none, as TRL config:1078 does. Stds are unbiased (TRL's nanstd).
    A group whose rewards are all equal gets zeros (its numerator is 0) under every scaling."""
    if isinstance(scale, bool):
        scale = "group" if scale else "none"
    if scale not in SCALE_REWARDS:
        raise ValueError(f"unknown scale_rewards {scale!r}; use {', '.join(SCALE_REWARDS)}")
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} values, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centred[:, :1])
        centred = centred / (std + eps)
    elif scale == "batch":
        if batch_std is None:
            std = rewards.std() if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype, device=rewards.device)
        else:
            std = torch.as_tensor(batch_std, dtype=rewards.dtype, device=rewards.device)
        centred = centred / (std + eps)
    return centred.reshape(-1)


def profile_similarity(profiles: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of profile vectors [n, d] -> [n, n]. Two empty pieces (zero
    vectors) count as identical (1), an empty and a non-empty one as unrelated (0): a group that
    collapses to silence is as uniform as any other collapsed group."""
    x = np.asarray(profiles, dtype=float)
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    sim = unit @ unit.T
    empty = norms == 0
    sim[np.ix_(empty, empty)] = 1.0
    return sim


def group_diversity_bonus(midis: list, group_size: int, coef: float) -> np.ndarray:
    """-coef * mean_{j != i in i's group} cos(profile_i, profile_j) per sample: the term
    group_diversity_bonus adds to each reward before the group normalisation (ours; TRL has none).

    profile: smart_core.diversity.profile, the pitch-class and onset-position histograms behind the
    pairwise-distance and Vendi-on-profiles metrics, of the sample's MIDI as those metrics see it
    (prompt + completion). Profiles are non-negative, so the term lies in [-coef, 0]: -coef for a
    group of identical pieces (the largest penalty), 0 for pieces with disjoint histograms."""
    from .diversity import profile

    if group_size < 2 or len(midis) % group_size:
        raise ValueError(f"{len(midis)} samples do not split into groups of {group_size} (at least 2)")
    out = np.zeros(len(midis))
    for start in range(0, len(midis), group_size):
        sim = profile_similarity(np.stack([profile(m) for m in midis[start:start + group_size]]))
        out[start:start + group_size] = -coef * (sim.sum(1) - np.diag(sim)) / (group_size - 1)
    return out


def k3(ref_logprobs: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """The k3 estimator of KL(pi_theta || pi_ref) per token, its log-ratio clamped to stay finite."""
    log_ratio = torch.clamp(ref_logprobs - logprobs, -MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.exp(log_ratio) - log_ratio - 1


def importance_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor,
                     level: str = "token") -> torch.Tensor:
    """pi_theta / pi_old (TRL:3083-3095). level="token": one ratio per token, [B, T] (the paper).
    level="sequence" (GSPO): exp of the mean log-ratio over the completion's tokens, i.e. the
    geometric mean of its token ratios, [B, 1]; the gradient flows through every token of it.
    GSPO's own setup is loss_type=grpo: with bnpo or dr_grpo a completion's ratio counts once per
    token (TRL:928-934 warns of it)."""
    log_ratio = logprobs - old_logprobs
    if level == "token":
        return torch.exp(log_ratio)
    if level == "sequence":
        log_ratio = log_ratio.masked_fill(mask == 0, 0.0)  # padding values never matter
        return torch.exp(log_ratio.sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1))
    raise ValueError(f"unknown importance_sampling_level {level!r}; use {', '.join(IMPORTANCE_SAMPLING_LEVELS)}")


def clipped_objective(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float) -> torch.Tensor:
    """min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) (TRL:3112-3120): [B, T], or [B, 1] with
    per-sequence ratios (one clip per completion)."""
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv
    return torch.min(unclipped, clipped)


def _token_count(mask: torch.Tensor, n_tokens: float | None):
    return mask.sum().clamp(min=1) if n_tokens is None else max(float(n_tokens), 1.0)


def normalise(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, n_sequences: int | None = None,
              n_tokens: float | None = None, max_completion_tokens: int | None = None) -> torch.Tensor:
    """The loss from per-token losses ([B, T], or [B, 1] broadcast over the tokens) and the loss mask
    (TRL:3153-3164). grpo: each completion's mean over its loss tokens, summed, / completions (a
    masked-out completion counts 0 in the sum and 1 in the count, as in TRL); bnpo: / loss tokens;
    dr_grpo: / (completions x max_completion_tokens), a constant (Dr. GRPO; TRL:3164). Until issue
    16 our dr_grpo divided by the batch's padded length instead, which varies from step to step."""
    batch = n_sequences or mask.size(0)
    if loss_type == "grpo":  # mean over each completion's tokens, then over completions
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / batch
    if loss_type == "bnpo":  # mean over every loss token of the batch
        return (per_token * mask).sum() / _token_count(mask, n_tokens)
    if loss_type == "dr_grpo":  # a constant normaliser: completions x the completion budget
        if max_completion_tokens is None:
            raise ValueError("loss_type dr_grpo needs max_completion_tokens (its constant normaliser)")
        return (per_token * mask).sum() / (batch * max_completion_tokens)
    raise ValueError(f"unknown loss_type {loss_type!r}; use grpo, bnpo or dr_grpo")


def entropy_bonus(entropy: torch.Tensor, mask: torch.Tensor, n_tokens: float | None = None) -> torch.Tensor:
    """The mean entropy of the loss tokens, whatever the loss_type (TRL:3186-3211; TRL config:291-297:
    "not rescaled to match a loss type's policy normalization, so entropy_coef has the same meaning
    for every loss type"); over the whole step's loss tokens when n_tokens is given."""
    return (entropy * mask).sum() / _token_count(mask, n_tokens)


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, beta: float = 0.04, epsilon: float = 0.2,
              loss_type: str = "grpo", n_sequences: int | None = None, n_tokens: float | None = None,
              max_completion_tokens: int | None = None, importance_sampling_level: str = "token",
              truncated: torch.Tensor | None = None, entropy: torch.Tensor | None = None,
              entropy_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate with a k3 KL penalty. All per-token tensors are [B, T]; advantages [B].

    max_completion_tokens: dr_grpo's constant (the completion budget). importance_sampling_level:
    token | sequence (GSPO). truncated [B] (bool): the completions to leave out of the loss
    (mask_truncated_completions: those without EOS): their tokens weigh 0 in every term and are not
    loss tokens. entropy [B, T] (with gradient) and entropy_coef: loss -= entropy_coef x the loss
    tokens' mean entropy.
    n_sequences, n_tokens: the whole step's completion count and loss-token count when this process
    holds only a share of it (torchrun); None means this batch is the whole step. With them, the
    shares' losses add up to the whole batch's loss for every loss_type.
    The stats are means over all of this batch's completion tokens (truncated ones included)."""
    mask = mask.to(logprobs.dtype)
    # the loss mask (TRL:2487-2492 zeroes the truncated completions' completion_mask)
    loss_mask = mask if truncated is None else mask * (~truncated.to(torch.bool, copy=False)).to(mask.dtype)[:, None]
    ratio = importance_ratio(logprobs, old_logprobs, mask, importance_sampling_level)
    objective = clipped_objective(ratio, advantages, epsilon)
    if beta != 0.0 and ref_logprobs is None:
        raise ValueError("beta != 0 needs ref_logprobs")
    # the KL is measured whenever the reference is given (with beta = 0 it is logged, not trained on)
    kl = k3(ref_logprobs, logprobs) if ref_logprobs is not None else None
    per_token = -(objective - beta * kl) if beta != 0.0 else -objective
    loss = normalise(per_token, loss_mask, loss_type, n_sequences, n_tokens, max_completion_tokens)
    if entropy_coef != 0.0:
        if entropy is None:
            raise ValueError("entropy_coef != 0 needs the per-token entropy")
        loss = loss - entropy_coef * entropy_bonus(entropy, loss_mask, n_tokens)

    with torch.no_grad():
        local_tokens = mask.sum().clamp(min=1)
        adv = advantages[:, None]
        # per-sequence ratios count once per token of their completion
        is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
        stats = {  # means over this batch's tokens; without a reference no KL is measured: NaN, not a misleading 0
            "kl": float((kl * mask).sum() / local_tokens) if kl is not None else float("nan"),
            "clip_fraction": float((is_clipped.float() * mask).sum() / local_tokens),
            "ratio_mean": float((ratio * mask).sum() / local_tokens),
        }
    return loss, stats


# ------------------------------------------------------------------------------------------------
# Training


def step_std(rewards: torch.Tensor, world: World, device: torch.device) -> float:
    """The unbiased std of every reward of the step, all processes' shares together (scale_rewards=batch)."""
    n = float(all_sum(rewards.numel(), world, device))
    mean = all_sum(rewards.double().sum(), world, device) / n
    squares = all_sum(((rewards.double() - mean) ** 2).sum(), world, device)
    return float((squares / max(n - 1, 1.0)).sqrt())


def linear_schedule(optimizer, total_updates: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: max(0.0, 1.0 - u / max(1, total_updates)))


class GRPOTrainer:
    """Holds policy, reference, optimizer, renderer pool and scorer for one run (one process's share
    of it under torchrun: see smart_core.distributed)."""

    def __init__(self, cfg: Config, run: RunDir, base_model_dir: str | Path, scorer=None, pool: RenderPool | None = None,
                 dataset_ids=None, device: torch.device | None = None, world: World = SINGLE):
        from .model import load_pretrained

        self.cfg, self.run, self.world, self.dataset_ids = cfg, run, world, held_out_ids(cfg, dataset_ids)
        self.groups = my_groups(cfg.prompts_per_step, world)  # before any loading: a bad split is one line
        self.device = device or device_for(world, resolve_device(cfg.device))
        self.base_model_dir = str(base_model_dir)
        self.scorer = scorer or load_scorer(cfg.reward_backend, cfg.audiobox_checkpoint, self.device,
                                            use_bf16(cfg.precision, self.device))
        self.weights = cfg.reward_weights or default_weights(self.scorer)
        missing = sorted(set(self.weights) - set(self.scorer.axes))
        if missing:  # before any model loads, not a traceback at step 1
            raise ConfigError(f"reward_weights name {', '.join(missing)}, which the {self.scorer.name} scorer does not "
                              f"produce (its axes: {', '.join(self.scorer.axes)})")
        self._own_pool = pool is None
        # processes on one machine share its cores: each renders with its share of them
        workers = cfg.render_workers or max(1, (os.cpu_count() or 1) // world.local_size)
        self.pool = pool or RenderPool(RenderSettings.from_config(cfg), workers)

        torch.manual_seed(cfg.seed)
        self.start_step = 0
        latest = run.latest_checkpoint()
        self.policy = load_pretrained(latest[1] if latest else base_model_dir, self.device)
        self.policy.train()
        # the module the update runs through: DDP averages gradients across processes
        self.trained = self.policy
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.trained = DistributedDataParallel(self.policy, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.ref = None
        if cfg.beta != 0.0 or cfg.kl_log_every:  # with beta = 0 the reference is only measured against
            self.ref = load_pretrained(base_model_dir, self.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.scheduler = linear_schedule(self.optimizer, cfg.steps * cfg.num_iterations)
        if latest:
            state = torch.load(latest[1] / "trainer_state.pt", map_location=self.device, weights_only=False)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_step = state["step"]
        if world.is_main:
            run.truncate_after(self.start_step)
        barrier(world)

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    # -- one step --------------------------------------------------------------------------------
    def step(self, step: int) -> dict | None:
        """One update. Returns the step's row on process 0 (None on the others)."""
        cfg, world, G = self.cfg, self.world, self.cfg.group_size
        every = training_prompts(cfg, step, self.dataset_ids)
        prompts = every[self.groups.start * G:self.groups.stop * G]
        # one generator per prompt group, seeded by (seed, step, group): the same completions whichever
        # process samples the group
        generators = [generator(self.device, group_seed(cfg.seed, step, g)) for g in self.groups]
        rollout = generate_and_score(self.policy, prompts, cfg, self.pool, self.scorer, self.weights, generators,
                                     keep_audio=step % cfg.audio_every == 0)
        rewards = torch.tensor(rollout.reward, dtype=torch.float32, device=self.device)
        bonus = None
        if cfg.group_diversity_bonus:  # the shaped reward feeds the advantages; `reward` stays the scorer's
            bonus = group_diversity_bonus(rollout.midi, G, cfg.group_diversity_bonus)
            rewards = rewards + torch.tensor(bonus, dtype=torch.float32, device=self.device)
        batch_std = step_std(rewards, world, self.device) if cfg.scale_rewards == "batch" else None
        advantages = group_advantages(rewards, G, cfg.scale_rewards, batch_std=batch_std)

        t0 = time.perf_counter()
        prompt_ids, completions, mask = rollout.prompt_ids, rollout.completions, rollout.mask
        # the whole step's normalisers, so that the processes' losses add up to the one-process loss
        n_tokens = float(all_sum(mask.sum(), world, self.device))
        truncated = None
        n_loss_tokens = n_tokens  # the loss's tokens: without the truncated completions' when they are masked
        if cfg.mask_truncated_completions:
            truncated = torch.as_tensor(rollout.truncated, dtype=torch.bool, device=self.device)
            n_loss_tokens = float(all_sum((mask.sum(1) * ~truncated).sum(), world, self.device))
        ref_logprobs = old_logprobs = None
        # the KL is in the loss when beta != 0; with beta = 0 it is measured every kl_log_every steps
        # (the run where drift matters most), without gradient
        measure_kl = cfg.beta != 0.0 or (cfg.kl_log_every and step % cfg.kl_log_every == 0)
        with torch.no_grad(), autocast(self.device, cfg.precision):
            if self.ref is not None and measure_kl:
                ref_logprobs = token_logprobs(self.ref, prompt_ids, completions, cfg.temperature)
            if cfg.num_iterations > 1:  # with one update pi_old == pi_theta: reuse the live pass
                old_logprobs = token_logprobs(self.policy, prompt_ids, completions, cfg.temperature)
        for _ in range(cfg.num_iterations):
            with autocast(self.device, cfg.precision):
                logprobs, entropy = token_logprobs(self.trained, prompt_ids, completions, cfg.temperature,
                                                   with_entropy=True)
            loss, stats = grpo_loss(logprobs.float(), (old_logprobs if old_logprobs is not None else logprobs.detach()).float(),
                                    None if ref_logprobs is None else ref_logprobs.float(), advantages, mask,
                                    cfg.beta, cfg.epsilon, cfg.loss_type, n_sequences=cfg.completions_per_step,
                                    n_tokens=n_loss_tokens, max_completion_tokens=cfg.max_completion_tokens,
                                    importance_sampling_level=cfg.importance_sampling_level, truncated=truncated,
                                    entropy=entropy.float() if cfg.entropy_coef else None,
                                    entropy_coef=cfg.entropy_coef)
            self.optimizer.zero_grad(set_to_none=True)
            (loss * world.size).backward()  # DDP divides the summed gradients by the world size
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = dict(rollout.seconds, update=time.perf_counter() - t0)

        # token-weighted statistics of the whole step
        local_tokens = mask.sum().clamp(min=1)
        totals = all_sum(torch.stack([loss.detach().double(), *(torch.as_tensor(stats[k], dtype=torch.float64) * local_tokens
                                                                  for k in ("kl", "clip_fraction", "ratio_mean")),
                                      (entropy.detach() * mask).sum().double()]).to(self.device), world, self.device)
        samples = rollout.table()
        samples.insert(0, "step", step + 1)
        samples.insert(1, "rank", world.rank)
        samples["advantage"] = advantages.cpu().numpy()
        if bonus is not None:
            samples["diversity_bonus"] = bonus
        gathered = gather_to_main((samples, rollout.midi, rollout.audio, seconds), world)
        if gathered is None:
            return None
        samples = pd.concat([g[0] for g in gathered], ignore_index=True)
        seconds = {k: max(g[3][k] for g in gathered) for k in seconds}  # the step waits for the slowest process
        reward = samples["reward"].to_numpy()
        row = {
            "step": step + 1, "loss": float(totals[0]), "reward_mean": float(reward.mean()),
            "reward_std": float(reward.std(ddof=1)) if len(reward) > 1 else 0.0,
            "frac_zero_std_groups": float((reward.reshape(-1, G).std(1) == 0).mean()),
            "kl": float(totals[1] / n_tokens) if ref_logprobs is not None else float("nan"),
            "clip_fraction": float(totals[2] / n_tokens), "ratio_mean": float(totals[3] / n_tokens),
            "entropy": float(totals[4] / max(n_tokens, 1.0)),
            "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0],
            "completion_length": float(samples["completion_length"].mean()), "n_empty": int(samples["empty"].sum()),
            "n_truncated": int(samples["truncated"].sum()), "n_nonfinite": int(samples["nonfinite_score"].sum()),
            "n_notes_mean": float(samples["n_notes"].mean()),
            **{f"{axis}_mean": float(samples[axis].mean()) for axis in rollout.scores.columns},
            # the mean term group_diversity_bonus added to the rewards (only when it is on)
            **({"diversity_bonus": float(samples["diversity_bonus"].mean())} if bonus is not None else {}),
            **{f"seconds_{k}": v for k, v in seconds.items()}, "seconds_total": sum(seconds.values()),
        }
        self._save_media(step + 1, [m for g in gathered for m in g[1]], [a for g in gathered for a in g[2]])
        self.run.log_step(step + 1, row, samples)
        return row

    def _save_media(self, step: int, midi: list[bytes], audio: list) -> None:
        midi_dir = self.run.path / "midi" / f"step-{step:06d}"
        midi_dir.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(midi):
            (midi_dir / f"{i:03d}.mid").write_bytes(data)
        if audio:
            audio_dir = self.run.path / "audio" / f"step-{step:06d}"
            audio_dir.mkdir(parents=True, exist_ok=True)
            for i, clip in enumerate(audio):
                save_wav(audio_dir / f"{i:03d}.wav", clip, self.cfg.sample_rate)

    def save_checkpoint(self, step: int) -> None:
        target = self.run.checkpoint_dir(step)
        tmp = target.with_name(target.name + ".tmp")
        self.policy.save_pretrained(tmp)
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "step": step},
                   tmp / "trainer_state.pt")
        if target.exists():
            import shutil

            shutil.rmtree(target)
        tmp.rename(target)  # a checkpoint exists completely or not at all

    def train(self, progress: bool = True, stop_after_step: int | None = None) -> RunDir:
        cfg, world = self.cfg, self.world
        bar = tqdm(range(self.start_step, cfg.steps), initial=self.start_step, total=cfg.steps,
                   desc=f"GRPO {self.run.path.name}", disable=not (progress and world.is_main))
        for step in bar:
            row = self.step(step)
            if row is not None:
                bar.set_postfix(reward=f"{row['reward_mean']:.3f}", kl=f"{row['kl']:.4f}", s=f"{row['seconds_total']:.1f}")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                if world.is_main:
                    self.save_checkpoint(step + 1)
                barrier(world)  # every process resumes from the same checkpoint
            if stop_after_step is not None and step + 1 >= stop_after_step:
                return self.run  # as if killed here (tests)
        if world.is_main:
            (self.run.path / "FINISHED").touch()
        barrier(world)
        return self.run


def check_reward(run: RunDir, reward: dict) -> None:
    """A run resumes only with the scorer it started with (`auto` may resolve differently once
    Audiobox's weights appear in the cache): one line naming both, not a reward that changes mid-run."""
    if not (run.path / "meta.json").exists() or run.steps().empty:
        return
    started = run.meta.get("reward", {})
    then = (started.get("backend"), started.get("asset", {}).get("sha256"))
    now = (reward.get("backend"), reward.get("asset", {}).get("sha256"))
    if then != now:
        raise RunMismatch(f"run {run.path} started with the {then[0]} reward (weights {then[1]}) and would resume with "
                          f"{now[0]} (weights {now[1]}); set reward_backend={then[0]} or use another run name")


def train(cfg: Config, run_name: str, base_model_dir: str | Path | None = None, scorer=None,
          pool: RenderPool | None = None, progress: bool = True, stop_after_step: int | None = None,
          dataset_ids=None, world: World | None = None) -> RunDir:
    """Run (or resume) one named GRPO run; the CLI and notebook 01 both call this. Under torchrun
    (WORLD_SIZE > 1) every process calls it and trains its share (smart_core.distributed).

    A run folder that holds another config is refused with one line naming the differing keys
    (finished or not); a run marked finished whose final checkpoint is missing is resumed from its
    last complete checkpoint (per-step seeds make that exact), never presented as finished."""
    world = world or world_from_env()
    cfg = cfg.for_run(run_name)
    run = RunDir.for_run(cfg, run_name)
    device = device_for(world, resolve_device(cfg.device))
    init(world, device)
    if world.is_main:
        run.check_config(cfg)
    barrier(world)
    if run.is_complete(cfg):
        return run
    barrier(world)  # every process has looked before process 0 drops a stale FINISHED mark
    if world.is_main:
        run.reopen()
    base_model_dir = base_model_dir or cfg.base_model_source
    trainer = GRPOTrainer(cfg, run, base_model_dir, scorer, pool, dataset_ids, device, world)
    try:
        check_reward(run, trainer.scorer.describe())
        if world.is_main:
            from .assets import resolve_base_model
            from .runtime import describe as describe_runtime

            run.write_start(cfg, trainer.scorer.describe(), base_model=str(base_model_dir),
                            base_model_asset=resolve_base_model(str(base_model_dir)).provenance(),
                            reward_weights=trainer.weights, world_size=world.size,
                            runtime=describe_runtime(trainer.device, cfg.precision))
        barrier(world)
        return trainer.train(progress, stop_after_step)
    finally:
        trainer.close()
