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
from .config import ABLATION_PREFIX, Config
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
    run = cfg.for_run(name)
    return f"{name}: {run.steps} steps, beta {run.beta}"


def seeds_text(cfg: Config, run_names) -> str:
    """The seeds of these runs, for a stamp: "0" or "0,1,2" (each seed once, in order)."""
    return ",".join(dict.fromkeys(str(cfg.for_run(name).seed) for name in run_names))


def out_dir(cfg: Config, figures_dir: str | Path | None) -> Path:
    return Path(figures_dir) if figures_dir else Path("figures") / cfg.profile


# ------------------------------------------------------------------------------------------------ 00


def base_model(cfg: Config, figures_dir=None) -> dict:
    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    summary = pd.read_csv(Path(cfg.corpus_dir) / "summary.csv")
    plots.save_table(summary, "corpus_summary", out, cfg.profile, backend, seeds=str(cfg.seed))
    result = {"corpus": summary}
    card_path = cfg.base_model_dir / "model_card.json"
    if card_path.exists():
        result["model_card"] = json.loads(card_path.read_text())
        card = pd.DataFrame([{"field": k, "value": str(v)} for k, v in result["model_card"].items()])
        plots.save_table(card, "base_model_card", out, cfg.profile, backend, seeds=str(cfg.seed))
    if cfg.base_model:  # resolved from a folder or the Hub: no pre-training here, so no loss curve
        result["pretrain"] = None
    else:
        history = pd.read_csv(cfg.base_model_dir / "history.csv")
        plots.save_figure(plots.loss_curve(history), "base_model_loss", out, cfg.profile, backend, str(cfg.seed))
        result["pretrain"] = json.loads((cfg.base_model_dir / "pretrain_summary.json").read_text())
    samples_path = cfg.base_model_dir / "unconditional_samples.parquet"
    if samples_path.exists():
        samples = pd.read_parquet(samples_path)
        result["samples"] = {"n": len(samples), "fraction_with_notes": float((samples["n_notes"] > 0).mean()),
                             "mean_notes": float(samples["n_notes"].mean())}
        midis = [Path(p).read_bytes() for p in samples["midi_path"].head(4)]
        plots.save_figure(plots.pianorolls(midis, [f"sample {i}" for i in range(len(midis))]), "base_model_samples",
                          out, cfg.profile, backend, str(cfg.seed))
    sf_path = cfg.profile_dir / "soundfonts.parquet"
    if sf_path.exists():
        table = pd.read_parquet(sf_path)
        plots.save_table(table, "soundfont_table", out, cfg.profile, backend, seeds=str(cfg.seed))
        record = scorer_record(cfg)
        primary_range = record["axis_info"][record["primary_axis"]]["range"]
        axes = [a for a in record["axes"] if record["axis_info"][a]["range"] == primary_range]  # one y scale
        axes += ["average"] if "average" in table.columns else []
        plots.save_figure(plots.bar_table(table, "soundfont", axes, "Mean score of corpus pieces by SoundFont"),
                          "soundfont_table", out, cfg.profile, backend, str(cfg.seed))
        result["soundfonts"] = table
    return result


# ------------------------------------------------------------------------------------------------ 01


