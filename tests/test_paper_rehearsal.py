"""The paper profile rehearsed offline: both paper assets resolved by their real Hub ids from a
Hugging Face cache (random weights, real layouts), every notebook through papermill, on Audiobox."""

import json

import nbformat
import pandas as pd
import pytest

from smart_core.assets import BASE_MODEL_ID
from smart_core.config import Config
from smart_core.pipeline import reproduce, steps

# the paper profile, shrunk to minutes on 2 CPU cores: every stage runs, on very little data
SHRINK = dict(steps=2, prompts_per_step=1, group_size=2, max_completion_tokens=16, checkpoint_every=2, audio_every=2,
              eval_prompts=2, eval_batch=2, diversity_samples=2, unconditional_samples=2, soundfont_pieces=2,
              compare_soundfonts=False, listening_prompts=2, listening_max_attempts=1, power_simulations=5,
              max_seconds=4.0, render_workers=2,
              # beyond the paper: best-of-1..2, one variant (long is its baseline), one unheard font, two
              # cross-scored outputs
              best_of_n_max=2, cross_score_limit=2, transfer_soundfonts="fluidr3_mono",
              ablations={"entropy": {"entropy_coef": 0.01}})


@pytest.mark.slow
def test_paper_profile_runs_every_notebook_on_audiobox_from_the_hub_cache(offline_hub, tiny_corpus, tmp_path):
    cfg = Config.from_profile("paper", runs_dir=str(tmp_path / "runs"), corpus_dir=str(tmp_path / "corpus"),
                              corpus_source=str(tiny_corpus.root / "train"), **SHRINK)
    assert cfg.base_model == BASE_MODEL_ID and cfg.reward_backend == "audiobox"
    figures = tmp_path / "figures"
    report = reproduce(cfg, figures_dir=str(figures), log_output=False, beyond=True)
    assert [r["status"] for r in report] == ["ran"] * len(steps(cfg, beyond=True))
    for path in sorted(cfg.profile_dir.glob("notebooks/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            assert not any(o.get("output_type") == "error" for o in cell.get("outputs", [])), path.name

    # the reward is Audiobox, resolved from the cache by its id, and every run says where both assets came from
    assert json.loads((cfg.profile_dir / "reward.json").read_text())["backend"] == "audiobox"
    for run in cfg.runs:
        meta = json.loads((cfg.profile_dir / run / "meta.json").read_text())
        assert meta["reward"]["backend"] == "audiobox" and meta["reward"]["asset"]["source"] == "hf_cache"
        assert meta["base_model_asset"]["id"] == BASE_MODEL_ID and meta["base_model_asset"]["source"] == "hf_cache"
        assert len(meta["base_model_asset"]["sha256"]) == 64 and len(meta["base_model_asset"]["revision"]) == 40
        assert json.loads((cfg.profile_dir / run / "config.json").read_text())["steps"] == 2  # the override won

    # figures and tables carry the scorer's axes: CE, CU, PC, PQ
    claims = pd.read_csv(figures / "claims.csv")
    assert {"CE", "CU", "PC", "PQ"} <= set(claims["measure"])
    assert claims["claim"].str.contains("CU rises too").any()
    fonts = pd.read_csv(figures / "soundfont_table.csv")
    assert {"CE", "CU", "PC", "PQ", "average"} <= set(fonts.columns)
    stats = pd.read_csv(figures / "feature_statistics.csv")
    assert {"CE", "CU", "PC", "PQ"} <= set(stats["measure"])
    assert "reward: audiobox" in (figures / "claims.tex").read_text()
    # a downloaded model has no pre-training history: a model card instead of a loss curve
    card = pd.read_csv(figures / "base_model_card.csv").set_index("field")["value"]
    assert card["id"] == BASE_MODEL_ID and card["source"] == "hf_cache" and card["layers"] == "4"
    assert not (figures / "base_model_loss.png").exists()
    for name in ("fig2_reward_scatter_smart", "fig3_reward_axes", "fig4_features", "fig5_diversity_collapse",
                 "base_model_samples", "soundfont_table", "listening_means_SIMULATED"):
        assert (figures / f"{name}.png").stat().st_size > 1000, name
    samples = pd.read_parquet(cfg.base_model_dir / "unconditional_samples.parquet")
    assert {"CE", "CU", "PC", "PQ"} <= set(samples.columns)  # scored with the run's scorer

    # beyond the paper on Audiobox: best-of-N and the transfer table in CE; the stand-in cross-scores
    assert {"CE", "CU", "PC", "PQ"} <= set(pd.read_parquet(cfg.profile_dir / "beyond" / "best_of_n" / "samples.parquet"))
    transfer = pd.read_csv(figures / "reward_transfer.csv")
    assert set(transfer[transfer["scorer_role"] == "training reward"]["axis"]) == {"CE", "CU", "PC", "PQ"}
    cross = transfer[transfer["scorer_role"] == "cross-scored"]
    assert set(cross["scorer"]) == {"standin"} and (cross["n_pairs"] == 2).all()
    assert set(transfer["soundfont"]) == {"fluidr3_gm", "fluidr3_mono"}
    assert pd.read_csv(figures / "ablations.csv")["system"].tolist()[-2:] == ["long_beta0", "entropy"]
    assert "reward: audiobox" in (figures / "beyond_discussion.tex").read_text()
