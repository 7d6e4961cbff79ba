"""Command line: python -m smart_core <command> --profile small [key=value overrides]

  data        build the corpus                     pretrain    train or load the base model
  train       one GRPO run (--run smart|long|...), then its evaluation and diversity sweep; data-parallel
              under torchrun: torchrun --standalone --nproc_per_node N -m smart_core -- train ...
  figures     all figures from saved artifacts     reproduce   every notebook in order (papermill);
                                                               --beyond adds the ablations and notebook 05
  listen      serve a listening study              export      ratings of a study as CSV
  clean-runs  delete runs/ (keeps listening studies that hold ratings unless --delete-ratings)

Overrides (key=value, any Config field) always win over a profile's and a named run's presets.
A mistake you can fix prints one line and exits 2; --debug shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from .config import Config
from .errors import UserError

COMMANDS = ["data", "pretrain", "train", "figures", "reproduce", "listen", "export", "clean-runs"]


def refresh_readme(cfg: Config) -> None:
    """The README's generated results section of this profile, from figures/<profile> (if it has one)."""
    from pathlib import Path

    from .results import update_readme

    root = Path(__file__).resolve().parent.parent  # the repository: README and figures/ from one place
    readme = root / "README.md"
    if readme.exists() and Path.cwd().resolve() == root and update_readme(readme, cfg.profile, root / "figures" / cfg.profile):
        print(f"README.md: results section of profile {cfg.profile} regenerated from figures/{cfg.profile}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smart_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value (any Config field)")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--run", default="smart", help="named run for train")
    parser.add_argument("--force", action="store_true", help="reproduce: redo every step; data/pretrain: rebuild")
    parser.add_argument("--beyond", action="store_true",
                        help="reproduce: also the analyses beyond the paper (ablation runs, notebook 05: make beyond)")
    parser.add_argument("--study", help="listen/export: the study folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--out", help="export: CSV path; figures: folder")
    parser.add_argument("--runs-dir", default=None, help="clean-runs: the folder to clean (default: runs)")
    parser.add_argument("--delete-ratings", action="store_true",
                        help="clean-runs: also delete listening studies that hold human ratings")
    parser.add_argument("--stop-after-step", type=int, default=None,
                        help="train: stop after this step as if killed (to rehearse resuming)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # torchrun ... -m smart_core -- train ...: the separator reaches us
        argv = argv[1:]
    args = parser.parse_intermixed_args(argv)
    try:
        return run_command(args, parser)
    except UserError as err:
        if args.debug:
            raise
        from .distributed import world_from_env

        world = world_from_env()  # under torchrun, say which process failed (torchrun then stops the rest)
        print(f"{f'rank {world.rank}: ' if world.distributed else ''}error: {err}", file=sys.stderr)
        return 2


def run_command(args, parser) -> int:
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = Config.from_profile(args.profile).with_cli_overrides(overrides)

    if args.command == "data":
        from .data import build_corpus

        corpus = build_corpus(cfg, force=args.force)
        print(corpus.summary.to_string())
        print(corpus.skipped["reason"].value_counts().to_string() if len(corpus.skipped) else "no files skipped")
    elif args.command == "pretrain":
        from .data import build_corpus
        from .model import get_base_model

        _, asset = get_base_model(cfg, build_corpus(cfg), force=args.force)
        print(f"base model: {asset.repo_id or asset.path} ({asset.source})")
    elif args.command == "train":
        from .stages import training_stage

        if args.run not in cfg.runs and args.run not in cfg.all_runs() + cfg.ablation_runs():
            print(f"note: {args.run!r} is not one of the profile's runs ({', '.join(cfg.all_runs() + cfg.ablation_runs())}): it trains with "
                  "the profile's settings (a <run>_seed<N> name: that run's preset with seed N) and your overrides")
        if args.stop_after_step is not None:
            from .grpo import train

            train(cfg, args.run, stop_after_step=args.stop_after_step, progress=False)
            return 0
        result = training_stage(cfg, args.run)
        if "tuned_eval" in result:  # process 0 (the only one under torchrun that evaluates)
            print(result["run"].steps()[["step", "reward_mean", "kl", "seconds_total"]].tail().to_string())
    elif args.command == "figures":
        from .report import make_all

        made = make_all(cfg, args.out)
        print("made:", ", ".join(made) if made else "nothing (no saved artifacts for this profile)")
        if made and args.out is None:
            refresh_readme(cfg)
    elif args.command == "reproduce":
        from .pipeline import main_reproduce

        status = main_reproduce(cfg, args.force, beyond=args.beyond)
        if status == 0:
            refresh_readme(cfg)
        return status
    elif args.command == "clean-runs":
        from .runs import clean_runs

        clean_runs(args.runs_dir or cfg.runs_dir, delete_ratings=args.delete_ratings)
    elif args.command in ("listen", "export"):
        if not args.study:
            parser.error(f"{args.command} needs --study DIR")
        if args.command == "export":
            from .ratings import export_ratings

            out = args.out or f"{args.study}/ratings.csv"
            table = export_ratings(args.study, out)
            print(f"{len(table)} ratings -> {out}")
        else:
            from .listening_app import serve

            server = serve(args.study, args.host, args.port)
            print(f"listening study on http://{args.host}:{args.port}/  (Ctrl-C to stop)")
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
