"""Audio -> aesthetic scores -> scalar reward.

A scorer is anything with the `Scorer` protocol below (name, axes, primary axis, `score`), registered
by name in `SCORERS`. Every table, figure, claim row and stamp takes its axis names from the scorer
that made the run (`describe()`, saved with the run), never from a list elsewhere.

* `AudioboxScorer`: Meta Audiobox Aesthetics (CE, CU, PC, PQ), weights resolved by smart_core.assets
  and loaded through the package's own loaders, scored in batches of 10 s windows.
* `StandInScorer`: an offline, deterministic score computed from the waveform alone, for machines
  without the Audiobox weights. It is *not* Audiobox and never carries CE/CU/PC/PQ names.

`load_scorer("auto")` picks Audiobox when its weights resolve without a network and otherwise the
stand-in, with a loud warning. The backend used is recorded in every run's metadata.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

log = logging.getLogger(__name__)

from .assets import AUDIOBOX_ID, ResolvedAsset, audiobox_available_offline, resolve_audiobox
from .errors import AssetUnavailable, ConfigError

AUDIOBOX_AXES = ("CE", "CU", "PC", "PQ")
AUDIOBOX_SAMPLE_RATE = 16_000
WINDOW_SECONDS = 10
STANDIN_AXES = ("standin", "standin_sustain", "standin_richness", "standin_activity")


@runtime_checkable
class Scorer(Protocol):
    """What the rest of the package needs from a reward model.

    axes: every column `score` returns; primary_axis: the one the paper's reward uses (reward =
    primary / 10 unless reward_weights says otherwise); axis_info: per axis a label and the (low, high)
    range figures use; paper_axes: axes that are the paper's own quantities (claims about them are
    tested); average_axes: the axes the SoundFont table averages, as the paper did (may be empty)."""

    name: str
    axes: tuple[str, ...]
    primary_axis: str
    axis_info: dict[str, tuple[str, tuple[float, float]]]
    paper_axes: tuple[str, ...]
    average_axes: tuple[str, ...]

    def score(self, audios: list[np.ndarray], sample_rate: int) -> pd.DataFrame: ...

    def describe(self) -> dict: ...


def describe_scorer(scorer, **extra) -> dict:
    """The record saved with every run: backend, axes and their labels and ranges, provenance."""
    return {"backend": scorer.name, "axes": list(scorer.axes), "primary_axis": scorer.primary_axis,
            "axis_info": {a: {"label": scorer.axis_info[a][0], "range": list(scorer.axis_info[a][1])}
                          for a in scorer.axes},
            "paper_axes": list(scorer.paper_axes), "average_axes": list(scorer.average_axes), **extra}


def _resample_mono(audio: np.ndarray, sample_rate: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    mono = np.asarray(audio, dtype=np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=0)
    if sample_rate == target:
        return mono
    g = math.gcd(sample_rate, target)
    return resample_poly(mono, target // g, sample_rate // g).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The stand-in


class StandInScorer:
    """Offline stand-in aesthetic score on Audiobox's 1-10 scale, from the waveform alone.

    The clip is mixed to mono, resampled to 16 kHz and placed in a 10 s window (zero-padded, as
    Audiobox pads), then cut into 64 ms frames (hop 32 ms):

        sustain  = fraction of the window's frames whose RMS is above -45 dBFS
        richness = mean over sounding frames of the normalised entropy of the energy in the 88
                   piano-key bands (27.5 Hz - 4.2 kHz, one semitone each): H(p) / log(88)
        activity = min(1, onsets per second of the 10 s window / 4), onsets being peaks of the
                   positive spectral flux above max(median + 2 MAD, 20% of its maximum)
        standin  = 1 + 9 * (0.4 * sustain + 0.35 * richness + 0.25 * activity)

    Why these: sound that fills the window and has no silent gaps (empty-beat rate, length), many
    simultaneous and widely spread pitches (polyphony, pitch range) and frequent note onsets
    (number of notes) are the MIDI-level changes the paper reports after tuning on CE. Silence
    scores exactly 1. It is cheap (a few ms per clip) and exactly deterministic.
    """

    name = "standin"
    axes = STANDIN_AXES
    primary_axis = "standin"
    axis_info = {"standin": ("stand-in score (offline, not CE)", (1.0, 10.0)),
                 "standin_sustain": ("stand-in part: sustain", (0.0, 1.0)),
                 "standin_richness": ("stand-in part: richness", (0.0, 1.0)),
                 "standin_activity": ("stand-in part: activity", (0.0, 1.0))}
    paper_axes = ()    # nothing the paper measured
    average_axes = ()  # a total and its parts: their average means nothing
    scores_in_render_workers = True  # numpy on one clip: cheaper next to the synth than shipping audio
    n_fft, hop = 1024, 512
    silence_dbfs = -45.0

    def __init__(self):
        freqs = np.fft.rfftfreq(self.n_fft, 1 / AUDIOBOX_SAMPLE_RATE)
        key_hz = 440.0 * 2 ** ((np.arange(21, 109) - 69) / 12)
        lo, hi = key_hz * 2 ** (-1 / 24), key_hz * 2 ** (1 / 24)
        # each key's band is a contiguous run of FFT bins (possibly empty for the lowest keys)
        self._band_bins = [(int(np.searchsorted(freqs, l)), int(np.searchsorted(freqs, h))) for l, h in zip(lo, hi)]
        self._window = np.hanning(self.n_fft).astype(np.float32)

    def score_one(self, audio: np.ndarray, sample_rate: int) -> dict[str, float]:
        x = _resample_mono(audio, sample_rate, AUDIOBOX_SAMPLE_RATE)
        n_window = WINDOW_SECONDS * AUDIOBOX_SAMPLE_RATE
        x = np.pad(x[:n_window], (0, max(0, n_window - len(x))))
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop]
        rms = np.sqrt((frames ** 2).mean(axis=1) + 1e-20)
        sounding = 20 * np.log10(rms + 1e-12) > self.silence_dbfs
        sustain = float(sounding.mean())
        if not sounding.any():
            return {"standin": 1.0, "standin_sustain": 0.0, "standin_richness": 0.0, "standin_activity": 0.0}
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        # plain sums, not a matmul with 0/1 masks: BLAS results depend on its thread count, and
        # the same clip must score the same in a 1-thread render worker and a 16-core main process
        band_energy = np.stack([power[:, a:b].sum(axis=1) for a, b in self._band_bins], axis=1)  # [frames, 88]
        p = band_energy[sounding] / (band_energy[sounding].sum(axis=1, keepdims=True) + 1e-20)
        entropy = -(p * np.log(p + 1e-20)).sum(axis=1) / np.log(p.shape[1])
        richness = float(np.clip(entropy.mean(), 0, 1))
        log_spec = np.log1p(power / (power.max() + 1e-20) * 1e4)
        flux = np.maximum(log_spec[1:] - log_spec[:-1], 0).sum(axis=1)
        # median + 2 MAD alone is ~0 for sparse audio (decays have no positive flux), so noise
        # would count as onsets; a floor at 20% of the strongest onset keeps only real attacks
        threshold = max(np.median(flux) + 2 * np.median(np.abs(flux - np.median(flux))), 0.2 * flux.max()) + 1e-6
        peaks = (flux[1:-1] > threshold) & (flux[1:-1] >= flux[:-2]) & (flux[1:-1] > flux[2:])
        activity = float(min(1.0, peaks.sum() / WINDOW_SECONDS / 4.0))
        total = 1 + 9 * (0.4 * sustain + 0.35 * richness + 0.25 * activity)
        return {"standin": total, "standin_sustain": sustain, "standin_richness": richness,
                "standin_activity": activity}

    def score(self, audios: list[np.ndarray], sample_rate: int) -> pd.DataFrame:
        return pd.DataFrame([self.score_one(a, sample_rate) for a in audios], columns=list(self.axes))

    def describe(self) -> dict:
        return describe_scorer(self)


# ------------------------------------------------------------------------------------------------
# Audiobox Aesthetics


class AudioboxScorer:
    """Audiobox Aesthetics through the package's loaders, with a batched, optionally bf16 forward.

    Weights come resolved (smart_core.assets): the from_pretrained layout is loaded by the package's
    default route, `AesMultiOutput.from_pretrained`, pointed at the resolved folder (so what is loaded
    is what meta.json records); a legacy checkpoint.pt by `initialize_predictor(ckpt=...)`.
    The package's predictor scores one batch with the model's own `forward`; its `enable_autocast`
    flag is computed after `precision` became a torch dtype, so autocast never turns on (0.0.4).
    We set the flag ourselves when `autocast=True`.
    """

    name = "audiobox"
    axes = AUDIOBOX_AXES
    primary_axis = "CE"
    axis_info = {"CE": ("CE (content enjoyment)", (1.0, 10.0)), "CU": ("CU (content usefulness)", (1.0, 10.0)),
                 "PC": ("PC (production complexity)", (1.0, 10.0)), "PQ": ("PQ (production quality)", (1.0, 10.0))}
    paper_axes = AUDIOBOX_AXES
    average_axes = AUDIOBOX_AXES

    def __init__(self, asset: ResolvedAsset | str, device: str | torch.device | None = None,
                 autocast: bool | None = None, batch_windows: int = 8):
        import audiobox_aesthetics.infer as abx

        self.asset = asset if isinstance(asset, ResolvedAsset) else resolve_audiobox(str(asset))
        self.checkpoint = str(self.asset.path)
        try:
            self.predictor = _load_predictor(abx, self.asset)
        except Exception as err:  # noqa: BLE001 - safetensors' and pickle's errors share no narrower base
            # the loaders' own messages run to many lines of advice that does not apply (torch suggests
            # weights_only=False for a file that is simply not a checkpoint): the type is enough
            raise AssetUnavailable(f"cannot read the Audiobox weights {self.asset.weights_file} "
                                   f"({type(err).__name__}); the file is corrupt or not Audiobox Aesthetics: "
                                   "download it again") from None
        self.device = torch.device(device) if device else self.predictor.device
        self.model = self.predictor.model.to(self.device).eval()
        self.autocast = (self.device.type == "cuda") if autocast is None else autocast
        self.model.precision = torch.bfloat16
        self.model.enable_autocast = self.autocast
        self.batch_windows = batch_windows
        self._make_batch = abx.make_inference_batch

    @torch.inference_mode()
    def score(self, audios: list[np.ndarray], sample_rate: int) -> pd.DataFrame:
        # the package's own resampling (torchaudio) and 10 s windowing, so scores match its forward
        wavs = self.predictor.audio_resample_mono(
            [{"path": torch.from_numpy(np.asarray(a, np.float32)), "sample_rate": sample_rate} for a in audios])
        windows, masks, weights, owners = self._make_batch(wavs, WINDOW_SECONDS, WINDOW_SECONDS,
                                                            sample_rate=AUDIOBOX_SAMPLE_RATE)
        preds = {axis: [] for axis in self.axes}
        for i in range(0, len(windows), self.batch_windows):
            batch = {"wav": torch.stack(windows[i:i + self.batch_windows]).to(self.device),
                     "mask": torch.stack(masks[i:i + self.batch_windows]).to(self.device)}
            out = self.model(batch)
            for axis in self.axes:
                preds[axis].append(self.predictor.target_transform[axis].inverse(out[axis].float()).cpu())
        weights_t, owners_t = torch.tensor(weights), torch.tensor(owners)
        rows = {}
        for axis in self.axes:
            values = torch.cat(preds[axis])
            total = torch.zeros(len(audios)).index_add_(0, owners_t, values * weights_t)
            norm = torch.zeros(len(audios)).index_add_(0, owners_t, weights_t)
            rows[axis] = (total / norm).numpy()
        return pd.DataFrame(rows, columns=list(self.axes))

    def score_reference(self, audios: list[np.ndarray], sample_rate: int) -> pd.DataFrame:
        """The package's own forward (fp32, its batching), for parity tests and the benchmark."""
        batch = [{"path": torch.from_numpy(np.asarray(a, np.float32)), "sample_rate": sample_rate} for a in audios]
        return pd.DataFrame(self.predictor.forward(batch), columns=list(self.axes))

    def describe(self) -> dict:
        return describe_scorer(self, checkpoint=self.checkpoint, asset=self.asset.provenance(),
                               device=str(self.device), autocast_bf16=self.autocast)


