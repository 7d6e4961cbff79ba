"""A lean Phi-3 forward with a static KV cache, for sampling.

The `transformers` forward of one new token for 16 sequences costs about 8 ms on the small model on
2 CPU cores, of which the matrix products are under 3 ms; the rest is mask building, cache bookkeeping
and kwargs plumbing. This module runs the same weights (the HF module's own parameters, no copy)
through the same arithmetic with a preallocated cache: about 5 ms (bench/run_all.py --only sample).
`tests/test_decoder.py` checks logits and sampled tokens against the HF model (the nanoGPT-style
parity test); `supports()` says when a model needs something this does not do, and `sampling.sample`
then falls back to the HF forward.

One new token per step (`step`) in fp32 takes a leaner path (`_LeanStep`): at batch 16 the step is
bound by reading the weights and the KV cache from memory plus the cost of each op call, so it
makes fewer calls: RoPE for q and k together, with rotate_half as one product with a fixed signed
permutation matrix (instead of slices, a negation and a concatenation per tensor); torch's fused
rms_norm; residual adds inside addmm; no module calls. About 1.2x per token on 2 CPU cores
(bench/run_all.py --only sample); logits agree with the HF forward to 1e-5 (tested). Under autocast (bf16, the CUDA path) the general `_forward` runs every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supports(model) -> str | None:
    """None if `model` can run here, else the reason it cannot."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) != "phi3":
        return "not a Phi-3 model"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if getattr(config, "sliding_window", None):
        return "sliding-window attention"
    if model.training:
        return "model in training mode (dropout)"
    return None


