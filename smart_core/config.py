"""One config dataclass with named profiles.

`tiny` exercises every real code path in seconds (tests), `small` is the offline CPU default of
`make reproduce`, `paper` holds the paper's settings (PAPER_FACTS.md) and is meant for a GPU.
A run stores its resolved config as `config.json`; `Config.from_profile(name, **overrides)` is the
only way notebooks and the command line build one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROFILES = ("tiny", "small", "paper")


@dataclass
class Config:
    profile: str = "small"
    seed: int = 0
    runs_dir: str = "runs"

    # --- corpus -------------------------------------------------------------------------------
    # "music21" (offline default) or a folder of MIDI files (MAESTRO, the MetaMIDI piano subset ...)
    corpus_source: str = "music21"
    corpus_dir: str = "data/corpus"
    corpus_max_pieces: int | None = None  # cap on the number of source pieces (tiny profile)
    val_fraction: float = 0.05
    test_fraction: float = 0.05

    # --- base model -----------------------------------------------------------------------------
    # Empty: train our own on the corpus. Otherwise a Hub id (lucacasini/metamidipianophi3_4L) or a
    # local directory in save_pretrained layout.
    base_model: str = ""
    n_layer: int = 4
    hidden_size: int = 256
    intermediate_size: int = 1024
    n_head: int = 4
    max_positions: int = 2048
    crop_tokens: int = 256
    pretrain_steps: int = 1500
    pretrain_batch: int = 16
    pretrain_lr: float = 5e-4
    pretrain_min_lr: float = 5e-6
    pretrain_warmup: int = 100
    pretrain_weight_decay: float = 0.01
    pretrain_eval_every: int = 100
    pretrain_eval_batches: int = 8
    pretrain_patience: int = 5  # evaluations without improvement before early stopping

    # --- rendering ------------------------------------------------------------------------------
    soundfont: str = "fluidr3_gm"  # a registry name (smart_core.render.SOUNDFONTS) or a path
    renderer: str = "fluidsynth"   # fluidsynth | tinysoundfont (the authors'; see bench/run_all.py)
    sample_rate: int = 48_000
    max_seconds: float = 10.0
    max_beats: int = 100
    render_workers: int = 0  # 0: all cores

    # --- reward ---------------------------------------------------------------------------------
    reward_backend: str = "auto"  # auto | audiobox | standin
    audiobox_checkpoint: str = ""  # local checkpoint.pt; also $SMART_AUDIOBOX_CKPT
    # Scalar reward = sum(weight * axis). None: the backend's primary axis / 10 (paper: CE / 10).
    reward_weights: dict[str, float] | None = None
    # Reward given to clips whose scorer output is NaN/inf, or that have no notes at all.
    fallback_reward: float = 0.0

    # --- GRPO -----------------------------------------------------------------------------------
    steps: int = 200
    prompts_per_step: int = 4
    group_size: int = 8
    lr: float = 1e-4
    beta: float = 0.04
    epsilon: float = 0.2
    temperature: float = 1.0
    max_completion_tokens: int = 256
    num_iterations: int = 1
    loss_type: str = "grpo"  # grpo | bnpo | dr_grpo
    scale_rewards: bool = True
    grad_clip: float = 1.0
    checkpoint_every: int = 20
    audio_every: int = 20
    prompt_kind: str = "procedural"  # procedural | procedural+note | dataset
    # 0: fresh random prompts every step (the paper). N > 0: every step draws from one fixed set of
    # N prompts, which removes between-prompt noise from short runs (the learning test uses 1).
    prompt_pool: int = 0

    # --- evaluation and analysis ----------------------------------------------------------------
    eval_prompts: int = 1000
    diversity_samples: int = 64  # per checkpoint, for the diversity-along-training curves
    listening_prompts: int = 15
    listening_max_attempts: int = 20  # regenerations per stimulus until the paper's filters hold
    power_simulations: int = 200      # simulated studies per point of the power curve
    compare_soundfonts: bool = True   # the SoundFont table renders with every installed font

    # The paper's three runs, as overrides of the fields above. Profiles scale them.
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_profile(cls, profile: str = "small", **overrides: Any) -> "Config":
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
        cfg = cls(profile=profile, **_PROFILE_VALUES[profile])
        return cfg.replace(**overrides)

    def replace(self, **overrides: Any) -> "Config":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def for_run(self, run_name: str) -> "Config":
        """The config of one of the named runs (e.g. 'smart', 'long', 'long_beta0')."""
        if run_name not in self.runs:
            return self
        return self.replace(**self.runs[run_name])

    def with_cli_overrides(self, pairs: list[str]) -> "Config":
        """Apply `key=value` strings (values parsed as JSON when possible, else kept as text)."""
        overrides = {}
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"override {pair!r} is not of the form key=value")
            key, raw = pair.split("=", 1)
            try:
                overrides[key] = json.loads(raw)
            except json.JSONDecodeError:
                overrides[key] = raw
        return self.replace(**overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        return cls(**json.loads(Path(path).read_text()))

    # Derived paths -------------------------------------------------------------------------------
    @property
    def profile_dir(self) -> Path:
        return Path(self.runs_dir) / self.profile

    @property
    def base_model_dir(self) -> Path:
        return self.profile_dir / "base_model"

    @property
    def base_model_source(self) -> str:
        """Where GRPO starts from: the configured Hub id or folder, else our own pre-trained model."""
        return self.base_model or str(self.base_model_dir)

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.group_size


# The paper's runs: 200 steps beta 0.04 (the tuned model), and the two over-optimisation runs.
PAPER_RUNS = {
    "smart": {"steps": 200, "beta": 0.04},
    "long": {"steps": 1000, "beta": 0.04},
    "long_beta0": {"steps": 1000, "beta": 0.0},
}

_PROFILE_VALUES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        corpus_dir="data/corpus_tiny",
        corpus_max_pieces=24,
        val_fraction=0.15,
        test_fraction=0.15,
        n_layer=2,
        hidden_size=64,
        intermediate_size=128,
        n_head=2,
        max_positions=512,
        crop_tokens=128,
        pretrain_steps=60,
        pretrain_batch=8,
        pretrain_lr=3e-3,
        pretrain_warmup=5,
        pretrain_eval_every=20,
        pretrain_eval_batches=2,
        soundfont="timgm6mb",
        max_seconds=4.0,
        max_beats=16,
        render_workers=2,
        steps=4,
        prompts_per_step=2,
        group_size=4,
        lr=1e-3,
        max_completion_tokens=48,
        checkpoint_every=2,
        audio_every=2,
        eval_prompts=8,
        diversity_samples=8,
        listening_prompts=2,
        listening_max_attempts=2,
        power_simulations=10,
        compare_soundfonts=False,
        runs={
            "smart": {"steps": 4, "beta": 0.04},
            "long": {"steps": 6, "beta": 0.04},
            "long_beta0": {"steps": 6, "beta": 0.0},
        },
    ),
    "small": dict(
        corpus_dir="data/corpus",
        n_layer=4,
        hidden_size=192,
        intermediate_size=768,
        n_head=4,
        crop_tokens=256,
        pretrain_steps=600,
        pretrain_batch=16,
        pretrain_lr=1e-3,
        pretrain_warmup=50,
        pretrain_eval_every=100,
        soundfont="fluidr3_gm",
        steps=40,
        prompts_per_step=2,
        group_size=8,
        lr=3e-4,
        max_completion_tokens=128,
        checkpoint_every=10,
        audio_every=20,
        eval_prompts=96,
        diversity_samples=24,
        listening_prompts=15,
        listening_max_attempts=8,
        power_simulations=100,
        runs={
            "smart": {"steps": 40, "beta": 0.04},
            "long": {"steps": 100, "beta": 0.04},
            "long_beta0": {"steps": 100, "beta": 0.0},
        },
    ),
    "paper": dict(
        corpus_dir="data/corpus",
        base_model="lucacasini/metamidipianophi3_4L",
        n_layer=4,
        hidden_size=512,
        intermediate_size=2048,
        n_head=8,
        crop_tokens=500,
        pretrain_steps=100_000,
        pretrain_batch=32,
        pretrain_lr=5e-4,
        pretrain_warmup=500,
        pretrain_eval_every=1000,
        pretrain_eval_batches=32,
        pretrain_patience=10,
        soundfont="fluidr3_gm",
        reward_backend="audiobox",
        steps=200,
        prompts_per_step=4,
        group_size=8,
        lr=1e-4,
        beta=0.04,
        max_completion_tokens=256,
        checkpoint_every=20,
        audio_every=20,
        eval_prompts=1000,
        diversity_samples=128,
        listening_prompts=15,
        runs=dict(PAPER_RUNS),
    ),
}
