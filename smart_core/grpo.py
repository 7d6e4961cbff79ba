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

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config
from .runtime import autocast, resolve_device, use_bf16
from .render import RenderPool, RenderSettings, save_wav
from .reward import default_weights, load_scorer
from .rollout import generate_and_score
from .runs import RunDir
from .sampling import token_logprobs
from .tokenizer import make_prompts

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


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, beta: float = 0.04, epsilon: float = 0.2,
              loss_type: str = "grpo") -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate with a k3 KL penalty. All per-token tensors are [B, T]; advantages [B]."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv
    objective = torch.min(unclipped, clipped)
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta != 0 needs ref_logprobs")
        log_ratio = torch.clamp(ref_logprobs - logprobs, -MAX_LOG_RATIO, MAX_LOG_RATIO)
        kl = torch.exp(log_ratio) - log_ratio - 1
        per_token = -(objective - beta * kl)
    else:
        kl = torch.zeros_like(logprobs)
        per_token = -objective

    n_tokens = mask.sum().clamp(min=1)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type == "bnpo":
        loss = (per_token * mask).sum() / n_tokens
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (mask.size(0) * mask.size(1))
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; use grpo, bnpo or dr_grpo")

    with torch.no_grad():
        is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
        stats = {  # with beta = 0 no KL is computed: NaN, not a misleading 0
            "kl": float((kl * mask).sum() / n_tokens) if beta != 0.0 else float("nan"),
            "clip_fraction": float((is_clipped.float() * mask).sum() / n_tokens),
            "ratio_mean": float((ratio * mask).sum() / n_tokens),
        }
    return loss, stats


# ------------------------------------------------------------------------------------------------
# Training


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """Each step draws its prompts and samples from its own seed, so a resumed run repeats exactly
    what an uninterrupted one would do without storing RNG state."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])


def held_out_ids(cfg: Config, dataset_ids=None):
    """Token ids of held-out pieces for "dataset" prompts: the given ones, else the corpus's test
    split (never the training split). None for the procedural kinds."""
    if dataset_ids is not None or cfg.prompt_kind != "dataset":
        return dataset_ids
    from .data import Corpus

    corpus = Corpus(Path(cfg.corpus_dir))
    if not (corpus.root / "tokens-test.npz").exists():
        raise FileNotFoundError(f"dataset prompts need the built corpus in {cfg.corpus_dir} (python -m smart_core data)")
    return [t.tolist() for t in corpus.tokens("test")]


def training_prompts(cfg: Config, step: int, dataset_ids=None):
    dataset_ids = held_out_ids(cfg, dataset_ids)
    rng = np.random.default_rng(step_seed(cfg.seed, step))
    if cfg.prompt_pool:
        pool = make_prompts(cfg.prompt_kind, cfg.prompt_pool, np.random.default_rng(step_seed(cfg.seed, 0, 2)), dataset_ids)
        prompts = [pool[i] for i in rng.integers(0, len(pool), size=cfg.prompts_per_step)]
    else:
        prompts = make_prompts(cfg.prompt_kind, cfg.prompts_per_step, rng, dataset_ids)
    return [p for p in prompts for _ in range(cfg.group_size)]  # consecutive groups of G


def evaluation_prompts(cfg: Config, n: int, dataset_ids=None):
    """An independent stream (not the training prompt list, unlike the authors' code)."""
    dataset_ids = held_out_ids(cfg, dataset_ids)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7_777_777]))
    return make_prompts(cfg.prompt_kind, n, rng, dataset_ids)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def linear_schedule(optimizer, total_updates: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: max(0.0, 1.0 - u / max(1, total_updates)))


