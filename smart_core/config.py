"""One config dataclass with named profiles.

The dataclass defaults are the paper's settings (the `paper` profile, meant for a GPU); `tiny`
(every real code path in seconds: the tests) and `small` (the offline CPU default of `make
reproduce`) are diffs of them.
A run stores its resolved config as `config.json`; `Config.from_profile(name, **overrides)` is the
only way notebooks and the command line build one.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

PROFILES = ("tiny", "small", "paper")


@dataclass
class Config:
    """Every setting of a run. The defaults are the paper's settings (its text and the authors' public
    code); the `tiny` and `small` profiles are diffs of them (_PROFILE_DIFFS below)."""

    profile: str = "paper"             # which named profile this config came from (tiny | small | paper)
    seed: int = 0                      # the one seed: prompts, sampling, initialisation, splits all derive from it
    runs_dir: str = "runs"             # where run folders go: <runs_dir>/<profile>/<run>/
    device: str = "auto"               # auto (CUDA when present) | cpu | cuda | cuda:N  (smart_core.runtime)
    precision: str = "auto"            # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16

    # --- corpus -------------------------------------------------------------------------------
    corpus_source: str = "music21"     # "music21" (offline) or a folder of MIDI files (MAESTRO, MetaMIDI piano ...)
    corpus_dir: str = "data/corpus"    # the built corpus: splits, tokens, summary, skipped files
    music21_cache_dir: str = "data/music21_midi"  # music21 pieces as MIDI, converted once and reused by every corpus
    corpus_max_pieces: int | None = None  # cap on the number of source pieces (None: all)
    val_fraction: float = 0.05         # share of pieces held out for validation (split by piece)
    test_fraction: float = 0.05        # share of pieces held out for testing and dataset prompts

    # --- base model -----------------------------------------------------------------------------
    base_model: str = "lucacasini/metamidipianophi3_4L"  # Hub id or save_pretrained folder; "": train our own
    n_layer: int = 4                   # transformer layers of a model trained here
    hidden_size: int = 512             # model width
    intermediate_size: int = 2048      # MLP width
    n_head: int = 8                    # attention heads
    max_positions: int = 2048          # longest sequence the model accepts
    crop_tokens: int = 500             # pre-training crop length (tokens, BOS/EOS included)
    pretrain_steps: int = 100_000      # upper bound; early stopping usually ends sooner
    pretrain_batch: int = 32           # crops per pre-training step
    pretrain_lr: float = 5e-4          # peak learning rate (cosine schedule)
    pretrain_min_lr: float = 5e-6      # learning rate at the end of the cosine
    pretrain_warmup: int = 500         # linear warm-up steps
    pretrain_weight_decay: float = 0.01  # AdamW weight decay on matrices (not on norms and biases)
    pretrain_eval_every: int = 1000    # steps between validation evaluations
    pretrain_eval_batches: int = 32    # validation batches per evaluation
    pretrain_patience: int = 10        # evaluations without improvement before early stopping

    # --- rendering ------------------------------------------------------------------------------
    soundfont: str = "fluidr3_gm"      # a registry name (smart_core.soundfonts.SOUNDFONTS) or a .sf2/.sf3 path
    renderer: str = "fluidsynth"       # fluidsynth | tinysoundfont (the authors'; see bench/run_all.py)
    sample_rate: int = 48_000          # Hz of the rendered audio
    max_seconds: float = 10.0          # clip length cap (the reward model's window)
    max_beats: int = 100               # MIDI cropped to this many beats before rendering
    render_workers: int = 0            # render processes (0: all cores); changes speed, never results

    # --- reward ---------------------------------------------------------------------------------
    reward_backend: str = "audiobox"   # auto (Audiobox when its weights resolve offline, else the stand-in) | audiobox | standin
    # Audiobox weights: a checkpoint.pt or a from_pretrained folder (config.json + model.safetensors);
    # also $SMART_AUDIOBOX_CKPT; else the Hugging Face cache, else the Hub (smart_core.assets)
    audiobox_checkpoint: str = ""
    # Scalar reward = sum(weight * axis). None: the backend's primary axis / 10 (paper: CE / 10).
    reward_weights: dict[str, float] | None = None
    # Reward given to clips whose scorer output is NaN or infinite (counted per step as n_nonfinite).
    # A clip with no notes is rendered as 1 s of silence and scored like any other clip.
    fallback_reward: float = 0.0

    # --- GRPO -----------------------------------------------------------------------------------
    steps: int = 200                   # policy updates (a named run's preset may change it)
    prompts_per_step: int = 4          # prompt groups per step
    group_size: int = 8                # completions per prompt (G): advantages are normalised within a group
    lr: float = 1e-4                   # AdamW learning rate, decayed linearly to 0, no warm-up
    beta: float = 0.04                 # weight of the k3 KL penalty to the frozen reference (0: no reference pass)
    epsilon: float = 0.2               # clip range of the importance ratio
    temperature: float = 1.0           # sampling temperature (no top-k, no top-p)
    max_completion_tokens: int = 256   # completion budget; a completion without EOS is truncated
    num_iterations: int = 1            # policy updates per batch of completions (1: ratio = 1 in value)
    # grpo (per-sequence mean) | bnpo (per-token mean) | dr_grpo (sum / (completions x max_completion_tokens),
    # a constant as in Dr. GRPO and TRL; before issue 16 it divided by the batch's padded length)
    loss_type: str = "grpo"
    scale_rewards: str = "group"       # advantages / the group's std (group, the paper) | the step's std (batch) | none
    importance_sampling_level: str = "token"  # ratio per token (the paper) | sequence (GSPO: geometric mean, one clip)
    mask_truncated_completions: bool = False  # completions without EOS get no loss weight and are not loss tokens
    entropy_coef: float = 0.0          # loss -= entropy_coef x the loss tokens' mean entropy (0: no bonus)
    # lambda of the group diversity bonus: reward - lambda x mean cosine similarity of a sample's
    # profile (smart_core.diversity.profile) to its group's others, before the advantages (0: off)
    group_diversity_bonus: float = 0.0
    grad_clip: float = 1.0             # max gradient norm
    kl_log_every: int = 1              # with beta = 0: steps between KL-to-reference measurements (no gradient; 0: never)
    checkpoint_every: int = 20         # steps between checkpoints (the last step always gets one)
    audio_every: int = 20              # steps between saved WAVs of the training samples
    prompt_kind: str = "procedural"    # procedural | procedural+note | dataset
    # 0: fresh random prompts every step (the paper). N > 0: every step draws from one fixed set of
    # N prompts, which removes between-prompt noise from short runs (the learning test uses 1).
    prompt_pool: int = 0

    # --- evaluation and analysis ----------------------------------------------------------------
    eval_prompts: int = 1000           # evaluation prompts, one completion each (an independent prompt stream)
    eval_batch: int = 64               # completions sampled, rendered and scored together in evaluation
    unconditional_samples: int = 32    # base-model samples from [BOS] alone (notebook 00)
    soundfont_pieces: int = 10         # corpus pieces in the SoundFont table (the paper's: 10, 100 beats, 10 s)
    diversity_samples: int = 128       # samples per checkpoint for the diversity-along-training curves
    diversity_bootstrap: int = 200     # bootstrap resamples (of samples, within prompts) for the diversity intervals
    # Training seeds of the `smart` run and its base-model evaluation: seed, seed + 1, ... (the paper
    # trained one). Replicate k > 0 is the run `smart_seed<seed + k>`; claims and curves pool over them.
    replicates: int = 1
    listening_prompts: int = 15        # prompts of the listening study (x 2 systems)
    listening_max_attempts: int = 20   # regenerations per stimulus until the paper's filters hold
    power_simulations: int = 200       # simulated studies per point of the power curve
    compare_soundfonts: bool = True    # the SoundFont table renders with every installed font

    # --- beyond the paper (notebook 05, `make beyond`) -------------------------------------------
    # Best-of-N from the base model: N = 1, 2, 4, ... up to best_of_n_max completions per prompt,
    # the highest-reward one kept (a nested draw: the first N of best_of_n_max samples)
    best_of_n_max: int = 16
    best_of_n_prompts: int = 0         # evaluation prompts for best-of-N (0: eval_prompts, the tuned runs' own)
    # Reward transfer: the base and tuned evaluation outputs re-rendered with every installed SoundFont
    # other than the training one and scored again; cross_score_limit caps the outputs per evaluation
    # set scored by the other scorer (Audiobox costs about 1 s per clip on a CPU; 0: no cross-scoring)
    cross_score_limit: int = 96
    # the reward transfer's fonts: comma-separated registry names or .sf2/.sf3 paths ("": every installed
    # registry font other than the training one)
    transfer_soundfonts: str = ""
    # The design choices against the collapse: each variant is the `long` run with these changes (the
    # variant's keys are its identity: setting one of them for the whole pipeline is refused, set
    # `ablations` instead); run folders ablation_<variant>
    ablations: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(ABLATIONS))
    ablation_steps: int = 0            # steps of each ablation run (0: the `long` run's, so `long` is the baseline)

    # The paper's three runs, as presets over the fields above (a key the user sets wins).
    runs: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(PAPER_RUNS))

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_profile(cls, profile: str = "small", **overrides: Any) -> "Config":
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        cfg = cls(profile=profile, **_PROFILE_DIFFS[profile])
        return cfg.replace(**overrides)

    def replace(self, **overrides: Any) -> "Config":
        """A copy with `overrides` applied, type-checked and range-checked. The keys are remembered
        as the user's: a named run's preset never overrides them (`for_run`)."""
        return self._replaced(overrides, self.user_keys | frozenset(overrides))

    def _replaced(self, overrides: dict[str, Any], user_keys: frozenset[str] | None = None) -> "Config":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        checked = {key: _check_type(key, value) for key, value in overrides.items()}
        new = dataclasses.replace(self, **checked)
        # the user's keys before validating: some checks depend on which keys the user set
        object.__setattr__(new, "_user_keys", self.user_keys if user_keys is None else user_keys)
        new.validate()
        return new

    @property
    def user_keys(self) -> frozenset[str]:
        """Keys set by the user (overrides, CLI, notebook parameters), not by the profile."""
        return getattr(self, "_user_keys", frozenset())

    def for_run(self, run_name: str) -> "Config":
        """The config of one of the named runs (e.g. 'smart', 'long', 'long_beta0'): the profile's
        preset for that run, except for keys the user set, which always win. A replicate
        ('smart_seed1') is its run's config with its own seed (its identity, so it wins too). An
        ablation ('ablation_gspo') is the `long` run with its variant's changes (and ablation_steps)."""
        replicate = REPLICATE_RE.fullmatch(run_name)
        if replicate and replicate.group(1) in self.runs:
            return self.for_run(replicate.group(1))._replaced({"seed": int(replicate.group(2))})
        if run_name.startswith(ABLATION_PREFIX) and run_name[len(ABLATION_PREFIX):] in self.ablations:
            variant = self.ablations[run_name[len(ABLATION_PREFIX):]]
            clash = sorted(set(variant) & self.user_keys)
            if clash:
                raise ConfigError(f"ablation {run_name!r} is defined by {', '.join(f'{k}={variant[k]!r}' for k in clash)}, "
                                  f"which you also set for every run; leave {', '.join(clash)} out or change the variant "
                                  f"through ablations={{...}}")
            long = self.for_run(ABLATION_BASE_RUN)
            steps = self._ablation_steps()
            return long._replaced({**({"steps": steps} if steps else {}), **variant})
        if run_name not in self.runs:
            return self
        preset = {k: v for k, v in self.runs[run_name].items() if k not in self.user_keys}
        return self._replaced(preset)

    def replicate_runs(self) -> list[str]:
        """The replicated run and its replicates, by seed: smart, smart_seed<seed+1>, ... (`replicates` in all)."""
        return [REPLICATED_RUN] + [f"{REPLICATED_RUN}_seed{self.seed + k}" for k in range(1, self.replicates)]

    def all_runs(self) -> list[str]:
        """Every run a pipeline trains, in order: the named runs, each replicate right after its run."""
        return [r for name in self.runs for r in (self.replicate_runs() if name == REPLICATED_RUN else [name])]

    def ablation_runs(self) -> list[str]:
        """The ablation runs of `make beyond`, one per variant (ablation_<variant>), in the table's
        order; the unchanged `paper` variant only when it is the baseline (not `long` itself)."""
        return [ABLATION_PREFIX + name for name in self.ablations
                if name != ABLATION_PAPER or self.ablation_baseline() != ABLATION_BASE_RUN]

    def ablation_baseline(self) -> str:
        """The run the variants are compared with: the paper's GRPO at the variants' step count, i.e.
        `long` itself (ablation_steps 0 or equal to long's steps), else the `paper` variant (no changes)."""
        steps = self._ablation_steps()
        if not steps or steps == self._base_run_steps():
            return ABLATION_BASE_RUN
        return ABLATION_PREFIX + ABLATION_PAPER

    def _base_run_steps(self) -> int:
        """The `long` run's steps, as for_run resolves them (a user's `steps` wins over the preset)."""
        if "steps" in self.user_keys:
            return self.steps
        return self.runs.get(ABLATION_BASE_RUN, {}).get("steps", self.steps)

    def _ablation_steps(self) -> int:
        """The ablation runs' steps (0: long's). A user's `steps` is for every run, the ablations
        included, unless the user also set ablation_steps."""
        if "steps" in self.user_keys and "ablation_steps" not in self.user_keys:
            return self.steps
        return self.ablation_steps

    def with_cli_overrides(self, pairs: list[str]) -> "Config":
        """Apply `key=value` strings. Text fields take the text as it is; other fields parse it as
        JSON (numbers, true/false, null, objects) and must then have the field's type."""
        overrides = {}
        for pair in pairs:
            if "=" not in pair:
                raise ConfigError(f"override {pair!r} is not of the form key=value")
            key, raw = pair.split("=", 1)
            if _FIELD_TYPES.get(key) == "str":
                overrides[key] = raw
                continue
            try:
                overrides[key] = json.loads(raw)
            except json.JSONDecodeError:
                overrides[key] = raw  # the type check names the key and what it expects
        return self.replace(**overrides)

    def validate(self) -> None:
        """Ranges and choices: one clear line before any work starts, not a traceback after."""
        for key, (ok, expected) in _RANGES.items():
            value = getattr(self, key)
            if value is not None and not ok(value):
                raise ConfigError(f"{key}={value!r}: must be {expected}")
        for key, choices in CHOICES.items():
            if getattr(self, key) not in choices:
                raise ConfigError(f"{key}={getattr(self, key)!r}: use one of {', '.join(choices)}")
        from .runtime import DEVICE_RE

        if not DEVICE_RE.fullmatch(self.device):
            raise ConfigError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        known = {f.name for f in fields(self)}
        for kind, presets in (("run", self.runs), ("ablation", self.ablations)):
            for name, preset in presets.items():
                if not isinstance(preset, dict):
                    raise ConfigError(f"{kind} {name!r}: its preset must be a JSON object of config keys")
                bad = sorted(set(preset) - known) + sorted(set(preset) & {"runs", "ablations", "ablation_steps", "profile"})
                if bad:
                    raise ConfigError(f"{kind} {name!r} presets unknown or not allowed key(s) {', '.join(bad)}")
        steps = self._ablation_steps()
        if steps and steps != self._base_run_steps() and ABLATION_PAPER not in self.ablations:
            raise ConfigError(f"ablation runs of {steps} steps differ from the long run's {self._base_run_steps()}, so the "
                              f"variants need the unchanged baseline: keep the {ABLATION_PAPER!r} variant ({{}}) in ablations")
        if self.best_of_n_prompts > self.eval_prompts:
            raise ConfigError(f"best_of_n_prompts={self.best_of_n_prompts}: at most eval_prompts={self.eval_prompts} (best-of-N "
                              "answers the tuned runs' own evaluation prompts, to be paired with them)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        stored = json.loads(Path(path).read_text())
        if isinstance(stored.get("scale_rewards"), bool):  # a bool until issue 16: true -> group, false -> none
            stored["scale_rewards"] = "group" if stored["scale_rewards"] else "none"
        return cls(**stored)

    def differences(self, other: "Config") -> dict[str, tuple[Any, Any]]:
        """key -> (self's value, other's value) for every key that changes what a run computes
        (execution-only keys such as render_workers are left out)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine.get(k), theirs.get(k)) for k in sorted(set(mine) | set(theirs))
                if k not in EXECUTION_ONLY and mine.get(k) != theirs.get(k)}

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


# The run repeated over seeds (`replicates`), and the folder names of its replicates
REPLICATED_RUN = "smart"
REPLICATE_RE = re.compile(r"(\w+?)_seed(\d+)")

# The ablations (`make beyond`): run folders ablation_<variant>, each the `long` run with the variant's
# changes. "paper" (no change) is trained only when ablation_steps differs from long's steps.
ABLATION_PREFIX = "ablation_"
ABLATION_BASE_RUN = "long"
ABLATION_PAPER = "paper"
ABLATIONS: dict[str, dict[str, Any]] = {
    ABLATION_PAPER: {},
    "scale_batch": {"scale_rewards": "batch"},           # advantages / the step's reward std (TRL "batch")
    "scale_none": {"scale_rewards": "none"},             # advantages not scaled (Dr. GRPO's first change)
    # with one update per batch the ratio is 1 in value and GSPO's gradient is GRPO's (loss_type grpo):
    # GSPO only differs with several updates per batch, so it runs with two, beside its control
    "two_updates": {"num_iterations": 2},                # two policy updates per batch of completions
    "gspo": {"importance_sampling_level": "sequence", "num_iterations": 2},  # one ratio (and clip) per completion
    "mask_truncated": {"mask_truncated_completions": True},  # completions without EOS carry no loss
    "dr_grpo": {"loss_type": "dr_grpo"},                 # the constant normaliser completions x max tokens
    "entropy": {"entropy_coef": 0.01},                   # entropy bonus (PPO's customary coefficient)
    "diversity_bonus": {"group_diversity_bonus": 0.1},   # reward - 0.1 x mean profile similarity in the group
}


# Keys only notebook 05 and the ablation runs read (the paper's steps never see them, so setting one
# re-runs only what it changes)
BEYOND_KEYS = frozenset({"best_of_n_max", "best_of_n_prompts", "cross_score_limit", "transfer_soundfonts", "ablations",
                         "ablation_steps"})

# Keys that do not change what a run computes: how fast it goes (parallel rendering is order-preserving
# and bit-identical), where it lives (runs_dir), and pipeline-level settings read outside the run
# (how many replicates there are; the diversity sweep's bootstrap, part of the sweep's own cache key;
# the sizes of notebook 05's analyses and the ablation presets, which reach a run through its own keys).
EXECUTION_ONLY = frozenset({"render_workers", "runs_dir", "replicates", "diversity_bootstrap"}) | BEYOND_KEYS

CHOICES: dict[str, tuple[str, ...]] = {
    "profile": PROFILES,
    "reward_backend": ("auto", "audiobox", "standin"),  # reward.SCORERS plus auto (a test keeps them equal)
    "renderer": ("fluidsynth", "tinysoundfont"),
    "loss_type": ("grpo", "bnpo", "dr_grpo"),
    "scale_rewards": ("group", "batch", "none"),
    "importance_sampling_level": ("token", "sequence"),
    "prompt_kind": ("procedural", "procedural+note", "dataset"),
    "precision": ("auto", "fp32", "bf16"),
}


def _at_least(n):
    return (lambda v: v >= n), f"at least {n}"


_POSITIVE = ((lambda v: v > 0), "greater than 0")
_FRACTION = ((lambda v: 0 <= v < 1), "in [0, 1)")
_RANGES: dict[str, tuple[Any, str]] = {
    **{k: _at_least(1) for k in (
        "steps", "prompts_per_step", "checkpoint_every", "audio_every", "max_completion_tokens", "num_iterations",
        "eval_prompts", "eval_batch", "diversity_samples", "listening_prompts", "listening_max_attempts",
        "power_simulations", "unconditional_samples", "replicates", "soundfont_pieces", "n_layer", "hidden_size",
        "intermediate_size", "n_head", "max_positions", "crop_tokens", "pretrain_steps", "pretrain_batch",
        "pretrain_eval_every", "pretrain_eval_batches", "pretrain_patience", "sample_rate", "max_beats",
        "corpus_max_pieces", "best_of_n_max")},
    # one completion per prompt has no group to compare against: every advantage is 0 and nothing trains
    "group_size": _at_least(2),
    **{k: _at_least(0) for k in ("render_workers", "prompt_pool", "beta", "pretrain_warmup", "pretrain_weight_decay",
                                 "kl_log_every", "diversity_bootstrap", "entropy_coef", "group_diversity_bonus",
                                 "best_of_n_prompts", "cross_score_limit", "ablation_steps")},
    **{k: _POSITIVE for k in ("lr", "pretrain_lr", "pretrain_min_lr", "temperature", "epsilon", "max_seconds",
                              "grad_clip")},
    "val_fraction": _FRACTION, "test_fraction": _FRACTION,
}


def _field_types() -> dict[str, str]:
    import typing

    hints = typing.get_type_hints(Config)
    names = {int: "int", float: "float", str: "str", bool: "bool"}
    out = {}
    for key, hint in hints.items():
        if hint in names:
            out[key] = names[hint]
        elif typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            out[key] = ("optional " + names[args[0]]) if args and args[0] in names else "optional dict"
        else:
            out[key] = "dict"
    return out


def _check_type(key: str, value: Any) -> Any:
    """The value if it has the field's type (ints are accepted for floats), else ConfigError."""
    kind = _FIELD_TYPES[key]
    if kind.startswith("optional "):
        if value is None:
            return None
        kind = kind.split(" ", 1)[1]
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "str": isinstance(value, str), "bool": isinstance(value, bool),
          "dict": isinstance(value, dict)}[kind]
    if not ok:
        article = {"int": "an integer", "float": "a number", "str": "text", "bool": "true or false",
                   "dict": "a JSON object"}[kind]
        raise ConfigError(f"{key}={value!r}: expected {article}")
    return float(value) if kind == "float" else value