def training(cfg: Config, run_name: str, figures_dir=None) -> dict:
    """Figure 2 (every training sample's reward) for a run at the profile's seed, and the training
    curves of its run family: a replicated run's curves show the mean and a 95% interval over the
    replicates logged so far (each replicate's notebook remakes them)."""
    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    family = cfg.replicate_runs() if run_name in cfg.replicate_runs() else [run_name]
    main = family[0]
    logs = {name: RunDir.for_run(cfg, name).steps() for name in family}  # each log read once
    steps = logs[run_name]
    stage = steps[[c for c in steps.columns if c.startswith("seconds_")]].mean().rename("mean seconds per step")
    if run_name.startswith(ABLATION_PREFIX):  # the ablations' curves are one figure of notebook 05 (ablations_training)
        return {"steps": steps, "stage_seconds": stage, "figures": []}
    figures = []
    if run_name == main:
        samples = RunDir.for_run(cfg, main).samples()
        plots.save_figure(plots.reward_scatter(samples, steps, reward_axis(cfg), run_label(cfg, main),
                                               scorer_record(cfg)["axis_info"]), f"fig2_reward_scatter_{main}",
                          out, cfg.profile, backend, seeds_text(cfg, [main]))
        figures.append(f"fig2_reward_scatter_{main}")
    logged = [name for name in family if len(logs[name])]
    curves = pd.concat([logs[name].assign(seed=cfg.for_run(name).seed) for name in logged], ignore_index=True)
    plots.save_figure(plots.training_curves(curves, run_label(cfg, main)), f"training_curves_{main}", out,
                      cfg.profile, backend, seeds_text(cfg, logged))
    figures.append(f"training_curves_{main}")
    return {"steps": steps, "stage_seconds": stage, "figures": figures}


def training_summary(cfg: Config) -> pd.DataFrame:
    """One row per trained run (replicates included, with their seed): reward over the first and
    last 5 steps, KL over the last 5, and the evaluation sets' mean reward (base and tuned)."""
    rows = []
    for name in cfg.all_runs():
        run = RunDir.for_run(cfg, name)
        steps = run.steps()
        if steps.empty:
            continue
        run_cfg = cfg.for_run(name)
        row = {"run": name, "seed": run_cfg.seed, "steps": run_cfg.steps, "beta": run_cfg.beta,
               "steps_logged": len(steps), "reward_first5": steps["reward_mean"].head(5).mean(),
               "reward_last5": steps["reward_mean"].tail(5).mean(),
               "kl_last5": steps["kl"].dropna().tail(5).mean() if "kl" in steps else np.nan}
        final = run.eval_dir("final")
        if (final / "info.json").exists():
            row["eval_reward_tuned"] = pd.read_parquet(final / "samples.parquet")["reward"].mean()
            try:
                row["eval_reward_base"] = pd.read_parquet(base_eval_folder(cfg, name) / "samples.parquet")["reward"].mean()
            except MissingArtifact:
                pass
        rows.append(row)
    return pd.DataFrame(rows)


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


def paired_evaluations(cfg: Config) -> tuple[list[tuple[int, pd.DataFrame, pd.DataFrame]], list[str]]:
    """(seed, base, tuned) evaluation tables (features included) of the replicated run and every
    replicate whose evaluation exists, and the names of those runs."""
    from .features import add_per_second

    pairs, names = [], []
    for name in cfg.replicate_runs():
        if not (RunDir.for_run(cfg, name).eval_dir("final") / "info.json").exists():
            continue
        base, tuned = evaluation_tables(cfg, name)
        pairs.append((cfg.for_run(name).seed, add_per_second(base), add_per_second(tuned)))
        names.append(name)
    if not pairs:
        raise MissingArtifact(f"no evaluation of {cfg.replicate_runs()[0]!r}: run notebook 01 for it")
    return pairs, names


def _tests_named(table: pd.DataFrame) -> str:
    """The test(s) a statistics table used, from its `test` column, for the table's caption."""
    return " / ".join(dict.fromkeys(table["test"].astype(str))) if "test" in table else "test not recorded"


