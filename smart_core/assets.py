"""One rule for the two Hub assets: the paper's base model and Audiobox Aesthetics.

    explicit local path (config field or environment variable)
      -> the local Hugging Face cache (the hub's own layout, under $HF_HUB_CACHE or $HF_HOME/hub)
      -> the Hub, when it can be reached (downloaded with a progress bar, into that cache)
      -> else fail within seconds, naming what to download and where to put it.

Each resolution returns a `ResolvedAsset` whose `provenance()` (id and revision, or path; the weights
file and its sha256) goes into every run's meta.json. Nothing here loads weights: model.py and
reward.py do, with transformers' and the audiobox package's own loaders, from the resolved folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import AssetUnavailable

BASE_MODEL_ID = "lucacasini/metamidipianophi3_4L"
AUDIOBOX_ID = "facebook/audiobox-aesthetics"
# environment variables naming an explicit local copy
BASE_MODEL_ENV = "SMART_BASE_MODEL"      # a save_pretrained folder used in place of a Hub id
AUDIOBOX_ENV = "SMART_AUDIOBOX_CKPT"     # checkpoint.pt, or a from_pretrained folder

HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
MODEL_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
AUDIOBOX_LAYOUTS = {  # the package's loaders: AesMultiOutput.from_pretrained, and its older torch.load route
    "from_pretrained": ("config.json", "model.safetensors"),
    "checkpoint.pt": ("checkpoint.pt",),
}


@dataclass(frozen=True)
class ResolvedAsset:
    kind: str               # "base_model" | "audiobox"
    repo_id: str | None     # the Hub id it stands for (None for a user's own folder)
    source: str             # "path" | "hf_cache" | "hub_download"
    path: Path              # a folder (save_pretrained / from_pretrained layout) or a checkpoint.pt file
    weights_file: Path
    layout: str
    revision: str | None = None

    def provenance(self) -> dict:
        return {"kind": self.kind, "id": self.repo_id, "source": self.source, "revision": self.revision,
                "path": str(self.path), "layout": self.layout, "weights_file": self.weights_file.name,
                "weights_bytes": self.weights_file.stat().st_size, "sha256": sha256_of(self.weights_file)}


_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """sha256 of a file, computed once per process per (path, size, mtime): 0.5-1 s for 400 MB."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