def _folder_predictor(abx, folder: Path):
    """The package's AesPredictor around `AesMultiOutput.from_pretrained(folder)`.

    The package's default (`initialize_predictor()` with no checkpoint) calls
    `AesMultiOutput.from_pretrained("facebook/audiobox-aesthetics")`, resolving the id through the cache
    or the Hub once more; loading the folder we resolved (and recorded) keeps the two equal and never
    touches the network. The rest repeats the package's setup_model (0.0.4) after its model is built."""
    from audiobox_aesthetics.model.aes import AXES_NAME, AesMultiOutput, Normalize

    class FolderPredictor(abx.AesPredictor):
        def setup_model(self):
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            self.model = AesMultiOutput.from_pretrained(str(folder)).to(self.device).eval()
            self.target_transform = {axis: Normalize(mean=self.model.target_transform[axis]["mean"],
                                                     std=self.model.target_transform[axis]["std"])
                                     for axis in AXES_NAME}

    return FolderPredictor(checkpoint_pth=None, data_col="path")


def _load_predictor(abx, asset: ResolvedAsset):
    if asset.layout == "checkpoint.pt":
        return abx.initialize_predictor(ckpt=str(asset.weights_file))
    return _folder_predictor(abx, asset.path)


def make_random_audiobox_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """The real Audiobox architecture (WavLM base + 4 heads) with random weights, saved in the
    package's checkpoint format, so the real loading and scoring path runs offline in tests.
    Its scores mean nothing musically."""
    from audiobox_aesthetics.model.aes import AesMultiOutput

    torch.manual_seed(seed)
    cfg = {"proj_num_layer": 1, "proj_ln": False, "proj_act_fn": "gelu", "proj_dropout": 0.0, "nth_layer": 13,
           "use_weighted_layer_sum": True, "precision": "32", "normalize_embed": True, "output_dim": 1}
    target_transform = {axis: {"mean": 5.5, "std": 1.5} for axis in AUDIOBOX_AXES}
    model = AesMultiOutput(**cfg, target_transform=target_transform)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "model_cfg": cfg, "target_transform": target_transform}, path)
    return path