def features(cfg: Config, figures_dir=None) -> dict:
    """Figures 3 and 4 (base vs tuned, pooled over seeds), paired statistics for every axis and
    feature, the claims table with computed verdicts, the training summary, and the generated
    discussion of the claims (Markdown for the README, LaTeX for paper/)."""
    from .features import FEATURES, PER_SECOND_FEATURES, pooled_note_values
    from .results import join_words, write_discussion
    from .stats import PER_SECOND, budget_note, claims_table, compare_paired

    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    pairs, names = paired_evaluations(cfg)
    seeds = seeds_text(cfg, names)
    base = pd.concat([b.assign(seed=s) for s, b, _ in pairs], ignore_index=True)
    tuned = pd.concat([t.assign(seed=s) for s, _, t in pairs], ignore_index=True)
    record = scorer_record(cfg)
    axes = list(record["axes"])
    plots.save_figure(plots.axes_histograms(base, tuned, axes, record["axis_info"]), "fig3_reward_axes", out,
                      cfg.profile, backend, seeds)
    pooled_base = pooled_note_values(base["midi_path"])
    pooled_tuned = pooled_note_values(tuned["midi_path"])
    plots.save_figure(plots.feature_histograms(base, tuned, pooled_base, pooled_tuned), "fig4_features", out,
                      cfg.profile, backend, seeds)
    measures = axes + [f for f in FEATURES if f not in ("n_tempo_changes", "n_time_signature_changes")] \
        + list(PER_SECOND_FEATURES)
    stats = compare_paired(pairs, measures, seed=cfg.seed)
    plots.save_table(stats, "feature_statistics", out, cfg.profile, backend, seeds=seeds, latex_columns={
        "measure": "measure", "n_pairs": "pairs", "median_base": "base", "median_tuned": "tuned",
        "median_difference": "median diff.", "rank_biserial": "effect", "effect_ci_low": "CI low",
        "effect_ci_high": "CI high", "p_adjusted": "p (Holm)", "seeds_in_direction": "seeds"},
        caption=f"{_tests_named(stats)}; p adjusted over the table's {len(stats)} measures; effect: matched-pairs "
                "rank-biserial correlation, 95% bootstrap CI (pairs resampled within seeds).")
    budget = budget_note(float(base["truncated"].mean()), float(tuned["truncated"].mean()),
                         cfg.max_completion_tokens, Config.from_profile("paper").max_completion_tokens) \
        if "truncated" in base and "truncated" in tuned else ""
    claims = claims_table(stats, record["primary_axis"],
                          [a for a in record["paper_axes"] if a != record["primary_axis"]], budget=budget)
    plots.save_table(claims, "claims", out, cfg.profile, backend, seeds=seeds, latex_columns={
        "claim": "claim", "median_base": "base", "median_tuned": "tuned", "effect": "effect", "effect_ci": "95% CI",
        "p_adjusted": "p (Holm)", "seeds_in_direction": "seeds", "verdict": "verdict",
        "per_second_verdict": "per second"},
        caption="" if claims.empty else
        (f"{_tests_named(claims)}; p adjusted over the claims' own {int(claims['holm_family'].iloc[0])} tests "
         "(each claim's measure and its per-second rate), a smaller family than the feature table's, so the same "
         "measure's p can be smaller here. Why each verdict: claims.csv."))
    missing = [name for name in cfg.replicate_runs() if name not in names]
    replicates = (f"Replicates: {len(names)} of {cfg.replicates} seeds evaluated ({seeds})"
                  + (f"; missing {', '.join(missing)} (not trained or not evaluated yet)." if missing else "."))
    if missing:
        print(f"note: {replicates}")
    counts = [] if claims.empty else list(claims.loc[claims["measure"].isin(list(PER_SECOND)), "claim"])
    quoted = [f'"{c}"' for c in counts]
    budget_sentence = [f"On {join_words(quoted)}: {budget}."] if budget and counts else []
    write_discussion(claims, out, plots.stamp_text(cfg.profile, backend, seeds), budget_sentence + [replicates])
    summary = training_summary(cfg)
    if not summary.empty:
        plots.save_table(summary, "training_summary", out, cfg.profile, backend,
                         seeds=",".join(str(s) for s in sorted(set(summary["seed"]))),
                         latex_columns=[c for c in summary.columns if c != "steps_logged"])
    return {"statistics": stats, "claims": claims, "n_base": len(base), "n_tuned": len(tuned), "seeds": seeds,
            "training_summary": summary}


