"""Steps per second of one GRPO run on 1 process and on N processes (torchrun; gloo on CPU, NCCL on
GPUs), same run, same seeds: the ratio is the speed-up of data parallelism on this machine.

The model is the small profile's shape with random weights (saved once to a temporary folder), the
reward the stand-in; each process renders with its share of the cores. The first step (start-up,
compilation of nothing, pool spawn) is left out of the mean.

    .venv/bin/python bench/ddp_scaling.py [--procs 2] [--steps 6] [--profile small]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def run(procs: int, folder: Path, model: Path, args) -> float:
    overrides = [f"runs_dir={folder / f'p{procs}'}", f"base_model={model}", "reward_backend=standin",
                 f"steps={args.steps}", f"checkpoint_every={args.steps}", f"audio_every={args.steps + 1}"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    cmd = [*launcher, "-m", "smart_core", "--", "train", "--profile", args.profile, "--run", "bench",
           "--stop-after-step", str(args.steps), *overrides]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    from smart_core.runs import RunDir

    steps = RunDir(folder / f"p{procs}" / args.profile / "bench").steps()
    return float(steps["seconds_total"].iloc[1:].mean())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--profile", default="small")
    args = parser.parse_args()
    from smart_core.config import Config
    from smart_core.model import build_model

    cfg = Config.from_profile(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_model(cfg).save_pretrained(folder / "model")
        one = run(1, folder, folder / "model", args)
        many = run(args.procs, folder, folder / "model", args)
    shape = f"{cfg.prompts_per_step} prompts x {cfg.group_size} x {cfg.max_completion_tokens} tokens"
    print(f"| GRPO step, {args.profile} shape ({shape}), {args.procs} processes | {many:.2f} s | "
          f"1 process: {one:.2f} s | {one / many:.2f}x |")


if __name__ == "__main__":
    main()
