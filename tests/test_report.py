"""Figures and tables from saved artifacts: what each section writes, axes and claims from the
scorer's record, and make_all never leaving a table it can no longer make."""

import json
import shutil

import pandas as pd
import pytest

from smart_core import plots, report
from smart_core.reward import StandInScorer
from smart_core.stats import PAIRED_TEST, VERDICTS

RECORD = StandInScorer().describe()


def _made(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _figure(name):
    return {f"{name}.png", f"{name}.pdf"}


def _table(name):
    return {f"{name}.csv", f"{name}.tex"}


def test_the_training_section_writes_fig2_and_the_training_curves(tiny_trained, tmp_path):
    cfg, run = tiny_trained["cfg"], tiny_trained["run"]
    result = report.training(cfg, "smart", tmp_path)
    assert _made(tmp_path) == _figure("fig2_reward_scatter_smart") | _figure("training_curves_smart")
    assert (tmp_path / "fig2_reward_scatter_smart.png").stat().st_size > 1000
    pd.testing.assert_frame_equal(result["steps"], run.steps())
    assert set(result["stage_seconds"].index) == {"seconds_generate", "seconds_render", "seconds_score",
                                                  "seconds_update", "seconds_total"}


def _capture_fig3(monkeypatch) -> list:
    figures, draw = [], plots.axes_histograms

    def capture(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plots, "axes_histograms", capture)
    return figures


def test_the_features_section_takes_axes_and_claims_from_the_scorer_record(tiny_trained, tmp_path, monkeypatch):
    cfg = tiny_trained["cfg"]
    fig3 = _capture_fig3(monkeypatch)
    result = report.features(cfg, tmp_path)
    assert _made(tmp_path) == (_figure("fig3_reward_axes") | _figure("fig4_features")
                               | _table("feature_statistics") | _table("claims") | _table("training_summary")
                               | {"claims_discussion.md", "claims_discussion.tex"})
    # the replicate (tiny: 2 replicates) is not trained here: the claims use the one seed there is
    assert result["n_base"] == result["n_tuned"] == cfg.eval_prompts and result["seeds"] == str(cfg.seed)
    assert set(result["statistics"]["test"]) == {PAIRED_TEST}
    assert "notes_per_second" in result["statistics"]["measure"].tolist()
    assert result["training_summary"][["run", "seed"]].values.tolist() == [["smart", cfg.seed]]

    # figure 3: one panel per recorded axis (the stand-in's 4), labelled as recorded
    assert [ax.get_xlabel() for ax in fig3[0].axes] == [RECORD["axis_info"][a]["label"] for a in RECORD["axes"]]
    stats = result["statistics"]
    assert stats["measure"].tolist()[:4] == RECORD["axes"] and "CE" not in stats["measure"].tolist()

    # claims: the reward row measures the stand-in; a stand-in has no paper axes, so no "rises too" rows
    claims = result["claims"]
    assert claims["measure"].iloc[0] == "standin" and claims["claim"].iloc[0] == "the reward (standin; the paper's: CE) rises over training"
    assert not claims["claim"].str.contains("rises too").any()
    assert not claims["measure"].isin(["CE", "CU", "PC", "PQ"]).any()
    assert set(claims["verdict"]) <= set(VERDICTS) and claims["reason"].str.len().gt(0).all()
    assert pd.read_csv(tmp_path / "claims.csv")["measure"].tolist() == claims["measure"].tolist()
    tex = (tmp_path / "claims.tex").read_text()
    assert tex.startswith(f"% profile: tiny | OFFLINE STAND-IN reward (not Audiobox) | seed {cfg.seed} | commit")
    assert "\\textit{profile: tiny \\textbar{} OFFLINE STAND-IN reward" in tex  # visible in the PDF too
    assert "reason" not in tex and "verdict" in tex  # the LaTeX shows the columns that fit
    discussion = (tmp_path / "claims_discussion.md").read_text()
    assert discussion.startswith(f"Of the paper's {len(claims)} claims checked")


def test_another_scorer_record_gives_other_panels_and_claim_rows(tiny_trained, tmp_path, monkeypatch):
    """The same saved evaluations read under a record naming two axes, one of them a paper axis."""
    cfg = tiny_trained["cfg"]
    record = {**RECORD, "axes": ["standin", "standin_activity"], "paper_axes": ["standin", "standin_activity"]}
    monkeypatch.setattr(report, "scorer_record", lambda cfg: record)
    fig3 = _capture_fig3(monkeypatch)
    result = report.features(cfg, tmp_path)
    assert len(fig3[0].axes) == 2
    assert result["statistics"]["measure"].tolist()[:2] == ["standin", "standin_activity"]
    assert "standin_sustain" not in result["statistics"]["measure"].tolist()
    claims = result["claims"]
    assert claims["measure"].tolist()[:2] == ["standin", "standin_activity"]
    assert claims["claim"].iloc[1] == "standin_activity rises too (not optimised)"


def test_the_diversity_section_writes_fig5_the_metrics_and_the_sweep(tiny_trained, tmp_path):
    cfg = tiny_trained["cfg"]
    result = report.diversity(cfg, tmp_path)
    assert _made(tmp_path) == (_figure("fig5_diversity_collapse") | _table("diversity_metrics")
                               | _figure("diversity_along_training") | _figure("quality_diversity_frontier")
                               | _table("diversity_sweep"))
    metrics = result["metrics"].set_index("system")
    assert metrics.index.tolist() == ["base", "smart: 4 steps, beta 0.04"]
    assert metrics.loc["base", "mean_reward"] == pytest.approx(tiny_trained["base_eval"]["reward"].mean())
    assert metrics.loc["smart: 4 steps, beta 0.04", "mean_reward"] == pytest.approx(
        tiny_trained["tuned_eval"]["reward"].mean())
    assert (metrics["n"] == cfg.eval_prompts).all()
    pd.testing.assert_frame_equal(result["sweep"], tiny_trained["sweep"])


def test_make_all_drops_a_stale_table_it_can_no_longer_make_and_keeps_what_it_made(tiny_trained, tmp_path):
    cfg = tiny_trained["cfg"]
    # the same profile without the smart run's evaluations: no features or diversity can be made
    bare = cfg.replace(runs_dir=str(tmp_path / "runs"))
    shutil.copytree(cfg.profile_dir / "smart", bare.profile_dir / "smart", ignore=shutil.ignore_patterns("eval"))
    shutil.copy(cfg.profile_dir / "reward.json", bare.profile_dir / "reward.json")
    out = tmp_path / "figures"
    out.mkdir()
    (out / "claims.csv").write_text("claim,verdict\nfrom another profile,agrees\n")
    (out / "notes.txt").write_text("not a figure")
    (out / "my_own_plot.png").write_bytes(b"a user's file in the same folder")  # not ours: it stays

    made = report.make_all(bare, out)

    assert made == ["base_model", "training:smart"]
    assert not (out / "claims.csv").exists()
    assert _made(out) == ({"notes.txt", "my_own_plot.png"} | _table("corpus_summary") | _figure("fig2_reward_scatter_smart")
                          | _figure("training_curves_smart"))


def test_scorer_record_is_a_missing_artifact_on_an_empty_profile(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(runs_dir=str(tmp_path / "runs"))
    cfg.profile_dir.mkdir(parents=True)
    with pytest.raises(report.MissingArtifact, match="no scorer record"):
        report.scorer_record(cfg)
    out = tmp_path / "figures"
    out.mkdir()
    (out / "claims.csv").write_text("stale")
    assert report.make_all(cfg, out) == [] and not (out / "claims.csv").exists()
    # without reward.json, a run's metadata is the record
    (cfg.profile_dir / "long").mkdir()
    (cfg.profile_dir / "long" / "meta.json").write_text(json.dumps({"reward": RECORD}))
    assert report.scorer_record(cfg) == RECORD and report.reward_axis(cfg) == "standin"
