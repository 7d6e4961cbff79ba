"""Command line: python -m smart_core <command> --profile small [key=value overrides]

  data       build the corpus                     pretrain   train or load the base model
  train      one GRPO run (--run smart|long|...)  evaluate   evaluation sets of base and a run
  figures    all figures from saved artifacts     reproduce  every notebook in order (papermill)
  listen     serve a listening study              export     ratings of a study as CSV
"""

from __future__ import annotations

import argparse
import sys

from .config import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smart_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["data", "pretrain", "train", "evaluate", "figures", "reproduce", "listen",
                                            "export"])
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value (values parsed as JSON)")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--run", default="smart", help="named run for train/evaluate")
    parser.add_argument("--force", action="store_true", help="reproduce: redo every step")
    parser.add_argument("--study", help="listen/export: the study folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--out", help="export: CSV path; figures: folder")
    args = parser.parse_intermixed_args(argv)

    cfg = Config.from_profile(args.profile).with_cli_overrides(args.overrides)
    if args.seed is not None:
        cfg = cfg.replace(seed=args.seed)

    if args.command == "data":
        from .data import build_corpus

        corpus = build_corpus(cfg, force=args.force)
        print(corpus.summary.to_string())
        print(corpus.skipped["reason"].value_counts().to_string() if len(corpus.skipped) else "no files skipped")
    elif args.command == "pretrain":
        from .data import build_corpus
        from .model import get_base_model

        _, source = get_base_model(cfg, build_corpus(cfg), force=args.force)
        print(f"base model: {source}")
    elif args.command == "train":
        from .stages import training_stage

        result = training_stage(cfg, args.run)
        print(result["run"].steps()[["step", "reward_mean", "kl", "seconds_total"]].tail().to_string())
    elif args.command == "evaluate":
        from .stages import training_stage

        training_stage(cfg, args.run)
    elif args.command == "figures":
        from .report import make_all

        made = make_all(cfg, args.out)
        print("made:", ", ".join(made) if made else "nothing (no saved artifacts for this profile)")
    elif args.command == "reproduce":
        from .pipeline import main_reproduce

        return main_reproduce(cfg, args.force)
    elif args.command in ("listen", "export"):
        if not args.study:
            parser.error(f"{args.command} needs --study DIR")
        if args.command == "export":
            from .listening import export_ratings

            table = export_ratings(args.study, args.out or f"{args.study}/ratings.csv")
            print(f"{len(table)} ratings -> {args.out or args.study + '/ratings.csv'}")
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
