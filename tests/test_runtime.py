"""Device and precision, read in one place; the CUDA path's bf16 autocast forced on CPU, so dtype
mismatches show up on a machine without a GPU. Tolerances against fp32 are stated per check."""

import numpy as np
import pytest
import torch

from smart_core.decoder import StaticCacheDecoder
from smart_core.errors import ConfigError
from smart_core.model import load_pretrained
from smart_core.runtime import autocast, resolve_device, use_bf16
from smart_core.sampling import sample, token_logprobs
from smart_core.tokenizer import BOS_ID

CPU = torch.device("cpu")
# bf16 keeps 8 bits of mantissa: logits of the tiny model (|logit| < 20) move by a few hundredths
LOGIT_TOL, LOGPROB_TOL = 0.15, 0.15


def test_device_and_precision_choices():
    assert resolve_device("cpu") == CPU and resolve_device("auto").type in ("cpu", "cuda")
    assert not use_bf16("auto", CPU) and use_bf16("bf16", CPU) and not use_bf16("fp32", torch.device("cuda"))
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.fixture(scope="module")
def model(tiny_base_model):
    return load_pretrained(tiny_base_model, CPU).eval()


def test_static_decoder_under_bf16_autocast(model):
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358]] * 3)
    reference = StaticCacheDecoder(model, 3, 12)
    ref = [reference.prefill(prompts)] + [reference.step(torch.full((3,), t)) for t in (30, 31, 32)]
    with autocast(CPU, "bf16"):
        dec = StaticCacheDecoder(model, 3, 12)
        out = [dec.prefill(prompts)] + [dec.step(torch.full((3,), t)) for t in (30, 31, 32)]
    assert dec.keys.dtype == torch.bfloat16 and reference.keys.dtype == torch.float32
    for a, b in zip(out, ref):
        assert (a.float() - b).abs().max() < LOGIT_TOL


@pytest.mark.parametrize("backend", ["static", "hf"])
def test_sampling_and_logprobs_under_bf16_autocast(model, backend):
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358]] * 4)
    with autocast(CPU, "bf16"):
        completions, mask = sample(model, prompts, 24, 1.0, torch.Generator().manual_seed(0), backend=backend)
        lp16 = token_logprobs(model, prompts, completions)
    lp32 = token_logprobs(model, prompts, completions)
    assert completions.shape[0] == 4 and mask.sum() > 0
    assert torch.isfinite(lp16).all() and (lp16.float() - lp32).abs().max() < LOGPROB_TOL


def test_one_grpo_update_under_bf16(tiny_cfg, tiny_base_model):
    from smart_core.grpo import train

    cfg = tiny_cfg.replace(precision="bf16", steps=1, checkpoint_every=1)
    run = train(cfg, "bf16_update", tiny_base_model, progress=False)
    row = run.steps().iloc[0]
    assert np.isfinite(row["loss"]) and np.isfinite(row["grad_norm"]) and row["grad_norm"] > 0
    assert run.meta["runtime"]["bf16_autocast"] is True
    before = load_pretrained(tiny_base_model, CPU).state_dict()
    after = load_pretrained(run.final_checkpoint(cfg), CPU).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the update changed the weights
    assert all(v.dtype == torch.float32 for v in after.values())  # autocast, not a cast of the weights


def test_audiobox_under_bf16_autocast(offline_hub):
    """Audiobox's own autocast (the package's flag, which we set) on CPU against fp32: the same
    clip, |dCE| within 0.25 on random weights (with the real weights it is not measured here)."""
    from smart_core.reward import load_scorer

    clip = np.sin(2 * np.pi * 440 * np.arange(48_000) / 48_000).astype(np.float32)[None].repeat(2, 0) * 0.3
    fp32 = load_scorer("audiobox", device="cpu", autocast=False)
    ref = fp32.score([clip], 48_000)
    fp32.model.enable_autocast = True  # the same model, bf16 autocast through the package's forward
    ours = fp32.score([clip], 48_000)
    assert np.isfinite(ours.values).all() and np.abs(ours.values - ref.values).max() < 0.25
