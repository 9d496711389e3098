"""The documents' figures: README's summary and EVALUATION.md's tables are what the reports in
docs/figures say (`musicgen_stem.evaluation.figures`), and the guides keep to 100-character lines."""

from __future__ import annotations

import shutil
from pathlib import Path

from musicgen_stem.evaluation.figures import END, START, main, table

ROOT = Path(__file__).resolve().parents[1]


def test_the_documents_show_the_reports_figures():
    assert main(["--root", str(ROOT), "--check"]) == 0


def test_a_figure_typed_by_hand_is_found(tmp_path, capsys):
    for name in ("README.md", "EVALUATION.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "docs" / "figures", tmp_path / "docs" / "figures")
    assert main(["--root", str(tmp_path), "--check"]) == 0
    readme = (tmp_path / "README.md").read_text()
    rows = table(tmp_path / "docs" / "figures").splitlines()
    cells = rows[2].split("|")
    cells[2] = " 99 % "  # the first figure, typed over
    edited = "|".join(cells)
    (tmp_path / "README.md").write_text(readme.replace(rows[2], edited))
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert "README.md" in capsys.readouterr().out
    assert main(["--root", str(tmp_path)]) == 0  # rewritten from the reports
    assert (tmp_path / "README.md").read_text() == readme


def test_the_table_sits_between_its_markers_and_every_row_has_a_figure():
    readme = (ROOT / "README.md").read_text()
    inside = readme.split(START, 1)[1].split(END, 1)[0]
    rows = inside.strip().splitlines()[2:]
    assert len(rows) >= 10 and all("| – |" not in r.split("](")[0] for r in rows)


def test_guides_keep_to_100_characters_a_line():
    for name in ("README.md", "EVALUATION.md", "ARCHITECTURE.md", "docs/figures/README.md"):
        long = [i + 1 for i, line in enumerate((ROOT / name).read_text().splitlines()) if len(line) > 100]
        assert not long, f"{name}: lines {long} are longer than 100 characters"
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
