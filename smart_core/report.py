"""Figures and tables of each notebook, computed from saved run artifacts only.

Notebooks call these after their compute cells; `make figures` calls `make_all`. Nothing here
trains or samples, so figures can always be regenerated from a run folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots
from .config import Config
from .runs import RunDir

RUN_ORDER = ("smart", "long", "long_beta0")


class MissingArtifact(FileNotFoundError):
    pass


def scorer_record(cfg: Config) -> dict:
    """What the profile's scorer was (reward.smart_core describe(): backend, axes, primary axis, axis
    labels and ranges), as saved by the stages; every figure and table takes its axes from here."""
    recorded = cfg.profile_dir / "reward.json"
    if recorded.exists():
        return json.loads(recorded.read_text())
    for name in RUN_ORDER:
        meta = cfg.profile_dir / name / "meta.json"
        if meta.exists():
            return json.loads(meta.read_text())["reward"]
    raise MissingArtifact(f"no scorer record in {cfg.profile_dir} (reward.json): run notebook 00 or 01 first")


def backend_of(cfg: Config) -> str:
    return scorer_record(cfg)["backend"]


def reward_axis(cfg: Config) -> str:
    return scorer_record(cfg)["primary_axis"]


def run_label(cfg: Config, name: str) -> str:
    r = cfg.runs.get(name, {})
    return f"{name}: {r.get('steps', cfg.steps)} steps, beta {r.get('beta', cfg.beta)}"


def out_dir(cfg: Config, figures_dir: str | Path | None) -> Path:
    return Path(figures_dir) if figures_dir else Path("figures") / cfg.profile


# ------------------------------------------------------------------------------------------------ 00


def base_model(cfg: Config, figures_dir=None) -> dict:
    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    summary = pd.read_csv(Path(cfg.corpus_dir) / "summary.csv")
    plots.save_table(summary, "corpus_summary", out, cfg.profile, backend)
    result = {"corpus": summary}
    card_path = cfg.base_model_dir / "model_card.json"
    if card_path.exists():
        result["model_card"] = json.loads(card_path.read_text())
        card = pd.DataFrame([{"field": k, "value": str(v)} for k, v in result["model_card"].items()])
        plots.save_table(card, "base_model_card", out, cfg.profile, backend)
    if cfg.base_model:  # resolved from a folder or the Hub: no pre-training here, so no loss curve
        result["pretrain"] = None
    else:
        history = pd.read_csv(cfg.base_model_dir / "history.csv")
        plots.save_figure(plots.loss_curve(history), "base_model_loss", out, cfg.profile, backend)
        result["pretrain"] = json.loads((cfg.base_model_dir / "pretrain_summary.json").read_text())
    samples_path = cfg.base_model_dir / "unconditional_samples.parquet"
    if samples_path.exists():
        samples = pd.read_parquet(samples_path)
        result["samples"] = {"n": len(samples), "fraction_with_notes": float((samples["n_notes"] > 0).mean()),
                             "mean_notes": float(samples["n_notes"].mean())}
        midis = [Path(p).read_bytes() for p in samples["midi_path"].head(4)]
        plots.save_figure(plots.pianorolls(midis, [f"sample {i}" for i in range(len(midis))]), "base_model_samples",
                          out, cfg.profile, backend)
    sf_path = cfg.profile_dir / "soundfonts.parquet"
    if sf_path.exists():
        table = pd.read_parquet(sf_path)
        plots.save_table(table, "soundfont_table", out, cfg.profile, backend)
        record = scorer_record(cfg)
        primary_range = record["axis_info"][record["primary_axis"]]["range"]
        axes = [a for a in record["axes"] if record["axis_info"][a]["range"] == primary_range]  # one y scale
        axes += ["average"] if "average" in table.columns else []
        plots.save_figure(plots.bar_table(table, "soundfont", axes, "Mean score of corpus pieces by SoundFont"),
                          "soundfont_table", out, cfg.profile, backend)
        result["soundfonts"] = table
    return result


# ------------------------------------------------------------------------------------------------ 01


def training(cfg: Config, run_name: str, figures_dir=None) -> dict:
    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    run = RunDir.for_run(cfg, run_name)
    steps, samples = run.steps(), run.samples()
    axis = reward_axis(cfg)
    plots.save_figure(plots.reward_scatter(samples, steps, axis, run_label(cfg, run_name),
                                           scorer_record(cfg)["axis_info"]), f"fig2_reward_scatter_{run_name}",
                      out, cfg.profile, backend)
    plots.save_figure(plots.training_curves(steps, run_label(cfg, run_name)), f"training_curves_{run_name}",
                      out, cfg.profile, backend)
    stage = steps[[c for c in steps.columns if c.startswith("seconds_")]].mean().rename("mean seconds per step")
    return {"steps": steps, "stage_seconds": stage}


# ------------------------------------------------------------------------------------------------ 02


def base_eval_folder(cfg: Config, run_name: str = "smart") -> Path:
    """The base model's evaluation that a run was compared with (recorded in its meta.json)."""
    meta = RunDir.for_run(cfg, run_name).path / "meta.json"
    name = json.loads(meta.read_text()).get("base_eval_dir") if meta.exists() else None
    folder = cfg.profile_dir / "eval" / Path(name).name if name else None  # a name: runs/ may have moved
    if folder is None or not (folder / "info.json").exists():
        raise MissingArtifact(f"run {run_name!r} has no base-model evaluation on record: run notebook 01 for it")
    return folder


