"""The base model: a Phi-3 causal LM over the paper's REMI vocabulary.

Load it from the Hub (`lucacasini/metamidipianophi3_4L`) or a local save_pretrained folder, or
pre-train our own on the corpus (random crops with BOS/EOS, PAD masked out of the loss, cosine
schedule, early stopping on validation loss, best checkpoint kept).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, Phi3Config, Phi3ForCausalLM

from .assets import resolve_base_model
from .config import Config
from .prompts import PRETRAIN_VALIDATION_BASE
from .errors import AssetUnavailable
from .runtime import autocast, resolve_device
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE

IGNORE_INDEX = -100


def build_model(cfg: Config) -> Phi3ForCausalLM:
    config = Phi3Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
    )
    torch.manual_seed(cfg.seed)
    return Phi3ForCausalLM(config)


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_pretrained(source: str | Path, device: torch.device | None = None) -> Phi3ForCausalLM:
    """A save_pretrained folder or a Hub id, resolved by smart_core.assets (explicit folder, the
    $SMART_BASE_MODEL folder, the HF cache, the Hub), then loaded by transformers from that folder.

    Offline and not cached, a Hub id fails within seconds with a message saying what to do."""
    return load_resolved(resolve_base_model(str(source)), device)


def load_resolved(asset, device: torch.device | None = None) -> Phi3ForCausalLM:
    try:
        model = AutoModelForCausalLM.from_pretrained(asset.path, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - safetensors' own error type derives from Exception only
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise AssetUnavailable(f"cannot load the model in {asset.path} ({type(err).__name__}: {first[:200]}); "
                               "the folder is incomplete or corrupt: copy or download it again") from None
    if model.config.vocab_size != VOCAB_SIZE:
        raise AssetUnavailable(f"{asset.repo_id or asset.path}: vocabulary of {model.config.vocab_size} tokens, "
                               f"the paper tokenizer has {VOCAB_SIZE}")
    return model.to(device or resolve_device())


def model_card(model, asset) -> dict:
    """What a base model is, for notebook 00 when it was not trained here: where it came from
    (id, revision, path, sha256 of the weights) and its shape."""
    c = model.config
    return {**asset.provenance(), "architecture": type(model).__name__, "layers": c.num_hidden_layers,
            "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size, "heads": c.num_attention_heads,
            "kv_heads": c.num_key_value_heads, "vocab_size": c.vocab_size, "max_positions": c.max_position_embeddings,
            "parameters": n_parameters(model)}


# ------------------------------------------------------------------------------------------------
# Pre-training


def random_crops(pieces: list[np.ndarray], batch: int, length: int, rng: np.random.Generator) -> torch.Tensor:
    """`batch` crops of `length` tokens from random pieces ([BOS] + tokens + [EOS]); PAD-filled."""
    out = np.full((batch, length), PAD_ID, dtype=np.int64)
    for row in range(batch):
        seq = pieces[rng.integers(len(pieces))]
        start = rng.integers(0, max(1, len(seq) - length + 1))
        crop = seq[start:start + length]
        out[row, : len(crop)] = crop
    return torch.from_numpy(out)


def lm_loss(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy, PAD positions excluded (the authors' collator counted them)."""
    labels = input_ids.clone()
    labels[labels == PAD_ID] = IGNORE_INDEX
    logits = model(input_ids=input_ids, attention_mask=(input_ids != PAD_ID).long()).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


def unigram_loss(train: list[np.ndarray], evaluation: torch.Tensor) -> float:
    """Cross-entropy (nats/token) of a token-frequency model fitted on train (add-one smoothing),
    on the same targets lm_loss scores."""
    counts = np.bincount(np.concatenate(train).astype(np.int64), minlength=VOCAB_SIZE) + 1.0
    logp = np.log(counts / counts.sum())
    targets = evaluation[:, 1:].numpy().ravel()
    targets = targets[targets != PAD_ID]
    return float(-logp[targets].mean())


