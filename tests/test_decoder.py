"""Parity of the static-cache decoder with the transformers Phi-3 forward it replaces."""

import pytest
import torch
from transformers import Phi3Config, Phi3ForCausalLM

from smart_core.decoder import StaticCacheDecoder, supports
from smart_core.model import build_model
from smart_core.sampling import sample
from smart_core.tokenizer import BOS_ID, VOCAB_SIZE


def phi3(**overrides):
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, pad_token_id=0)
    config = Phi3Config(**{**settings, **overrides})
    return Phi3ForCausalLM(config).eval()


@pytest.mark.parametrize("overrides", [{}, {"num_key_value_heads": 2}, {"partial_rotary_factor": 0.5}],
                         ids=["mha", "gqa", "partial-rope"])
def test_prefill_and_steps_give_the_hf_logits(overrides):
    model = phi3(**overrides)
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358], [BOS_ID, 30, 400, 200, 350]])
    completion = torch.randint(3, VOCAB_SIZE, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(input_ids=torch.cat([prompts, completion], 1)).logits
    dec = StaticCacheDecoder(model, batch=2, max_length=45)
    ours = [dec.prefill(prompts)] + [dec.step(completion[:, t]) for t in range(completion.size(1) - 1)]
    ours = torch.stack(ours, dim=1)
    assert torch.allclose(ours, full[:, prompts.size(1) - 1:-1], atol=1e-5)
    with pytest.raises(ValueError, match="cache holds 45"):
        dec.step(completion[:, 0]), dec.step(completion[:, 0])


def test_seeded_samples_equal_the_hf_forward_sampler(tiny_cfg):
    model = build_model(tiny_cfg).eval()
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358]] * 8)
    fast, fast_mask = sample(model, prompts, 48, generator=torch.Generator().manual_seed(3), backend="static")
    slow, slow_mask = sample(model, prompts, 48, generator=torch.Generator().manual_seed(3), backend="hf")
    assert torch.equal(fast, slow) and torch.equal(fast_mask, slow_mask)
    assert len(set(map(tuple, fast.tolist()))) > 1  # real sampling, not one repeated row


def test_unsupported_models_fall_back_to_the_hf_forward():
    model = phi3(sliding_window=8)
    assert supports(model) == "sliding-window attention"
    assert supports(phi3().train()) == "model in training mode (dropout)"
    with pytest.raises(ValueError, match="sliding-window"):
        StaticCacheDecoder(model, 1, 16)
    prompts = torch.tensor([[BOS_ID, 21, 408]])
    auto, _ = sample(model, prompts, 10, generator=torch.Generator().manual_seed(0))
    hf, _ = sample(model, prompts, 10, generator=torch.Generator().manual_seed(0), backend="hf")
    assert torch.equal(auto, hf)


@pytest.mark.parametrize("overrides", [{}, {"num_key_value_heads": 2}, {"partial_rotary_factor": 0.5}],
                         ids=["mha", "gqa", "partial-rope"])
def test_the_lean_one_token_path_runs_in_fp32_and_matches_the_general_path(overrides):
    model = phi3(**overrides)
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358]] * 3)
    tokens = torch.randint(3, VOCAB_SIZE, (3, 30), generator=torch.Generator().manual_seed(1))
    lean, general = StaticCacheDecoder(model, 3, 40), StaticCacheDecoder(model, 3, 40, lean=False)
    assert lean._lean is not None and general._lean is None
    lean.prefill(prompts), general.prefill(prompts)
    for t in range(tokens.size(1)):
        assert torch.allclose(lean.step(tokens[:, t]), general.step(tokens[:, t]), atol=1e-5), t
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 (the CUDA path) keeps the general step
        assert StaticCacheDecoder(model, 3, 40)._lean is None
