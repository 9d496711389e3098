"""The layers of ARCHITECTURE.md: every module imports only from lower layers (or its own unit)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "musicgen_stem"

#: unit (top-level module or package of musicgen_stem) -> layer; imports must go strictly down.
LAYERS = {
    "__version__": -1,  # the constant in the package's __init__
    "errors": -1,
    "lazy": -1,
    "layout": 0,
    "dsp": 0,
    "threads": 0,
    "devices": 0,
    "inputs": 0,
    "safeio": 0,
    "memory": 0,
    "separation_options": 0,
    "audio": 1,
    "samples": 2,
    "separator_files": 1,
    "codec": 1,
    "lm": 1,
    "conditioning": 1,
    "separation": 2,
    "outputs": 3,
    "generation": 2,
    "notes": 2,
    "modeldir": 2,
    "export": 4,
    "presets": 3,
    "reference": 3,
    "api": 4,
    "data": 5,
    "song": 5,
    "evaluation": 5,
    "jam": 5,
    "commands": 6,
    "training": 7,
    "app": 7,
    "cli": 8,
}


def _unit(parts: tuple[str, ...]) -> str:
    return parts[0]


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Units of musicgen_stem that `path` imports (relative or absolute)."""
    pkg = path.relative_to(root).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(pkg[: len(pkg) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            found |= {target[0]} if target else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("musicgen_stem."):
            found.add(node.module.split(".")[1])  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("musicgen_stem.")}
    return found


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.suffix == ".py" or p.is_dir()}
    units -= {"__init__", "__pycache__", "models", "py"}
    assert units - set(LAYERS) == set(), "add the new module to LAYERS and ARCHITECTURE.md"


def violations(root: Path) -> list[str]:
    """Every import from a unit to one of the same or a higher layer, under `root`."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("").parts
        if rel == ("__init__",):
            continue  # the package facade re-exports the API
        unit = _unit(rel)
        for target in sorted(_imports(path, root) - {unit}):
            if target not in LAYERS:
                bad.append(f"{path.relative_to(root)} imports unknown unit {target}")
            elif LAYERS[target] >= LAYERS[unit]:
                bad.append(f"{path.relative_to(root)} ({unit}) imports {target}: not a lower layer")
    return bad


def test_imports_go_down_the_layers() -> None:
    bad = violations(ROOT)
    assert not bad, "\n".join(bad)


def test_the_checker_reports_upward_imports(tmp_path: Path) -> None:
    (tmp_path / "codec").mkdir()
    (tmp_path / "codec" / "model.py").write_text("from ..layout import L\nfrom ..api import MusicGenStem\n")
    (tmp_path / "lm.py").write_text("import musicgen_stem.cli\nfrom musicgen_stem.codec import StemCodec\n")
    assert violations(tmp_path) == [
        "codec/model.py (codec) imports api: not a lower layer",
        "lm.py (lm) imports cli: not a lower layer",
        "lm.py (lm) imports codec: not a lower layer",
    ]


def _module_imports(path: Path, root: Path) -> set[str]:
    """Modules of the package that `path` imports anywhere in it (type-checking and lazy imports
    too), dotted from `root`: "api.model"; a package is its "__init__"."""
    pkg = path.relative_to(root).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(pkg[: len(pkg) - (node.level - 1)]) + (node.module.split(".") if node.module else [])
            names = [base] if node.module else [base + [a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("musicgen_stem."):
            names = [node.module.split(".")[1:]]  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1:] for a in node.names if a.name.startswith("musicgen_stem.")]
        else:
            continue
        for parts in names:
            target = root.joinpath(*parts)
            if target.with_suffix(".py").is_file():
                found.add(".".join(parts))
            elif (target / "__init__.py").is_file():
                found.add(".".join([*parts, "__init__"]))
    return found


def import_cycles(root: Path) -> list[list[str]]:
    """Cycles of the module import graph under `root` (package facades re-exporting their own
    modules are not followed back)."""
    graph = {}
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        graph[name] = sorted(m for m in _module_imports(path, root) if not m.endswith("__init__"))
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles() -> None:
    cycles = import_cycles(ROOT)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_checker_finds_a_type_checking_cycle(tmp_path: Path) -> None:
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "model.py").write_text("from .cache import KVCache\n")
    (tmp_path / "lm" / "cache.py").write_text("if TYPE_CHECKING:\n    from .model import LMConfig\n")
    (tmp_path / "lm" / "pattern.py").write_text("from . import cache\n")
    assert import_cycles(tmp_path) == [["lm.cache", "lm.model", "lm.cache"]]


#: Where stem names may be written: the layouts, and formats or domains whose roles they are.
STEM_NAMING = {
    "layout.py": "the stem layouts, which stems are percussive or monophonic",
    "presets.py": "the shipped model's layout",
    "separation_options.py": "the four sources of a Demucs separator",
    "export/ni_stems.py": "the slots of Native Instruments' stem format",
    "commands/transcribe.py": "the kinds of notes `transcribe --stem` reads",
    "data": "the synthetic songs' parts and the datasets' folder names",
    "evaluation": "metrics that depend on an instrument's role",
}
STEM_NAMES = {"bass", "drums", "other", "vocals"}


def stem_names_written(root: Path) -> dict[str, list[int]]:
    """{module: lines} of string literals that are stem names (docstrings aside)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        lines = sorted(
            {
                n.lineno
                for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and n.value in STEM_NAMES and id(n) not in docs
            }
        )
        if lines:
            found[path.relative_to(root).as_posix()] = lines
    return found


def test_stems_are_named_only_where_a_layout_or_a_format_says_so() -> None:
    allowed = tuple(STEM_NAMING)
    bad = {m: lines for m, lines in stem_names_written(ROOT).items() if not m.startswith(allowed)}
    assert not bad, f"stem names written outside layout.py and the formats that define them: {bad}"
    assert stem_names_written(ROOT).keys() >= {"layout.py", "presets.py"}  # the checker sees them
