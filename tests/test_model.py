import time

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from smart_core.midi import n_notes
from smart_core.errors import AssetUnavailable
from smart_core.model import (build_model, load_pretrained, lm_loss, random_crops, unigram_loss)
from smart_core.sampling import sample
from smart_core.tokenizer import BOS_ID, PAD_ID, ids_to_score


def test_pad_is_masked_out_of_the_loss(tiny_cfg):
    model = build_model(tiny_cfg)
    ids = torch.tensor([[BOS_ID, 21, 408, 190, 358, 61, 129, 153]])
    padded = torch.cat([ids, torch.full((1, 6), PAD_ID)], dim=1)
    assert torch.allclose(lm_loss(model, ids), lm_loss(model, padded), atol=1e-5)


def test_random_crops_are_reproducible_and_padded():
    pieces = [np.arange(3, 40), np.arange(3, 10)]
    a = random_crops(pieces, 6, 16, np.random.default_rng(1))
    b = random_crops(pieces, 6, 16, np.random.default_rng(1))
    assert torch.equal(a, b) and a.shape == (6, 16)
    assert (a == PAD_ID).any()  # the short piece leaves PAD at the end


def test_pretrained_tiny_model_beats_the_unigram_baseline(tiny_base_model):
    import json

    summary = json.loads((tiny_base_model / "pretrain_summary.json").read_text())
    assert summary["best_val_loss"] < 0.8 * summary["unigram_val_loss"]


def test_saved_model_loads_with_auto_class(tiny_base_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_base_model)
    assert model.config.vocab_size == 413 and type(model).__name__ == "Phi3ForCausalLM"


def test_tiny_model_samples_decode_to_notes(tiny_base_model):
    model = load_pretrained(tiny_base_model, torch.device("cpu")).eval()
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358]] * 8)
    gen = torch.Generator().manual_seed(0)
    completions, _ = sample(model, prompts, 64, 1.0, gen)
    counts = [n_notes(ids_to_score(torch.cat([prompts[i], completions[i]]).tolist())) for i in range(8)]
    assert np.mean([c > 0 for c in counts]) >= 0.75


def test_unigram_baseline_is_the_entropy_of_a_constant_stream():
    train = [np.array([5, 5, 5, 6])]
    evaluation = torch.tensor([[1, 5, 5, 6, 0]])
    value = unigram_loss(train, evaluation)
    assert 0 < value < np.log(413)
    # add-one smoothing: token 5 has 3 + 1 of 417 counts, token 6 has 1 + 1; the targets are 5, 5, 6
    # (the first token is never a target, PAD never is)
    assert value == pytest.approx(-(2 * np.log(4 / 417) + np.log(2 / 417)) / 3)


def test_missing_local_model_and_offline_hub_fail_fast(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetUnavailable, match="config.json"):
        load_pretrained(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    start = time.time()
    with pytest.raises(AssetUnavailable, match="lucacasini/metamidipianophi3_4L"):
        load_pretrained("lucacasini/metamidipianophi3_4L")
    assert time.time() - start < 15