def evaluation_tables(cfg: Config, run_name: str = "smart") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features + reward axes of the base and tuned evaluation sets (cached as parquet)."""
    from .features import features_table

    tables = []
    for folder in (base_eval_folder(cfg, run_name), RunDir.for_run(cfg, run_name).eval_dir("final")):
        cache = folder / "features.parquet"  # written by evaluate_model
        tables.append(pd.read_parquet(cache) if cache.exists() else
                      features_table(pd.read_parquet(folder / "samples.parquet")))
    return tables[0], tables[1]


def features(cfg: Config, figures_dir=None, run_name: str = "smart") -> dict:
    from .features import FEATURES, pooled_note_values
    from .stats import claims_table, compare

    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    base, tuned = evaluation_tables(cfg, run_name)
    record = scorer_record(cfg)
    axes = list(record["axes"])
    plots.save_figure(plots.axes_histograms(base, tuned, axes, record["axis_info"]), "fig3_reward_axes", out,
                      cfg.profile, backend)
    pooled_base = pooled_note_values(base["midi_path"])
    pooled_tuned = pooled_note_values(tuned["midi_path"])
    plots.save_figure(plots.feature_histograms(base, tuned, pooled_base, pooled_tuned), "fig4_features", out, cfg.profile, backend)
    measures = axes + [f for f in FEATURES if f not in ("n_tempo_changes", "n_time_signature_changes")]
    stats = compare(base, tuned, measures)
    plots.save_table(stats, "feature_statistics", out, cfg.profile, backend)
    claims = claims_table(stats, record["primary_axis"],
                          [a for a in record["paper_axes"] if a != record["primary_axis"]])
    plots.save_table(claims, "claims", out, cfg.profile, backend)
    return {"statistics": stats, "claims": claims, "n_base": len(base), "n_tuned": len(tuned)}


# ------------------------------------------------------------------------------------------------ 03


def diversity(cfg: Config, figures_dir=None) -> dict:
    from .diversity import average_pianoroll, diversity_report

    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    systems, numbers = {}, []
    base_table = pd.read_parquet(base_eval_folder(cfg) / "samples.parquet")
    entries = [("base", base_table)]
    for name in RUN_ORDER:
        path = RunDir.for_run(cfg, name).eval_dir("final") / "samples.parquet"
        if path.exists() and (path.parent / "info.json").exists():
            entries.append((run_label(cfg, name), pd.read_parquet(path)))
    for label, table in entries:
        midis = [Path(p).read_bytes() for p in table["midi_path"]]
        roll, used, dropped = average_pianoroll(midis)
        systems[label] = (table, roll, used, dropped)
        tokens = [list(p) + list(c) for p, c in zip(table["prompt_ids"], table["completion_ids"])]
        numbers.append({"system": label, "mean_reward": float(table["reward"].mean()), **diversity_report(tokens, midis),
                        "rolls_used": used, "rolls_dropped": dropped})
    plots.save_figure(plots.diversity_panels(systems, reward_axis(cfg), scorer_record(cfg)["axis_info"]),
                      "fig5_diversity_collapse", out, cfg.profile, backend)
    table = pd.DataFrame(numbers)
    plots.save_table(table, "diversity_metrics", out, cfg.profile, backend)
    sweeps = [pd.read_parquet(p) for p in sorted(cfg.profile_dir.glob("*/eval/diversity/sweep.parquet"))]
    result = {"metrics": table}
    if sweeps:
        sweep = pd.concat(sweeps, ignore_index=True)
        plots.save_figure(plots.diversity_curves(sweep), "diversity_along_training", out, cfg.profile, backend)
        plots.save_figure(plots.quality_diversity_frontier(sweep), "quality_diversity_frontier", out, cfg.profile, backend)
        plots.save_table(sweep.drop(columns=["model_sha256"], errors="ignore"), "diversity_sweep", out, cfg.profile, backend)
        result["sweep"] = sweep
    return result


# ------------------------------------------------------------------------------------------------ 04


def listening(cfg: Config, ratings: pd.DataFrame, simulated: bool, key: pd.DataFrame | None = None,
              figures_dir=None, n_sim: int = 100) -> dict:
    from .listening import analyze_ratings, power_curve, rating_reward_agreement

    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    tag = "SIMULATED " if simulated else ""
    result = analyze_ratings(ratings)
    mm = result["mixed_model"]
    rows = [{"quantity": f"mean rating {s}", "value": v["mean"], "ci_low": v["ci_low"], "ci_high": v["ci_high"], "p": np.nan}
            for s, v in result["systems"].items()]
    rows += [{"quantity": "Wilcoxon on participant mean differences", "value": result["wilcoxon"]["statistic"],
              "ci_low": np.nan, "ci_high": np.nan, "p": result["wilcoxon"]["p"]},
             {"quantity": "mixed model: tuned - base", "value": mm["effect"], "ci_low": mm["ci_low"], "ci_high": mm["ci_high"],
              "p": mm["p"]},
             {"quantity": "standardised effect", "value": result["standardised_effect"], "ci_low": np.nan, "ci_high": np.nan,
              "p": np.nan}]
    table = pd.DataFrame(rows)
    table.insert(0, "data", "SIMULATED" if simulated else "real ratings")
    name = "listening_statistics_SIMULATED" if simulated else "listening_statistics"
    plots.save_table(table, name, out, cfg.profile, backend)
    plots.save_figure(plots.listening_means(result, f"{tag}listening study ratings"), name.replace("statistics", "means"),
                      out, cfg.profile, backend)
    curve = power_curve(mm["effect"], mm["var_participant"], mm["var_prompt"], mm["var_residual"], n_sim=n_sim,
                        n_prompts=ratings["prompt"].nunique(), seed=cfg.seed)
    plots.save_figure(plots.power_plot(curve, f"{tag}power at the fitted effect"),
                      "listening_power_SIMULATED" if simulated else "listening_power", out, cfg.profile, backend)
    result["power"] = curve
    result["table"] = table
    if key is not None and not simulated:
        result["agreement"] = rating_reward_agreement(ratings, key, reward_axis(cfg))
    return result


GENERATED_SUFFIXES = (".png", ".pdf", ".csv", ".tex")
# the names this module writes (a figures folder may hold the user's own files too: those stay)
GENERATED_NAME = re.compile(r"(corpus_summary|base_model_\w+|soundfont_table|fig[2-5]_\w+|training_curves_\w+|"
                            r"feature_statistics|claims|diversity_\w+|quality_diversity_frontier|listening_\w+)")


def study_ratings(cfg: Config) -> tuple[pd.DataFrame, bool] | None:
    """(ratings, simulated) of the profile's study: real ratings from its database whenever it has
    any, else the simulated study that notebook 04 drew (ratings_used.csv), else None."""
    from .ratings import export_ratings

    study = cfg.profile_dir / "study"
    if not (study / "private" / "key.csv").exists():
        return None
    real = export_ratings(study)
    if not real.empty:
        return real, False
    used = study / "ratings_used.csv"
    if used.exists():
        ratings = pd.read_csv(used)
        if "simulated" in ratings and ratings["simulated"].all():
            return ratings, True
    return None


def make_all(cfg: Config, figures_dir=None) -> list[str]:
    """Regenerate every figure and table that the saved artifacts allow; returns what was made.

    The output folder is emptied of generated files first, so a figure whose artifacts are gone
    (a deleted evaluation, say) disappears instead of staying behind as a stale result."""
    out = out_dir(cfg, figures_dir)
    if out.is_dir():
        for f in out.iterdir():
            if f.is_file() and f.suffix in GENERATED_SUFFIXES and GENERATED_NAME.fullmatch(f.stem):
                f.unlink()
    made, missing = [], []

    def attempt(label, fn, *args):
        try:
            fn(cfg, *args)
            made.append(label)
        except (MissingArtifact, FileNotFoundError) as err:
            missing.append(f"{label}: {err}")

    if (cfg.profile_dir / "reward.json").exists():
        attempt("base_model", base_model, figures_dir)
    for name in RUN_ORDER:
        if RunDir.for_run(cfg, name).steps().shape[0]:
            attempt(f"training:{name}", training, name, figures_dir)
    if (RunDir.for_run(cfg, "smart").eval_dir("final") / "info.json").exists():
        attempt("features", features, figures_dir)
        attempt("diversity", diversity, figures_dir)
    study = study_ratings(cfg)
    if study is not None:
        key = pd.read_csv(cfg.profile_dir / "study" / "private" / "key.csv")
        attempt("listening", lambda c, *a: listening(c, study[0], study[1], key, figures_dir))
    for line in missing:
        print(f"skipped {line}")
    return made
