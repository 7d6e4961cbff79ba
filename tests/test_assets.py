"""The one rule for the two Hub assets, on a real Hugging Face cache layout built offline."""

import hashlib
import shutil
import time
import warnings

import pytest

from smart_core.assets import AUDIOBOX_ID, BASE_MODEL_ID, resolve_audiobox, resolve_base_model
from smart_core.errors import AssetUnavailable
from smart_core.model import load_pretrained
from smart_core.reward import AudioboxScorer, StandInScorer, load_scorer

from .conftest import put_in_hf_cache


def test_base_model_hub_id_resolves_from_the_cache_with_its_revision_and_sha256(offline_hub):
    asset = resolve_base_model(BASE_MODEL_ID)
    assert asset.source == "hf_cache" and asset.repo_id == BASE_MODEL_ID and len(asset.revision) == 40
    record = asset.provenance()
    assert record["sha256"] == hashlib.sha256(asset.weights_file.read_bytes()).hexdigest()
    model = load_pretrained(BASE_MODEL_ID)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (4, 512, 413)


def test_an_explicit_folder_wins_over_the_cache(offline_hub, monkeypatch, tiny_base_model):
    monkeypatch.setenv("SMART_BASE_MODEL", str(tiny_base_model))
    asset = resolve_base_model(BASE_MODEL_ID)
    assert asset.source == "path" and asset.repo_id == BASE_MODEL_ID and asset.path == tiny_base_model.resolve()
    assert resolve_base_model(str(tiny_base_model)).source == "path"


def test_missing_ids_fail_within_seconds_saying_what_to_do(offline_hub):
    start = time.time()
    with pytest.raises(AssetUnavailable, match="not in the Hugging Face cache .* HF_HUB_OFFLINE is set.*huggingface-cli "
                                               "download nobody/no-such-model"):
        resolve_base_model("nobody/no-such-model")
    with pytest.raises(AssetUnavailable, match="neither an existing folder nor a Hub id"):
        resolve_base_model("not a hub id")
    assert time.time() - start < 5


def test_a_cache_without_the_weights_file_is_named(offline_hub, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    put_in_hf_cache(cache, BASE_MODEL_ID, lambda d: (d / "config.json").write_text("{}"))
    put_in_hf_cache(cache, AUDIOBOX_ID, lambda d: (d / "config.json").write_text("{}"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(AssetUnavailable, match="without its weights .*files: config.json"):
        resolve_base_model(BASE_MODEL_ID)
    with pytest.raises(AssetUnavailable, match="without its weights"):
        resolve_audiobox()
    with pytest.warns(UserWarning, match="STAND-IN"):  # auto: not resolvable offline -> the stand-in
        assert isinstance(load_scorer("auto"), StandInScorer)


def test_audiobox_from_the_cache_in_the_packages_from_pretrained_layout(offline_hub):
    asset = resolve_audiobox()
    assert (asset.source, asset.layout, asset.repo_id) == ("hf_cache", "from_pretrained", AUDIOBOX_ID)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scorer = load_scorer("auto", device="cpu")
    assert isinstance(scorer, AudioboxScorer)
    assert not [w for w in caught if "STAND-IN" in str(w.message)]  # auto: the weights are there
    record = scorer.describe()
    assert record["backend"] == "audiobox" and record["axes"] == ["CE", "CU", "PC", "PQ"]
    assert record["asset"]["revision"] == asset.revision and len(record["asset"]["sha256"]) == 64


def test_audiobox_folder_and_legacy_checkpoint_paths(offline_hub, tmp_path, monkeypatch):
    folder = resolve_audiobox().path
    assert resolve_audiobox(str(folder)).layout == "from_pretrained"  # a copied snapshot folder
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert resolve_audiobox(str(legacy)).layout == "checkpoint.pt"
    monkeypatch.setenv("SMART_AUDIOBOX_CKPT", str(legacy / "checkpoint.pt"))
    assert resolve_audiobox().source == "path"
    # a corrupt file: one line naming the file, not torch's unpickling advice
    with pytest.raises(AssetUnavailable, match="cannot read the Audiobox weights .*checkpoint.pt.*corrupt") as err:
        load_scorer("audiobox", device="cpu")
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(AssetUnavailable, match="does not exist"):
        resolve_audiobox(str(tmp_path / "missing.pt"))


def test_a_truncated_model_folder_is_one_clear_error(offline_hub, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(resolve_base_model(BASE_MODEL_ID).path, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(AssetUnavailable, match="incomplete or corrupt"):
        load_pretrained(copy)
