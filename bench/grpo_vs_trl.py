"""Our GRPO step vs TRL's GRPOTrainer at equal settings, side by side in one process.

Same model (the small profile's shape, or its trained base model when present), same prompts
per step and G, same completion length, reward (render + stand-in, scored in the same render pool's
workers for both), loss
type "grpo", beta 0.04, lr, temperature 1.0 with no top-k/top-p, one update per batch, fp32 on CPU.

    .venv/bin/python bench/grpo_vs_trl.py [--steps 6]
"""

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch


def paper_hf_tokenizer():
    """The paper vocabulary as a transformers tokenizer (WordLevel, whitespace), for TRL."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from smart_core.tokenizer import paper_tokenizer

    tok = Tokenizer(models.WordLevel(vocab=dict(paper_tokenizer().vocab), unk_token="PAD_None"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="PAD_None", bos_token="BOS_None", eos_token="EOS_None")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(os.cpu_count())

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer as TRLTrainer
    from transformers import TrainerCallback

    from smart_core.config import Config
    from smart_core.grpo import GRPOTrainer
    from smart_core.prompts import training_prompts
    from smart_core.model import build_model
    from smart_core.render_pool import RenderPool, RenderSettings
    from smart_core.reward import StandInScorer, scalar_reward
    from smart_core.runs import RunDir
    from smart_core.tokenizer import ids_to_score

    cfg = Config.from_profile("small", reward_backend="standin", steps=args.steps, checkpoint_every=10_000,
                              audio_every=10_000)
    tmp = tempfile.mkdtemp()
    model_dir = str(cfg.base_model_dir) if (cfg.base_model_dir / "config.json").exists() else None
    if model_dir is None:
        model_dir = f"{tmp}/model"
        build_model(cfg).save_pretrained(model_dir)
    scorer = StandInScorer()
    pool = RenderPool(RenderSettings.from_config(cfg), cfg.render_workers)
    pool.render([ids_to_score([1, 21, 408, 190, 358, 61, 129, 153]).dumps_midi()] * 2)  # workers up

    # ---- ours
    ours = GRPOTrainer(cfg, RunDir(f"{tmp}/ours"), model_dir, scorer=scorer, pool=pool)
    rows = [ours.step(s) for s in range(args.steps)]
    ours_times = [r["seconds_total"] for r in rows[1:]]
    stages = {k: np.mean([r[k] for r in rows[1:]]) for k in rows[0] if k.startswith("seconds_")}

    # ---- TRL
    tokenizer = paper_hf_tokenizer()
    prompt_text = [" ".join(tokenizer.convert_ids_to_tokens(list(p.ids)))
                   for s in range(args.steps) for p in training_prompts(cfg, s)[:: cfg.group_size]]

    def reward(prompts, completion_ids, **kwargs):
        midi = [ids_to_score(tokenizer.convert_tokens_to_ids(p.split()) + list(c)).dumps_midi()
                for p, c in zip(prompts, completion_ids)]
        # the same reward path as ours, at its fastest: rendered and scored in the pool's workers
        _, scores = pool.render_and_score(midi, scorer, keep_audio=False)
        r, _ = scalar_reward(scores, {"standin": 0.1})
        return r.tolist()

    step_times, trl_logs = [], []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.t0)

        def on_log(self, args_, state, control, logs=None, **k):
            if logs and "reward" in logs:
                trl_logs.append(logs)

    trl_cfg = GRPOConfig(output_dir=f"{tmp}/trl", max_steps=args.steps, per_device_train_batch_size=cfg.completions_per_step,
                         num_generations=cfg.group_size, max_completion_length=cfg.max_completion_tokens,
                         loss_type="grpo", beta=cfg.beta, epsilon=cfg.epsilon, learning_rate=cfg.lr,
                         lr_scheduler_type="linear", warmup_steps=0, num_iterations=1, temperature=1.0, top_k=0, top_p=1.0,
                         use_cpu=True, bf16=False, logging_steps=1, report_to="none", save_strategy="no",
                         max_grad_norm=cfg.grad_clip, seed=cfg.seed, disable_tqdm=True, dataloader_num_workers=0)
    from transformers import AutoModelForCausalLM

    trainer = TRLTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=reward, args=trl_cfg,
                         train_dataset=Dataset.from_dict({"prompt": prompt_text}), processing_class=tokenizer,
                         callbacks=[Timer()])
    trainer.train()
    pool.close()
    trl_times = step_times[1:]

    o, t = np.mean(ours_times), np.mean(trl_times)
    print(f"\n# GRPO step, small profile shape, {cfg.completions_per_step} completions x {cfg.max_completion_tokens} tokens, "
          f"{os.cpu_count()} CPU cores, {args.steps} steps (first dropped)\n")
    print("| stage | ours | baseline | ratio |\n|---|---|---|---|")
    print(f"| GRPO step | {o:.2f} s | TRL {__import__('trl').__version__} GRPOTrainer: {t:.2f} s | {t / o:.2f}x |")
    print("\nours per stage (s): " + ", ".join(f"{k[8:]} {v:.2f}" for k, v in stages.items()))
    print(f"mean reward ours {np.mean([r['reward_mean'] for r in rows]):.3f} vs TRL "
          f"{np.mean([l['reward'] for l in trl_logs]) if trl_logs else float('nan'):.3f}; "
          f"mean loss ours {np.mean([r['loss'] for r in rows]):.4f} vs TRL "
          f"{np.mean([l.get('loss', np.nan) for l in trl_logs]) if trl_logs else float('nan'):.4f}")


if __name__ == "__main__":
    main()
