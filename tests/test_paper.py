"""paper/smart_repro.tex as a reader gets it: compiled with pdflatex (installed by `make setup` and CI
through scripts/install_system.sh), no table or line running off the page (an overfull \\hbox wider
than 3 pt fails), and every table's stamp (profile, reward backend, seeds, commit) visible in the PDF.

Two folders are compiled: the committed figures/small (what the repository ships), and a temporary
folder whose tables are written now by plots.save_table from the committed CSVs (the current code)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from smart_core import plots

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "paper"
FIGURES = ROOT / "figures" / "small"
MAX_OVERFULL_PT = 3.0
TEX_PACKAGES = "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils"


def _pdflatex() -> str:
    exe = shutil.which("pdflatex")
    if exe is None:
        pytest.fail("pdflatex not found: run `make setup` (scripts/install_system.sh) or "
                    f"`sudo apt-get install -y --no-install-recommends {TEX_PACKAGES}`", pytrace=False)
    return exe


def compile_paper(figdir: Path, build: Path) -> tuple[Path, str]:
    """One pdflatex pass (enough for overfull boxes and the text: the paper has no cross-references)
    with \\figdir pointed at `figdir`; returns the PDF and the log."""
    build.mkdir(parents=True, exist_ok=True)
    cmd = [_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", "-recorder", "-output-directory", str(build),
           "-jobname", "smart_repro", rf"\def\figdir{{{figdir.as_posix()}}}\input{{smart_repro.tex}}"]
    env = {**os.environ, "max_print_line": "10000"}  # one log line per message: file names are not cut
    proc = subprocess.run(cmd, cwd=PAPER, env=env, capture_output=True, text=True, timeout=300)
    log_path = build / "smart_repro.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else proc.stdout
    if proc.returncode != 0:
        pytest.fail(f"pdflatex failed (exit {proc.returncode}) on {figdir}:\n" + "\n".join(log.splitlines()[-30:]),
                    pytrace=False)
    return build / "smart_repro.pdf", log


def overfull_boxes(log: str, limit_pt: float = MAX_OVERFULL_PT) -> list[str]:
    """'Overfull \\hbox' messages wider than limit_pt, each with the input file opened last before it
    (a table's paragraph ends in the paper's own file, so that file is the table that overflowed)."""
    found, last_file = [], "smart_repro.tex"
    for line in log.splitlines():
        for name in re.findall(r"\(([^()\s]+\.tex)\b", line):
            last_file = name
        match = re.search(r"Overfull \\hbox \(([\d.]+)pt too wide\) (.*)", line)
        if match and float(match.group(1)) > limit_pt:
            found.append(f"{match.group(1)} pt too wide {match.group(2)} of smart_repro.tex, just after {last_file}")
    return found


def included_tables(build: Path, figdir: Path) -> list[Path]:
    """The tables (a .tex with its .csv) of figdir that pdflatex read (from the -recorder file list)."""
    read = set()
    for line in (build / "smart_repro.fls").read_text().splitlines():
        if line.startswith("INPUT ") and line.endswith(".tex"):
            path = Path(line[len("INPUT "):])
            read.add((path if path.is_absolute() else PAPER / path).resolve())
    return sorted(p for p in read if p.parent == figdir.resolve() and p.with_suffix(".csv").exists())


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_paper(figdir: Path, build: Path) -> None:
    pdf, log = compile_paper(figdir, build)
    assert pdf.exists()
    too_wide = overfull_boxes(log)
    assert not too_wide, f"lines run off the page (overfull > {MAX_OVERFULL_PT} pt):\n" + "\n".join(too_wide)
    tables = included_tables(build, figdir)
    assert tables, f"the paper read no table of {figdir}"
    stamps = {t.name: t.read_text().splitlines()[0].removeprefix("% ") for t in tables}
    pdftotext = shutil.which("pdftotext")
    if pdftotext:  # the stamps as a reader sees them: in the PDF's text, once under each table
        text = squeeze(subprocess.run([pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True).stdout)
        for stamp in set(stamps.values()):
            expected = sum(s == stamp for s in stamps.values())
            names = sorted(n for n, s in stamps.items() if s == stamp)
            assert text.count(squeeze(stamp)) >= expected, \
                f"stamp {stamp!r} of {names} is not printed under each of them in the PDF"
    else:  # no poppler-utils: each table's .tex typesets its stamp (not only a % comment)
        for table in tables:
            visible = [line for line in table.read_text().splitlines() if not line.startswith("%")]
            assert any(plots.latex_escape(stamps[table.name]) in line for line in visible), \
                f"{table.name} does not typeset its stamp {stamps[table.name]!r}"


def test_the_paper_compiles_from_the_committed_figures(tmp_path):
    check_paper(FIGURES, tmp_path / "build")


def test_the_paper_compiles_from_tables_written_now_by_save_table(tmp_path):
    """Every committed table re-written by the current save_table (all its columns: the widest case)."""
    figdir = tmp_path / "figures"
    figdir.mkdir()
    csvs = sorted(FIGURES.glob("*.csv"))
    for path in FIGURES.iterdir():
        if path.suffix != ".csv" and not (path.suffix == ".tex" and path.with_suffix(".csv").exists()):
            shutil.copy(path, figdir)  # figures and generated text as committed
    for csv in csvs:
        plots.save_table(pd.read_csv(csv), csv.stem, figdir, "small", "standin", seeds="0")
    check_paper(figdir, tmp_path / "build")
    assert len(included_tables(tmp_path / "build", figdir)) >= 5


def test_latex_columns_choose_and_rename_the_columns_of_the_latex_only(tmp_path):
    table = pd.DataFrame({"claim": ["more notes"], "measure": ["n_notes"], "cliffs_delta": [-0.849609375],
                          "verdict": ["opposite"]})
    csv, tex = plots.save_table(table, "t", tmp_path, "tiny", "standin", latex_columns=["claim", "verdict"])
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    assert "more notes & opposite" in tex.read_text() and "n\\_notes" not in tex.read_text()
    _, tex = plots.save_table(table, "t", tmp_path, "tiny", "standin",
                              latex_columns={"claim": "claim", "cliffs_delta": "Cliff's delta"})
    assert "claim & Cliff's delta" in tex.read_text() and "-0.85" in tex.read_text()
    assert r"\resizebox{\linewidth}" in tex.read_text()  # scaled to the line when wider than it
    with pytest.raises(KeyError, match="nope"):
        plots.save_table(table, "t", tmp_path, "tiny", "standin", latex_columns=["claim", "nope"])