def make_random_audiobox_repo(folder: str | Path, seed: int = 0) -> Path:
    """The same random-weight Audiobox, saved by the package class's own `save_pretrained` (the
    from_pretrained layout of facebook/audiobox-aesthetics: config.json + model.safetensors)."""
    from audiobox_aesthetics.model.aes import AesMultiOutput

    torch.manual_seed(seed)
    model = AesMultiOutput(proj_num_layer=1, proj_ln=False, proj_act_fn="gelu", proj_dropout=0.0, nth_layer=13,
                           use_weighted_layer_sum=True, precision="32", normalize_embed=True, output_dim=1,
                           target_transform={axis: {"mean": 5.5, "std": 1.5} for axis in AUDIOBOX_AXES})
    model.save_pretrained(str(folder))
    return Path(folder)


# ------------------------------------------------------------------------------------------------


def _load_audiobox(checkpoint: str = "", device=None, autocast: bool | None = None) -> AudioboxScorer:
    return AudioboxScorer(resolve_audiobox(checkpoint), device=device, autocast=autocast)


def _load_standin(checkpoint: str = "", device=None, autocast: bool | None = None) -> StandInScorer:
    return StandInScorer()


# name -> loader(checkpoint, device, autocast); config.CHOICES["reward_backend"] is these plus "auto"
SCORERS = {"audiobox": _load_audiobox, "standin": _load_standin}