# The paper's runs: 200 steps beta 0.04 (the tuned model), and the two over-optimisation runs.
PAPER_RUNS = {
    "smart": {"steps": 200, "beta": 0.04},
    "long": {"steps": 1000, "beta": 0.04},
    "long_beta0": {"steps": 1000, "beta": 0.0},
}

# Profiles as diffs of the paper's settings (the dataclass defaults), as nanoGPT's config files and
# audiocraft's debug config are: what each one changes, and nothing else.
_PROFILE_DIFFS: dict[str, dict[str, Any]] = {
    "paper": {},
    # every real code path in seconds: the test suite
    "tiny": dict(
        corpus_dir="data/corpus_tiny", corpus_max_pieces=24, val_fraction=0.15, test_fraction=0.15,
        base_model="", n_layer=2, hidden_size=64, intermediate_size=128, n_head=2, max_positions=512,
        crop_tokens=128, pretrain_steps=60, pretrain_batch=8, pretrain_lr=3e-3, pretrain_warmup=5,
        pretrain_eval_every=20, pretrain_eval_batches=2, pretrain_patience=5,
        soundfont="timgm6mb", max_seconds=4.0, max_beats=16, render_workers=2, reward_backend="auto",
        steps=4, prompts_per_step=2, group_size=4, lr=1e-3, max_completion_tokens=48, checkpoint_every=2,
        audio_every=2, eval_prompts=8, diversity_samples=8, listening_prompts=2, listening_max_attempts=2,
        power_simulations=10, compare_soundfonts=False, replicates=2, best_of_n_max=4, cross_score_limit=4,
        runs={"smart": {"steps": 4, "beta": 0.04}, "long": {"steps": 6, "beta": 0.04},
              "long_beta0": {"steps": 6, "beta": 0.0}},
        # two variants, shorter than long: the ablation machinery (baseline run included) in seconds; one
        # unheard SoundFont (an .sf3 takes seconds to load in every render worker)
        ablation_steps=3, ablations={k: ABLATIONS[k] for k in ("paper", "gspo", "diversity_bonus")},
        transfer_soundfonts="fluidr3_gm",
    ),
    # `make reproduce` on a 2-core CPU, offline: our own small base model, the stand-in reward unless
    # Audiobox's weights are cached
    "small": dict(
        base_model="", hidden_size=192, intermediate_size=768, n_head=4, crop_tokens=256, pretrain_steps=600,
        pretrain_batch=16, pretrain_lr=1e-3, pretrain_warmup=50, pretrain_eval_every=100, pretrain_eval_batches=8,
        pretrain_patience=5, reward_backend="auto",
        # the paper's completion shape (256 tokens, G = 8) and lr (1e-4: a 40-step pilot at 256 tokens learnt
        # with it, README "Results") with half its prompts per step
        steps=40, prompts_per_step=2, checkpoint_every=10, eval_prompts=96,
        diversity_samples=24, listening_max_attempts=8, power_simulations=100, replicates=3,
        # the ablations at 60 steps (and their unchanged baseline at 60): `make beyond` within 45 min
        ablation_steps=60,
        runs={"smart": {"steps": 40, "beta": 0.04}, "long": {"steps": 100, "beta": 0.04},
              "long_beta0": {"steps": 100, "beta": 0.0}},
    ),
}


_FIELD_TYPES = _field_types()