class StaticCacheDecoder:
    """prefill(prompt_ids) then step(tokens) -> next-token logits [B, V]; cache sized up front."""

    def __init__(self, model, batch: int, max_length: int, lean: bool = True):
        """lean=False keeps every step on the general `_forward` (the benchmark's baseline)."""
        reason = supports(model)
        if reason:
            raise ValueError(f"StaticCacheDecoder cannot run this model: {reason}")
        config = model.config
        inner = model.model
        self.model, self.inner = model, inner
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.eps = config.rms_norm_eps
        self.layers = list(inner.layers)
        p = next(model.parameters())
        self.device = p.device
        # the cache holds what the projections produce: bf16 under autocast (the CUDA path, or CPU when
        # forced), else the parameters' dtype. q, k and v are cast to it so attention sees one dtype.
        autocasting = torch.is_autocast_enabled(self.device.type)
        self.dtype = torch.get_autocast_dtype(self.device.type) if autocasting else p.dtype
        shape = (len(self.layers), batch, self.n_kv, max_length, self.head_dim)
        self.keys = torch.empty(shape, dtype=self.dtype, device=self.device)
        self.values = torch.empty(shape, dtype=self.dtype, device=self.device)
        positions = torch.arange(max_length, device=self.device)[None]
        # the model's own rotary module: the same cos/sin (and any rope scaling) as the HF forward
        probe = torch.empty(1, dtype=p.dtype, device=self.device)
        cos, sin = inner.rotary_emb(probe, positions)
        self.cos, self.sin = cos[0], sin[0]  # [max_length, rotary_dim]
        self.rotary_dim = self.cos.shape[-1]
        self.length = 0
        self.max_length = max_length
        self._lean = _LeanStep(self) if lean and not autocasting and p.dtype == torch.float32 else None

    def _rms(self, x, weight):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * x32.to(x.dtype)

    def _rope(self, x, cos, sin):
        r = self.rotary_dim
        rot, rest = x[..., :r], x[..., r:]
        half = r // 2
        rotated = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
        out = rot * cos + rotated * sin
        return out if rest.shape[-1] == 0 else torch.cat((out, rest), dim=-1)

    @torch.no_grad()
    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        batch, n = ids.shape
        start, end = self.length, self.length + n
        if end > self.max_length:
            raise ValueError(f"cache holds {self.max_length} positions, asked for {end}")
        cos, sin = self.cos[start:end], self.sin[start:end]  # [n, r], broadcast over [B, H, n, r]
        h = self.inner.embed_tokens(ids)
        q_size, kv_size = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = self._rms(h, layer.input_layernorm.weight)
            qkv = attn.qkv_proj(x)
            q = qkv[..., :q_size].view(batch, n, self.n_heads, self.head_dim).transpose(1, 2)
            k = qkv[..., q_size:q_size + kv_size].view(batch, n, self.n_kv, self.head_dim).transpose(1, 2)
            v = qkv[..., q_size + kv_size:].view(batch, n, self.n_kv, self.head_dim).transpose(1, 2)
            q, k = self._rope(q, cos, sin).to(self.dtype), self._rope(k, cos, sin)
            self.keys[i, :, :, start:end] = k
            self.values[i, :, :, start:end] = v
            out = F.scaled_dot_product_attention(q, self.keys[i, :, :, :end], self.values[i, :, :, :end],
                                                 is_causal=n > 1, scale=attn.scaling,
                                                 enable_gqa=self.n_kv != self.n_heads)
            h = h + attn.o_proj(out.transpose(1, 2).reshape(batch, n, q_size))
            mlp = layer.mlp
            gate, up = mlp.gate_up_proj(self._rms(h, layer.post_attention_layernorm.weight)).chunk(2, dim=-1)
            h = h + mlp.down_proj(up * F.silu(gate))
        self.length = end
        return self.model.lm_head(self._rms(h[:, -1], self.inner.norm.weight))

    def prefill(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """Prompts of one length, no padding (causal attention within the prompt)."""
        if self.length:
            raise RuntimeError("prefill on a used cache")
        return self._forward(prompt_ids)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """The next-token logits [B, V] after appending tokens [B]."""
        if self._lean is None or self.length == 0 or torch.is_autocast_enabled(self.device.type):
            return self._forward(tokens[:, None])  # the general path (also if autocast was entered after building)
        if self.length >= self.max_length:
            raise ValueError(f"cache holds {self.max_length} positions, asked for {self.length + 1}")
        return self._lean(self, tokens)


def rotate_half_matrix(head_dim: int, rotary_dim: int) -> torch.Tensor:
    """R [head_dim, head_dim] with x @ R == rotate_half(x[..., :rotary_dim]) padded with zeros:
    out[j] = -x[j + half] and out[j + half] = x[j] for j < half = rotary_dim // 2."""
    R = torch.zeros(head_dim, head_dim)
    half = rotary_dim // 2
    j = torch.arange(half)
    R[j + half, j] = -1.0
    R[j, j + half] = 1.0
    return R


class _LeanStep:
    """The fp32 one-token step with fewer op calls (see the module docstring). It holds views of
    the model's parameters, never copies: GRPO updates them in place between steps."""

    def __init__(self, dec: "StaticCacheDecoder"):
        H, KV, D = dec.n_heads, dec.n_kv, dec.head_dim
        self.n_qk = (H + KV) * D
        self.rotate_half = rotate_half_matrix(D, dec.rotary_dim).to(dec.device)
        self.layers = [(layer.input_layernorm.weight, layer.self_attn.qkv_proj.weight, layer.self_attn.o_proj.weight.t(),
                        layer.post_attention_layernorm.weight, layer.mlp.gate_up_proj.weight,
                        layer.mlp.down_proj.weight.t(), layer.self_attn.scaling) for layer in dec.layers]
        self.intermediate = dec.layers[0].mlp.down_proj.weight.shape[1]
        # cos / sin over the whole head: 1 and 0 past the rotary dims (partial RoPE leaves them as they are)
        self.cos = torch.ones(dec.max_length, D, device=dec.device)
        self.sin = torch.zeros(dec.max_length, D, device=dec.device)
        self.cos[:, :dec.rotary_dim], self.sin[:, :dec.rotary_dim] = dec.cos, dec.sin
        self.embed, self.norm, self.head = dec.inner.embed_tokens.weight, dec.inner.norm.weight, dec.model.lm_head.weight
        self.hidden = self.embed.shape[1]

    @torch.no_grad()
    def __call__(self, dec: "StaticCacheDecoder", tokens: torch.Tensor) -> torch.Tensor:
        batch, pos, H, KV, D = tokens.shape[0], dec.length, dec.n_heads, dec.n_kv, dec.head_dim
        n_qk, inter, shape = self.n_qk, self.intermediate, (self.hidden,)
        cos, sin = self.cos[pos], self.sin[pos]
        h = F.embedding(tokens, self.embed)  # [B, hidden]: one position, so no sequence axis
        for i, (w_in, w_qkv, w_o_t, w_post, w_gate_up, w_down_t, scale) in enumerate(self.layers):
            qkv = F.linear(F.rms_norm(h, shape, w_in, dec.eps), w_qkv)
            qk = qkv[:, :n_qk].view(batch, H + KV, D)  # q and k heads side by side: one RoPE for both
            qk = torch.addcmul(qk * cos, qk @ self.rotate_half, sin)
            dec.keys[i, :, :, pos] = qk[:, H:]
            dec.values[i, :, :, pos] = qkv[:, n_qk:].view(batch, KV, D)
            out = F.scaled_dot_product_attention(qk[:, :H, None], dec.keys[i, :, :, :pos + 1],
                                                 dec.values[i, :, :, :pos + 1], scale=scale, enable_gqa=KV != H)
            h = torch.addmm(h, out.view(batch, H * D), w_o_t)  # residual add inside the product
            gate_up = F.linear(F.rms_norm(h, shape, w_post, dec.eps), w_gate_up)
            h = torch.addmm(h, F.silu(gate_up[:, :inter]) * gate_up[:, inter:], w_down_t)
        dec.length = pos + 1
        return F.linear(F.rms_norm(h, shape, self.norm, dec.eps), self.head)
