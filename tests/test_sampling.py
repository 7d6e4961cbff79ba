import torch

from smart_core.model import build_model
from smart_core.sampling import completion_mask, sample, token_logprobs
from smart_core.tokenizer import BOS_ID, EOS_ID, PAD_ID


def test_mask_covers_tokens_up_to_and_including_eos():
    completions = torch.tensor([[5, 6, EOS_ID, PAD_ID], [5, 6, 7, 8], [EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    assert completion_mask(completions).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_kv_cache_sampler_matches_transformers_generate_greedy(tiny_cfg):
    """At a vanishing temperature our sampler is greedy decoding: same tokens as HF generate."""
    model = build_model(tiny_cfg).eval()
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358]] * 3)
    ours, _ = sample(model, prompts, 20, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    ref = model.generate(prompts, max_new_tokens=20, do_sample=False, eos_token_id=-1, pad_token_id=PAD_ID)
    n = ours.size(1)
    assert torch.equal(ours, ref[:, prompts.size(1):prompts.size(1) + n])


def test_seeded_sampling_is_reproducible_and_pads_after_eos(tiny_cfg):
    model = build_model(tiny_cfg).eval()
    prompts = torch.tensor([[BOS_ID, 21, 408, 190, 358]] * 16)
    a, ma = sample(model, prompts, 30, generator=torch.Generator().manual_seed(1))
    b, mb = sample(model, prompts, 30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    for row, m in zip(a, ma):
        eos = (row == EOS_ID).nonzero()
        if len(eos):
            assert (row[eos[0, 0] + 1:] == PAD_ID).all() and m[eos[0, 0]] == 1


def test_token_logprobs_match_a_step_by_step_computation(tiny_cfg):
    model = build_model(tiny_cfg).eval()
    prompt = torch.tensor([[BOS_ID, 21, 408, 190, 358]])
    completion = torch.tensor([[61, 129, 153, EOS_ID]])
    lp = token_logprobs(model, prompt, completion)
    seq = prompt
    for t in range(completion.size(1)):
        logits = model(input_ids=seq).logits[0, -1]
        assert torch.isclose(lp[0, t], torch.log_softmax(logits, -1)[completion[0, t]], atol=1e-5)
        seq = torch.cat([seq, completion[:, t:t + 1]], dim=1)