# ------------------------------------------------------------------------------------------------ 03


def diversity(cfg: Config, figures_dir=None) -> dict:
    """Figure 5 and the diversity table: base and every run's final evaluation. Every system is
    described by the same number n of outputs (the smallest evaluation set's; the first n of a
    larger one), so its average roll, reward histogram and set metrics (distinct-n, Vendi: they grow
    with the set's size) compare across columns; metrics come with 95% bootstrap intervals."""
    from .diversity import average_pianoroll, diversity_report

    def with_intervals(table: pd.DataFrame, first: list[str], metrics: list[str]) -> dict[str, str]:
        """LaTeX columns: `first`, then each metric with its interval columns where the table has them."""
        columns = {c: c for c in first}
        for m in (m for m in metrics if m in table.columns):
            columns[m] = m
            if f"{m}_ci_low" in table.columns:
                columns.update({f"{m}_ci_low": "CI low", f"{m}_ci_high": "CI high"})
        return columns

    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    seeds = str(cfg.seed)  # the runs' final evaluations and sweeps at the profile's seed
    systems, numbers = {}, []
    base_table = pd.read_parquet(base_eval_folder(cfg) / "samples.parquet")
    entries = [("base", base_table)]
    for name in RUN_ORDER:
        path = RunDir.for_run(cfg, name).eval_dir("final") / "samples.parquet"
        if path.exists() and (path.parent / "info.json").exists():
            entries.append((run_label(cfg, name), pd.read_parquet(path)))
    n = min(len(table) for _, table in entries)
    note = ("" if all(len(table) == n for _, table in entries) else
            f"every column: the first {n} outputs (systems have " + ", ".join(str(len(t)) for _, t in entries) + ")")
    for label, full in entries:
        table = full.head(n)
        midis = [Path(p).read_bytes() for p in table["midi_path"]]
        roll, averaged = average_pianoroll(midis)
        systems[label] = (table, roll, averaged)
        tokens = [list(p) + list(c) for p, c in zip(table["prompt_ids"], table["completion_ids"])]
        numbers.append({"system": label, "n": averaged, "n_outputs": len(full), "mean_reward": float(table["reward"].mean()),
                        **diversity_report(tokens, midis, n_boot=cfg.diversity_bootstrap, seed=cfg.seed)})
    plots.save_figure(plots.diversity_panels(systems, reward_axis(cfg), scorer_record(cfg)["axis_info"], note=note),
                      "fig5_diversity_collapse", out, cfg.profile, backend, seeds)
    table = pd.DataFrame(numbers)
    # the CSV has every metric with its interval; the LaTeX the main ones (intervals as CI low / high)
    plots.save_table(table, "diversity_metrics", out, cfg.profile, backend, seeds=seeds,
                     latex_columns=with_intervals(table, ["system", "n", "mean_reward"],
                                                  ["distinct_4", "pairwise_distance", "vendi"]))
    # the named runs' sweeps only (a folder of another or an older run is not this profile's result)
    sweeps = [pd.read_parquet(p) for p in (RunDir.for_run(cfg, name).eval_dir("diversity") / "sweep.parquet"
                                           for name in cfg.runs) if p.exists()]
    result = {"metrics": table}
    if sweeps:
        sweep = pd.concat(sweeps, ignore_index=True)
        plots.save_figure(plots.diversity_curves(sweep), "diversity_along_training", out, cfg.profile, backend, seeds)
        plots.save_figure(plots.quality_diversity_frontier(sweep), "quality_diversity_frontier", out, cfg.profile, backend, seeds)
        sweep_table = sweep.drop(columns=["model_sha256"], errors="ignore")
        plots.save_table(sweep_table, "diversity_sweep", out, cfg.profile, backend, seeds=seeds,
                         latex_columns=with_intervals(sweep_table, ["run", "step", "reward_mean"],
                                                      ["vendi", "distinct_4", "prompt_dependence"]))
        result["sweep"] = sweep
    return result