# ------------------------------------------------------------------------------------------------
# The Hugging Face cache and the Hub


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub defines it, read from the environment now (its constants
    module reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """False at once under HF_HUB_OFFLINE, else a TCP connect to the endpoint within `timeout`."""
    if offline_mode():
        return False
    from huggingface_hub import constants

    host = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of repo_id's main revision in the local cache, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=hub_cache_dir(), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def _download(repo_id: str, allow_patterns: list[str] | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=hub_cache_dir(), allow_patterns=allow_patterns))
    except RepositoryNotFoundError:
        raise AssetUnavailable(f"{repo_id!r} does not exist on the Hugging Face Hub (or is private); "
                               "check the id") from None
    except GatedRepoError:
        raise AssetUnavailable(f"{repo_id!r} is gated: accept its licence on the Hub and log in "
                               "(huggingface-cli login), then run again") from None
    except (HfHubHTTPError, OSError) as err:
        raise AssetUnavailable(f"downloading {repo_id!r} failed ({type(err).__name__}: {err})") from None


def _revision_of(snapshot: Path) -> str | None:
    return snapshot.name if re.fullmatch(r"[0-9a-f]{40}", snapshot.name) else None


def _from_hub(kind: str, repo_id: str, find_weights, allow_patterns, how_to_get: str) -> ResolvedAsset:
    """Cache first, then the Hub; `find_weights(folder) -> (layout, weights file) | None`."""
    snapshot = _cached_snapshot(repo_id)
    if snapshot is not None:
        found = find_weights(snapshot)
        if found is None:
            files = sorted(p.name for p in snapshot.iterdir())
            raise AssetUnavailable(f"the Hugging Face cache holds {repo_id!r} at {snapshot} without its weights "
                                   f"(files: {', '.join(files) or 'none'}); delete that folder and download again: "
                                   f"{how_to_get}")
        return ResolvedAsset(kind, repo_id, "hf_cache", snapshot, found[1], found[0], _revision_of(snapshot))
    if not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline_mode() else "the Hub cannot be reached"
        raise AssetUnavailable(f"{repo_id!r} is not in the Hugging Face cache ({hub_cache_dir()}) and {why}. "
                               f"{how_to_get}")
    snapshot = _download(repo_id, allow_patterns)
    found = find_weights(snapshot)
    if found is None:
        raise AssetUnavailable(f"{repo_id!r} was downloaded to {snapshot} but holds no weights file we can load")
    return ResolvedAsset(kind, repo_id, "hub_download", snapshot, found[1], found[0], _revision_of(snapshot))


# ------------------------------------------------------------------------------------------------
# The base model


def _model_weights(folder: Path):
    if not (folder / "config.json").is_file():
        return None
    for name in MODEL_WEIGHTS:
        if (folder / name).is_file():
            return "save_pretrained", folder / name
    return None


def resolve_base_model(source: str) -> ResolvedAsset:
    """A save_pretrained folder, or a Hub id (the $SMART_BASE_MODEL folder, the cache, the Hub)."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = _model_weights(path)
        if found is None:
            what = "no config.json" if not (path / "config.json").is_file() else f"no {' or '.join(MODEL_WEIGHTS)}"
            raise AssetUnavailable(f"{path} has {what}: not a save_pretrained model folder")
        return ResolvedAsset("base_model", None, "path", path.resolve(), found[1], found[0])
    if not HUB_ID_RE.fullmatch(source):
        raise AssetUnavailable(f"base_model={source!r} is neither an existing folder nor a Hub id (owner/name)")
    local = os.environ.get(BASE_MODEL_ENV, "")
    if local:
        asset = resolve_base_model(local) if Path(local).expanduser().is_dir() else None
        if asset is None:
            raise AssetUnavailable(f"${BASE_MODEL_ENV}={local!r} is not a folder")
        return ResolvedAsset("base_model", source, "path", asset.path, asset.weights_file, asset.layout)
    how = (f"Download it on a connected machine (huggingface-cli download {source}) and copy the Hugging Face "
           f"cache here (HF_HUB_CACHE), or point base_model= (or ${BASE_MODEL_ENV}) at a save_pretrained folder; "
           "or leave base_model empty to train our own.")
    return _from_hub("base_model", source, _model_weights, None, how)


# ------------------------------------------------------------------------------------------------
# Audiobox Aesthetics


def _audiobox_weights(folder: Path):
    for layout, files in AUDIOBOX_LAYOUTS.items():
        if all((folder / f).is_file() for f in files):
            return layout, folder / files[-1]
    return None


def resolve_audiobox(configured: str = "") -> ResolvedAsset:
    """Audiobox weights: audiobox_checkpoint / $SMART_AUDIOBOX_CKPT (a checkpoint.pt, or a folder in
    either layout), else `facebook/audiobox-aesthetics` from the cache or the Hub."""
    for origin, candidate in (("audiobox_checkpoint", configured), (AUDIOBOX_ENV, os.environ.get(AUDIOBOX_ENV, ""))):
        if not candidate:
            continue
        path = Path(candidate).expanduser()
        if path.is_file():
            return ResolvedAsset("audiobox", None, "path", path.resolve(), path.resolve(), "checkpoint.pt")
        if path.is_dir():
            found = _audiobox_weights(path)
            if found is None:
                raise AssetUnavailable(f"{origin}={candidate!r} holds neither config.json + model.safetensors "
                                       "(the package's from_pretrained layout) nor checkpoint.pt")
            return ResolvedAsset("audiobox", None, "path", path.resolve(), found[1], found[0])
        raise AssetUnavailable(f"{origin}={candidate!r} does not exist")
    how = (f"Download it on a connected machine (huggingface-cli download {AUDIOBOX_ID}, about 400 MB) and copy "
           f"the Hugging Face cache here (HF_HUB_CACHE), or set audiobox_checkpoint= (or ${AUDIOBOX_ENV}) to its "
           "folder or checkpoint.pt. To run without it use reward_backend=standin.")
    return _from_hub("audiobox", AUDIOBOX_ID, _audiobox_weights, ["config.json", "model.safetensors"], how)


def audiobox_available_offline(configured: str = "") -> bool:
    """Whether `auto` can use Audiobox: its weights resolve without touching the network."""
    if configured or os.environ.get(AUDIOBOX_ENV):
        return True  # an explicit path: resolve_audiobox says what is wrong with it
    snapshot = _cached_snapshot(AUDIOBOX_ID)
    return snapshot is not None and _audiobox_weights(snapshot) is not None
