"""The notebooks in notebooks/ are what scripts/make_notebooks.py writes, each has one papermill
`parameters` cell with the parameters `make reproduce` passes, and every code cell compiles.
Fast: nothing is executed."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SCRIPT = ROOT / "scripts" / "make_notebooks.py"
REQUIRED_PARAMETERS = {"profile", "seed", "runs_dir", "corpus_dir", "figures_dir", "overrides"}
FIX = (f"edit the cells in scripts/make_notebooks.py (not the notebook's JSON) and run "
       f"`.venv/bin/python scripts/make_notebooks.py`")

NOTEBOOK_FILES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def _load_script():
    spec = importlib.util.spec_from_file_location("make_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def built(script):
    return script.build_notebooks()


def _committed(name: str) -> dict:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


def _source(cell) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def test_script_builds_every_notebook(built):
    assert NOTEBOOK_FILES, "no notebooks in notebooks/"
    assert sorted(built) == NOTEBOOK_FILES, (
        f"scripts/make_notebooks.py builds {sorted(built)} but notebooks/ holds {NOTEBOOK_FILES}: {FIX}")


@pytest.mark.parametrize("name", NOTEBOOK_FILES)
def test_notebook_is_what_the_script_writes(name, script, built):
    if name not in built:
        pytest.fail(f"notebooks/{name} is not built by scripts/make_notebooks.py: {FIX}")
    want = (NOTEBOOKS / name).read_text(encoding="utf-8")
    got = script.serialise(built[name])
    if got == want:
        return
    # say where they differ, cell by cell, before the byte-level verdict
    try:
        have = _committed(name)["cells"]
    except (ValueError, KeyError) as e:
        pytest.fail(f"notebooks/{name} is not a readable notebook ({e}): {FIX}")
    new = json.loads(got)["cells"]
    diffs = []
    if len(have) != len(new):
        diffs.append(f"{len(have)} cells in the file, {len(new)} built")
    for i, (a, b) in enumerate(zip(have, new)):
        for what, fa, fb in (("type", a["cell_type"], b["cell_type"]), ("source", _source(a), _source(b)),
                             ("tags", _tags(a), _tags(b)), ("id", a.get("id"), b.get("id"))):
            if fa != fb:
                diffs.append(f"cell {i} {what}: file {fa!r} != built {fb!r}")
    detail = "; ".join(diffs) or "cells equal, serialisation (metadata, layout) differs"
    pytest.fail(f"notebooks/{name} differs from what scripts/make_notebooks.py writes ({detail}): {FIX}")


@pytest.mark.parametrize("name", NOTEBOOK_FILES)
def test_one_parameters_cell_with_the_shared_parameters(name):
    cells = _committed(name)["cells"]
    tagged = [c for c in cells if "parameters" in _tags(c)]
    assert len(tagged) == 1, f"notebooks/{name}: {len(tagged)} cells tagged `parameters`, papermill needs exactly one"
    cell = tagged[0]
    assert cell["cell_type"] == "code", f"notebooks/{name}: the `parameters` cell is not a code cell"
    assigned = {t.id for node in ast.parse(_source(cell)).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    missing = REQUIRED_PARAMETERS - assigned
    assert not missing, f"notebooks/{name}: the `parameters` cell does not set {sorted(missing)}"


def _without_magics(source: str) -> str | None:
    """The cell with IPython line magics / shell escapes replaced by `pass`; None for a cell magic."""
    if source.lstrip().startswith("%%"):
        return None
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("name", NOTEBOOK_FILES)
def test_code_cells_compile(name):
    for i, cell in enumerate(_committed(name)["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = _without_magics(_source(cell))
        if source is None:
            continue
        try:
            compile(source, f"notebooks/{name}[cell {i}]", "exec")
        except SyntaxError as e:
            pytest.fail(f"notebooks/{name}, cell {i} ({cell.get('id')}) does not compile: {e}")