def cosine_lr(step: int, cfg: Config) -> float:
    if step < cfg.pretrain_warmup:
        return cfg.pretrain_lr * (step + 1) / cfg.pretrain_warmup
    progress = (step - cfg.pretrain_warmup) / max(1, cfg.pretrain_steps - cfg.pretrain_warmup)
    return cfg.pretrain_min_lr + 0.5 * (cfg.pretrain_lr - cfg.pretrain_min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain(cfg: Config, corpus, out_dir: Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Train the base model on the corpus; keeps the best-validation checkpoint in out_dir.

    Returns the history (step, train_loss, val_loss, unigram_val_loss, lr, seconds), also saved as
    `history.csv` beside the model.
    """
    out_dir = Path(out_dir or cfg.base_model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_pieces, val_pieces = corpus.tokens("train"), corpus.tokens("val")
    val_batches = [random_crops(val_pieces, cfg.pretrain_batch, cfg.crop_tokens, np.random.default_rng(PRETRAIN_VALIDATION_BASE + i))
                   for i in range(cfg.pretrain_eval_batches)]
    unigram = float(np.mean([unigram_loss(train_pieces, b) for b in val_batches]))

    model = build_model(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.pretrain_weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.pretrain_lr)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad(), autocast(device, cfg.precision):
            losses = [lm_loss(model, b.to(device)).item() for b in val_batches]
        model.train()
        return float(np.mean(losses))

    history, best, since_best, t0 = [], float("inf"), 0, time.time()
    model.train()
    bar = tqdm(range(cfg.pretrain_steps), desc="pretrain", disable=not progress)
    for step in bar:
        lr = cosine_lr(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = random_crops(train_pieces, cfg.pretrain_batch, cfg.crop_tokens, rng).to(device)
        with autocast(device, cfg.precision):
            loss = lm_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        row = {"step": step + 1, "train_loss": loss.item(), "val_loss": np.nan,
               "unigram_val_loss": unigram, "lr": lr, "seconds": time.time() - t0}
        if (step + 1) % cfg.pretrain_eval_every == 0 or step + 1 == cfg.pretrain_steps:
            row["val_loss"] = evaluate()
            bar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}", unigram=f"{unigram:.3f}")
            if row["val_loss"] < best:
                best, since_best = row["val_loss"], 0
                model.save_pretrained(out_dir)
            else:
                since_best += 1
            if since_best >= cfg.pretrain_patience:
                history.append(row)
                break
        history.append(row)
    hist = pd.DataFrame(history)
    hist.to_csv(out_dir / "history.csv", index=False)
    (out_dir / "pretrain_summary.json").write_text(json.dumps(
        {"best_val_loss": best, "unigram_val_loss": unigram, "steps_run": int(hist["step"].max()),
         "parameters": n_parameters(model), "seconds": time.time() - t0, "device": str(device)}, indent=1))
    return hist


def get_base_model(cfg: Config, corpus=None, force: bool = False, progress: bool = True):
    """The base model for cfg: resolved and loaded if cfg.base_model is set, else trained (or reused)
    here. Returns (model, ResolvedAsset)."""
    device = resolve_device(cfg.device)
    if cfg.base_model:
        asset = resolve_base_model(cfg.base_model)
        return load_resolved(asset, device), asset
    out = cfg.base_model_dir
    stamp = out / "pretrain_config.json"
    wanted = {k: v for k, v in cfg.to_dict().items() if k.startswith(("pretrain_", "n_", "hidden", "intermediate",
                                                                       "max_positions", "crop", "corpus", "seed"))}
    if force or not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        if corpus is None:
            from .data import build_corpus

            corpus = build_corpus(cfg)
        pretrain(cfg, corpus, out, progress=progress)
        stamp.write_text(json.dumps(wanted, indent=1, sort_keys=True))
    asset = resolve_base_model(str(out))
    return load_resolved(asset, device), asset
