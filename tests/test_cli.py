"""The command line in-process: what it prints, what it returns, what it deletes."""

from smart_core.__main__ import main


def test_figures_makes_every_section_the_saved_artifacts_allow(tiny_trained, tmp_path, capsys):
    cfg = tiny_trained["cfg"]
    out = tmp_path / "figures"
    out.mkdir()
    (out / "claims.csv").write_text("claim,measure\nfrom another profile,CE\n")
    code = main(["figures", "--profile", "tiny", f"runs_dir={cfg.runs_dir}", f"corpus_dir={cfg.corpus_dir}",
                 f"base_model={cfg.base_model}", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert "made: base_model, training:smart, features, diversity" in printed
    for name in ("fig2_reward_scatter_smart", "fig3_reward_axes", "fig4_features", "fig5_diversity_collapse"):
        assert (out / f"{name}.png").exists(), name
    for name in ("corpus_summary", "claims", "feature_statistics", "diversity_metrics", "diversity_sweep"):
        assert (out / f"{name}.csv").exists(), name
    claims = (out / "claims.csv").read_text()  # made again from this profile, not the stale one
    assert "from another profile" not in claims and "standin" in claims


def test_a_bad_override_is_one_line_on_stderr_and_exit_code_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # were anything written, it would land here
    assert main(["train", "--profile", "tiny", "steps=abc"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: steps=") and "integer" in lines[0], lines
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_clean_runs_deletes_the_folder_it_is_given(tmp_path, capsys):
    runs = tmp_path / "made_up_runs"
    (runs / "tiny" / "smart" / "log").mkdir(parents=True)
    (runs / "tiny" / "smart" / "log" / "steps-000001.parquet").write_bytes(b"x")
    (runs / "tiny" / "reward.json").write_text("{}")
    assert main(["clean-runs", "--runs-dir", str(runs)]) == 0
    assert not runs.exists() and tmp_path.exists()
    assert f"deleted {runs}" in capsys.readouterr().out