# ------------------------------------------------------------------------------------------------ 04


POWER_EFFECTS = (0.25, 0.5, 0.8)  # stated effects (tuned - base, rating points) of the power simulation
POWER_PARTICIPANTS = (6, 10, 14, 20, 30, 40)


def power_settings(cfg: Config, n_sim=None, effects=None, participants=None) -> tuple[int, list, list]:
    """The power simulation's settings: those given (notebook 04's parameters), which are then kept
    in the study folder, else the ones kept there by the last notebook run, else the defaults; so
    `make figures` redraws the power table with the settings the notebook used, not others."""
    path = cfg.profile_dir / "study" / "power_settings.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    settings = {"n_sim": n_sim if n_sim is not None else kept.get("n_sim", cfg.power_simulations),
                "effects": list(effects) if effects is not None else kept.get("effects", list(POWER_EFFECTS)),
                "participants": list(participants) if participants is not None else
                kept.get("participants", list(POWER_PARTICIPANTS))}
    if settings != kept and path.parent.exists():
        path.write_text(json.dumps(settings, indent=1))
    return settings["n_sim"], settings["effects"], settings["participants"]


def listening(cfg: Config, ratings: pd.DataFrame, simulated: bool, key: pd.DataFrame | None = None,
              figures_dir=None, n_sim: int | None = None, power_effects=None, power_participants=None,
              alpha: float = 0.05) -> dict:
    """Statistics table (means, Wilcoxon, the mixed model with the random-effects structure it
    used), power by simulation at the STATED effects (not the observed one) with its Monte Carlo
    interval, and the stimuli's filter pass counts per system (from `key`). Everything computed
    from simulated ratings is named and marked SIMULATED."""
    from .listening import (SimulatedStudy, analyze_ratings, filter_pass_table, power_at_effects,
                            rating_reward_agreement)

    out, backend = out_dir(cfg, figures_dir), backend_of(cfg)
    n_sim, power_effects, power_participants = power_settings(cfg, n_sim, power_effects, power_participants)
    tag = "SIMULATED " if simulated else ""
    suffix = "_SIMULATED" if simulated else ""
    result = analyze_ratings(ratings)
    mm = result["mixed_model"]
    model_note = f"structure: {mm['structure']}" + (f" (fell back: {mm['fallback_reason']})" if mm["fallback_reason"] else "")
    nan = {"ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "note": ""}
    rows = [{**nan, "quantity": f"mean rating {s}", "value": v["mean"], "ci_low": v["ci_low"], "ci_high": v["ci_high"]}
            for s, v in result["systems"].items()]
    rows += [{**nan, "quantity": "Wilcoxon on participant mean differences", "value": result["wilcoxon"]["statistic"],
              "p": result["wilcoxon"]["p"], "note": f"{result['wilcoxon']['n_participants']} participants"},
             {"quantity": "mixed model: tuned - base", "value": mm["effect"], "ci_low": mm["ci_low"], "ci_high": mm["ci_high"],
              "p": mm["p"], "note": model_note}]
    rows += [{**nan, "quantity": f"mixed model variance: {label}", "value": mm[f"var_{name}"],
              "note": "" if name == "residual" or name in mm["components"] else "not in the structure used"}
             for name, label in (("participant", "participant intercept"), ("participant_slope", "participant slope"),
                                 ("prompt", "prompt intercept"), ("prompt_slope", "prompt slope"), ("residual", "residual"))]
    rows += [{**nan, "quantity": "standardised effect", "value": result["standardised_effect"]}]
    table = pd.DataFrame(rows)[["quantity", "value", "ci_low", "ci_high", "p", "note"]]
    table.insert(0, "data", "SIMULATED" if simulated else "real ratings")
    name = f"listening_statistics{suffix}"
    plots.save_table(table, name, out, cfg.profile, backend, seeds=str(cfg.seed))
    plots.save_figure(plots.listening_means(result, f"{tag}listening study ratings"), f"listening_means{suffix}",
                      out, cfg.profile, backend, str(cfg.seed))
    # power at stated effects; the generative model has the fitted variance components (none of
    # the fitted effect) and the study's prompts
    base_mean = result["systems"]["base"]["mean"]
    generative = SimulatedStudy.from_mixed_model(mm, n_prompts=int(ratings["prompt"].nunique()),
                                                 grand_mean=base_mean if np.isfinite(base_mean) else 5.5)
    # effect 0 is run too: its "power" is the test's false-positive rate under this model
    effects = [0.0] + [float(e) for e in power_effects if float(e) != 0.0]
    curve = power_at_effects(effects, list(power_participants), generative, n_sim=n_sim, alpha=alpha, seed=cfg.seed)
    sds = ", ".join(f"{k} {getattr(generative, 'sd_' + k):.2f}" for k in
                    ("participant", "prompt", "participant_slope", "prompt_slope", "residual"))
    curve.insert(0, "data", "SIMULATED" if simulated else "real ratings")
    curve["generative model"] = (f"SimulatedStudy, SDs fitted to the {'SIMULATED' if simulated else 'real'} ratings "
                                 f"({sds}), {generative.n_prompts} prompts")
    power_name = f"listening_power{suffix}"
    plots.save_table(curve, power_name, out, cfg.profile, backend, seeds=str(cfg.seed))
    n_now = int(ratings["participant"].nunique())
    plots.save_figure(plots.power_plot(curve, f"{'SIMULATED ratings: ' if simulated else ''}simulated power at stated effects",
                                      participants_now=n_now),
                      power_name, out, cfg.profile, backend, seeds=str(cfg.seed))
    result["power"] = curve
    result["table"] = table
    if key is not None:
        filters = filter_pass_table(key, cfg.listening_max_attempts)
        plots.save_table(filters, "listening_filters", out, cfg.profile, backend, seeds=str(cfg.seed))
        result["filters"] = filters
    if key is not None and not simulated:
        result["agreement"] = rating_reward_agreement(ratings, key, reward_axis(cfg))
    return result


# ------------------------------------------------------------------------------------------------ 05


class RecordedScorer:
    """A scorer's saved record (reward.json) in the scorer's place where only its identity counts:
    the cache keys of notebook 05's artifacts, which report functions check but never recompute."""

    def __init__(self, record: dict):
        self.record, self.name, self.axes = record, record["backend"], list(record["axes"])
        self.primary_axis = record["primary_axis"]

    def describe(self) -> dict:
        return self.record


def interval_text(df: pd.DataFrame, metric: str) -> list[str]:
    """"[low, high]" per row from `<metric>_ci_low/high` (3 significant digits), for LaTeX and Markdown."""
    from .results import bracket

    return [bracket(lo, hi) for lo, hi in zip(df[f"{metric}_ci_low"].astype(float), df[f"{metric}_ci_high"].astype(float))]


def final_evaluations(cfg: Config, names) -> dict[str, pd.DataFrame]:
    """run name -> its final evaluation table, for the runs that have a complete one made with the
    config asked for now (a run folder holding another config, e.g. an ablation variant changed since,
    is left out with a note: its numbers would be labelled with settings it did not have)."""
    out = {}
    for name in names:
        run = RunDir.for_run(cfg, name)
        folder = run.eval_dir("final")
        if not (folder / "info.json").exists():
            continue
        stored = run.path / "config.json"
        differs = Config.load(stored).differences(cfg.for_run(name)) if stored.exists() else {}
        if differs:
            print(f"note: {name} left out: its folder holds another config ({', '.join(list(differs)[:4])}); "
                  "retrain it under another name or delete the folder")
            continue
        out[name] = pd.read_parquet(folder / "samples.parquet")
    return out


def beyond(cfg: Config, figures_dir=None) -> dict:
    """Notebook 05's figures and tables, from saved artifacts: best-of-N against the tuned runs,
    reward transfer to the unheard SoundFonts, the ablations on the quality-diversity frontier, and
    the three answers in sentences (beyond_discussion.md / .tex). Each part is made when its
    artifacts exist and match what they were made from; MissingArtifact when none does."""
    from . import ablations, best_of_n, transfer
    from .results import write_beyond_discussion

    out, backend, record = out_dir(cfg, figures_dir), backend_of(cfg), scorer_record(cfg)
    scorer, seeds = RecordedScorer(record), str(cfg.seed)
    result = {}
    # every run an analysis below reads, each read (and checked against its config) once
    evaluations = final_evaluations(cfg, list(dict.fromkeys(list(RUN_ORDER) + cfg.replicate_runs() + cfg.ablation_runs())))

    draws = best_of_n.load_pool(cfg, scorer)
    if draws is not None:
        tuned = {run_label(cfg, name): (evaluations[name], cfg.for_run(name).steps * cfg.for_run(name).completions_per_step)
                 for name in RUN_ORDER if name in evaluations}
        table = best_of_n.best_of_n_table(cfg, draws, tuned)
        for metric in ("mean_reward", "pairwise_distance", "vendi"):
            table[f"{metric}_ci"] = interval_text(table, metric)
        plots.save_table(table, "best_of_n", out, cfg.profile, backend, seeds=seeds, latex_columns={
            "system": "system", "reward_evaluations": "reward evaluations", "mean_reward": "mean reward",
            "mean_reward_ci": "95% CI", "pairwise_distance": "pairwise dist.", "pairwise_distance_ci": "95% CI",
            "vendi": "Vendi", "vendi_ci": "95% CI"})
        plots.save_figure(plots.best_of_n_plot(table, f"mean reward ({reward_axis(cfg)} / 10)"), "best_of_n", out,
                          cfg.profile, backend, seeds)
        result["best_of_n"] = table

    loaded = transfer.load_scores(cfg, scorer)
    scores, cross_record = loaded if loaded is not None else (None, None)
    if scores is not None and len(scores):
        meta = {"prompt", "run", "seed", "system", "soundfont", "scorer", "output"}
        axes_of = {name: [c for c in part.columns if c not in meta and part[c].notna().any()]
                   for name, part in scores.groupby("scorer")}
        table = transfer.transfer_table(scores, transfer.training_font_name(cfg), record["backend"],
                                        record["primary_axis"], axes_of, seed=cfg.seed)
        table["difference_ci"] = interval_text(table, "difference")
        shown = table["training_reward_axis"] | (table["scorer_role"] == "cross-scored")
        plots.save_table(table, "reward_transfer", out, cfg.profile, backend, seeds=seeds_text(cfg, cfg.all_runs()),
                         latex_rows=shown, latex_columns={
                             "run": "run", "soundfont": "soundfont", "scorer": "scorer", "axis": "axis",
                             "n_pairs": "pairs", "median_difference": "median diff.", "difference_ci": "95% CI",
                             "gain_retained": "share kept", "p_adjusted": "p (Holm)", "seeds_in_direction": "seeds",
                             "verdict": "verdict"})
        plots.save_figure(plots.transfer_plot(table, record["backend"], record["primary_axis"]), "reward_transfer", out,
                          cfg.profile, backend, seeds_text(cfg, cfg.all_runs()))
        result["reward_transfer"] = table
        result["cross_note"] = ("" if cross_record is not None else "cross_score_limit is 0" if not cfg.cross_score_limit
                                else "Audiobox's weights were not available offline when notebook 05 ran"
                                if record["backend"] == "standin" else "no second judge was loaded")

    baseline = cfg.ablation_baseline()
    variants = [name for name in cfg.ablation_runs() if name in evaluations and name != baseline]
    if baseline in evaluations and variants:
        base = pd.read_parquet(base_eval_folder(cfg, baseline) / "samples.parquet")
        compared = {name: evaluations[name] for name in list(RUN_ORDER) + cfg.ablation_runs() if name in evaluations}
        table = ablations.ablation_table(cfg, base, compared)
        against_long = "reward_vs_long" in table
        for metric in ("mean_reward", "reward_vs_baseline", "pairwise_distance_vs_base", "vendi_vs_base") \
                + (("reward_vs_long",) if against_long else ()):
            table[f"{metric}_ci"] = interval_text(table, metric)
        plots.save_table(table, "ablations", out, cfg.profile, backend, seeds=seeds, latex_columns={
            "system": "system", "mean_reward": "reward", "mean_reward_ci": "95% CI",
            "reward_vs_baseline": f"vs {baseline}", "reward_vs_baseline_ci": "95% CI",
            "pairwise_distance_vs_base": "dist. vs base", "pairwise_distance_vs_base_ci": "95% CI",
            "vendi_vs_base": "Vendi vs base", "vendi_vs_base_ci": "95% CI",
            "reaches_baseline_reward": "reaches", "keeps_base_diversity": "keeps",
            **({"reaches_long_reward": "reaches long"} if against_long else {})})
        plots.save_figure(plots.ablation_frontier(table, result.get("best_of_n")), "ablations_frontier", out,
                          cfg.profile, backend, seeds)
        logs = {name: RunDir.for_run(cfg, name).steps() for name in [baseline] + variants}
        plots.save_figure(plots.ablation_curves(logs, baseline), "ablations_training", out, cfg.profile, backend, seeds)
        result["ablations"] = table
        result["answer"] = ablations.answer(table, cfg.ablation_runs())
        # how far training seeds alone spread a run
        means = [evaluations[n]["reward"].mean() for n in cfg.replicate_runs() if n in evaluations]
        result["seed_spread"] = {"run": cfg.replicate_runs()[0], "n": len(means), "low": min(means, default=np.nan),
                                 "high": max(means, default=np.nan)}

    if not result:
        raise MissingArtifact(f"nothing of notebook 05 in {cfg.profile_dir} (or made from other inputs): run make beyond")
    write_beyond_discussion(result, cfg, out, plots.stamp_text(cfg.profile, backend, seeds_text(cfg, cfg.all_runs())))
    return result


GENERATED_SUFFIXES = (".png", ".pdf", ".csv", ".tex", ".md")  # .md: the discussions only (see make_all)
# the names this module writes (a figures folder may hold the user's own files too: those stay)
GENERATED_NAME = re.compile(r"(corpus_summary|base_model_\w+|soundfont_table|fig[2-5]_\w+|training_curves_\w+|"
                            r"training_summary|feature_statistics|claims|claims_discussion|diversity_\w+|"
                            r"quality_diversity_frontier|listening_\w+|best_of_n|reward_transfer|ablations\w*|"
                            r"beyond_discussion)")
DISCUSSIONS = ("claims_discussion", "beyond_discussion")


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
            if f.is_file() and f.suffix in GENERATED_SUFFIXES and GENERATED_NAME.fullmatch(f.stem) \
                    and (f.suffix != ".md" or f.stem in DISCUSSIONS):
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
    if (cfg.profile_dir / "beyond").is_dir() or any(RunDir.for_run(cfg, n).path.exists() for n in cfg.ablation_runs()):
        attempt("beyond", beyond, figures_dir)
    study = study_ratings(cfg)
    if study is not None:
        key = pd.read_csv(cfg.profile_dir / "study" / "private" / "key.csv")
        attempt("listening", lambda c, *a: listening(c, study[0], study[1], key, figures_dir))
    for line in missing:
        print(f"skipped {line}")
    return made