class GRPOTrainer:
    """Holds policy, reference, optimizer, renderer pool and scorer for one run."""

    def __init__(self, cfg: Config, run: RunDir, base_model_dir: str | Path, scorer=None, pool: RenderPool | None = None,
                 dataset_ids=None, device: torch.device | None = None):
        from .model import load_pretrained

        self.cfg, self.run, self.dataset_ids = cfg, run, held_out_ids(cfg, dataset_ids)
        self.device = device or resolve_device(cfg.device)
        self.base_model_dir = str(base_model_dir)
        self.scorer = scorer or load_scorer(cfg.reward_backend, cfg.audiobox_checkpoint, self.device,
                                            use_bf16(cfg.precision, self.device))
        self.weights = cfg.reward_weights or default_weights(self.scorer)
        self._own_pool = pool is None
        self.pool = pool or RenderPool(RenderSettings.from_config(cfg), cfg.render_workers)

        torch.manual_seed(cfg.seed)
        self.start_step = 0
        latest = run.latest_checkpoint()
        self.policy = load_pretrained(latest[1] if latest else base_model_dir, self.device)
        self.policy.train()
        self.ref = None
        if cfg.beta != 0.0:
            self.ref = load_pretrained(base_model_dir, self.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.scheduler = linear_schedule(self.optimizer, cfg.steps * cfg.num_iterations)
        if latest:
            state = torch.load(latest[1] / "trainer_state.pt", map_location=self.device, weights_only=False)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_step = state["step"]
        run.truncate_after(self.start_step)

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    # -- one step --------------------------------------------------------------------------------
    def step(self, step: int) -> dict:
        cfg = self.cfg
        prompts = training_prompts(cfg, step, self.dataset_ids)
        rollout = generate_and_score(self.policy, prompts, cfg, self.pool, self.scorer, self.weights,
                                     _generator(self.device, step_seed(cfg.seed, step, 1)),
                                     keep_audio=step % cfg.audio_every == 0)
        rewards = torch.tensor(rollout.reward, dtype=torch.float32, device=self.device)
        advantages = group_advantages(rewards, cfg.group_size, cfg.scale_rewards)

        t0 = time.perf_counter()
        prompt_ids, completions, mask = rollout.prompt_ids, rollout.completions, rollout.mask
        ref_logprobs = old_logprobs = None
        with torch.no_grad(), autocast(self.device, cfg.precision):
            if self.ref is not None:
                ref_logprobs = token_logprobs(self.ref, prompt_ids, completions, cfg.temperature)
            if cfg.num_iterations > 1:  # with one update pi_old == pi_theta: reuse the live pass
                old_logprobs = token_logprobs(self.policy, prompt_ids, completions, cfg.temperature)
        for _ in range(cfg.num_iterations):
            with autocast(self.device, cfg.precision):
                logprobs, entropy = token_logprobs(self.policy, prompt_ids, completions, cfg.temperature,
                                                   with_entropy=True)
            loss, stats = grpo_loss(logprobs.float(), (old_logprobs if old_logprobs is not None else logprobs.detach()).float(),
                                    None if ref_logprobs is None else ref_logprobs.float(), advantages, mask,
                                    cfg.beta, cfg.epsilon, cfg.loss_type)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = dict(rollout.seconds, update=time.perf_counter() - t0)

        groups = rewards.view(-1, cfg.group_size)
        row = {
            "step": step + 1, "loss": float(loss.detach()), "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()), "frac_zero_std_groups": float((groups.std(1) == 0).float().mean()),
            **stats, "entropy": float((entropy.detach() * mask).sum() / mask.sum().clamp(min=1)),
            "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0],
            "completion_length": float(mask.sum(1).mean()), "n_empty": int(rollout.empty.sum()),
            "n_truncated": int(rollout.truncated.sum()), "n_nonfinite": int(rollout.nonfinite.sum()),
            "n_notes_mean": float(rollout.n_notes.mean()),
            **{f"{axis}_mean": float(rollout.scores[axis].mean()) for axis in rollout.scores.columns},
            **{f"seconds_{k}": v for k, v in seconds.items()}, "seconds_total": sum(seconds.values()),
        }
        samples = rollout.table()
        samples.insert(0, "step", step + 1)
        samples["advantage"] = advantages.cpu().numpy()
        self._save_media(step + 1, rollout)
        self.run.log_step(step + 1, row, samples)
        return row

    def _save_media(self, step: int, rollout) -> None:
        midi_dir = self.run.path / "midi" / f"step-{step:06d}"
        midi_dir.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(rollout.midi):
            (midi_dir / f"{i:03d}.mid").write_bytes(data)
        if rollout.audio:
            audio_dir = self.run.path / "audio" / f"step-{step:06d}"
            audio_dir.mkdir(parents=True, exist_ok=True)
            for i, audio in enumerate(rollout.audio):
                save_wav(audio_dir / f"{i:03d}.wav", audio, self.cfg.sample_rate)

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
        cfg = self.cfg
        bar = tqdm(range(self.start_step, cfg.steps), initial=self.start_step, total=cfg.steps,
                   desc=f"GRPO {self.run.path.name}", disable=not progress)
        for step in bar:
            row = self.step(step)
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", kl=f"{row['kl']:.4f}", s=f"{row['seconds_total']:.1f}")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                self.save_checkpoint(step + 1)
            if stop_after_step is not None and step + 1 >= stop_after_step:
                return self.run  # as if killed here (tests)
        (self.run.path / "FINISHED").touch()
        return self.run


def train(cfg: Config, run_name: str, base_model_dir: str | Path | None = None, scorer=None,
          pool: RenderPool | None = None, progress: bool = True, stop_after_step: int | None = None,
          dataset_ids=None) -> RunDir:
    """Run (or resume) one named GRPO run; the CLI and notebook 01 both call this.

    A run folder that holds another config is refused with one line naming the differing keys
    (finished or not); a run marked finished whose final checkpoint is missing is resumed from its
    last complete checkpoint (per-step seeds make that exact), never presented as finished."""
    cfg = cfg.for_run(run_name)
    run = RunDir.for_run(cfg, run_name)
    run.check_config(cfg)
    if run.is_complete(cfg):
        return run
    run.reopen()
    base_model_dir = base_model_dir or cfg.base_model_source
    trainer = GRPOTrainer(cfg, run, base_model_dir, scorer, pool, dataset_ids)
    try:
        from .assets import resolve_base_model
        from .runtime import describe as describe_runtime

        run.write_start(cfg, trainer.scorer.describe(), base_model=str(base_model_dir),
                        base_model_asset=resolve_base_model(str(base_model_dir)).provenance(),
                        reward_weights=trainer.weights, runtime=describe_runtime(trainer.device, cfg.precision))
        return trainer.train(progress, stop_after_step)
    finally:
        trainer.close()
