"""GRPO as in the paper (and TRL's GRPOTrainer of spring 2025), written to be read next to it.

For a prompt q, sample G completions o_1..o_G, score them, and normalise within the group:

    A_i = (r_i - mean(r)) / (std(r) + eps)

then, per completion token t (ratio = pi_theta / pi_old, KL the k3 estimator against pi_ref):

    L = -1/G sum_i 1/|o_i| sum_t [ min(ratio * A_i, clip(ratio, 1-eps, 1+eps) * A_i) - beta * KL ]
    KL = exp(ref - logp) - (ref - logp) - 1

With one policy update per batch (num_iterations = 1) pi_old = pi_theta, so ratio = 1 in value
and only its gradient matters; the reference pass is skipped when beta = 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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
from .distributed import SINGLE, World, all_max, all_sum, barrier, device_for, gather_to_main, init, my_groups, world_from_env
from .prompts import generator, group_seed, held_out_ids, training_prompts

MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: the KL estimate stays finite however far the policy drifts


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(r - group mean) / (group std + eps) over consecutive groups of `group_size` (unbiased std).

    A group whose rewards are all equal gets zeros (its std is 0, the numerator is 0)."""
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} values, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centred[:, :1])
        centred = centred / (std + eps)
    return centred.reshape(-1)


def k3(ref_logprobs: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """The k3 estimator of KL(pi_theta || pi_ref) per token, its log-ratio clamped to stay finite."""
    log_ratio = torch.clamp(ref_logprobs - logprobs, -MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, beta: float = 0.04, epsilon: float = 0.2,
              loss_type: str = "grpo", n_sequences: int | None = None, n_tokens: float | None = None,
              padded_length: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate with a k3 KL penalty. All per-token tensors are [B, T]; advantages [B].

    n_sequences, n_tokens, padded_length: the whole step's batch size, token count and padded length
    when this process holds only a share of it (torchrun); None means this batch is the whole step.
    With them, the shares' losses add up to the whole batch's loss for every loss_type."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv
    objective = torch.min(unclipped, clipped)
    if beta != 0.0 and ref_logprobs is None:
        raise ValueError("beta != 0 needs ref_logprobs")
    # the KL is measured whenever the reference is given (with beta = 0 it is logged, not trained on)
    kl = k3(ref_logprobs, logprobs) if ref_logprobs is not None else None
    per_token = -(objective - beta * kl) if beta != 0.0 else -objective

    local_tokens = mask.sum().clamp(min=1)
    batch = n_sequences or mask.size(0)
    if loss_type == "grpo":  # mean over each completion's tokens, then over completions
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / batch
    elif loss_type == "bnpo":  # mean over every completion token of the batch
        loss = (per_token * mask).sum() / (local_tokens if n_tokens is None else max(float(n_tokens), 1.0))
    elif loss_type == "dr_grpo":  # a constant normaliser: batch size x padded length
        loss = (per_token * mask).sum() / (batch * (padded_length or mask.size(1)))
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; use grpo, bnpo or dr_grpo")

    with torch.no_grad():
        is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
        stats = {  # means over this batch's tokens; without a reference no KL is measured: NaN, not a misleading 0
            "kl": float((kl * mask).sum() / local_tokens) if kl is not None else float("nan"),
            "clip_fraction": float((is_clipped.float() * mask).sum() / local_tokens),
            "ratio_mean": float((ratio * mask).sum() / local_tokens),
        }
    return loss, stats


# ------------------------------------------------------------------------------------------------
# Training


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
        advantages = group_advantages(rewards, G, cfg.scale_rewards)

        t0 = time.perf_counter()
        prompt_ids, completions, mask = rollout.prompt_ids, rollout.completions, rollout.mask
        # the whole step's normalisers, so that the processes' losses add up to the one-process loss
        n_tokens = float(all_sum(mask.sum(), world, self.device))
        padded_length = all_max(mask.size(1), world, self.device)
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
                                    n_tokens=n_tokens, padded_length=padded_length)
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