def load_scorer(backend: str = "auto", checkpoint: str = "", device=None, autocast: bool | None = None):
    """A registered scorer by name, or `auto`: Audiobox when its weights resolve without a network
    (an explicit path, or the Hugging Face cache), else the stand-in with a loud warning."""
    if backend == "auto":
        if audiobox_available_offline(checkpoint):
            backend = "audiobox"
        else:
            warnings.warn("\n" + "!" * 78 + "\nAudiobox Aesthetics weights not found (no audiobox_checkpoint, no "
                          f"$SMART_AUDIOBOX_CKPT, no {AUDIOBOX_ID} with weights in the Hugging Face cache): using "
                          "the OFFLINE STAND-IN reward (smart_core.reward.StandInScorer).\nIts scores are not "
                          "CE/CU/PC/PQ. Set audiobox_checkpoint, or reward_backend=audiobox to download it.\n"
                          + "!" * 78, stacklevel=2)
            backend = "standin"
    if backend not in SCORERS:
        raise ConfigError(f"unknown reward backend {backend!r}; use auto or one of {', '.join(SCORERS)}")
    return SCORERS[backend](checkpoint, device, autocast)


def default_weights(scorer) -> dict[str, float]:
    """The paper's reward: the primary axis / 10 (CE / 10 for Audiobox)."""
    return {scorer.primary_axis: 0.1}


def scalar_reward(scores: pd.DataFrame, weights: dict[str, float], fallback: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of named axes. Non-finite results get `fallback`; returns (reward, was_nonfinite)."""
    missing = sorted(set(weights) - set(scores.columns))
    if missing:
        raise KeyError(f"reward weights name axes {missing} that the scorer does not produce ({list(scores.columns)})")
    reward = sum(w * scores[axis].to_numpy(dtype=np.float64) for axis, w in weights.items())
    bad = ~np.isfinite(reward)
    return np.where(bad, fallback, reward), bad
