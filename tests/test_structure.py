"""The package's structure: no import cycle, leaves that import nothing, a stated job per module.

Read from the source with ``ast`` (nothing is imported), so a cycle or a
forbidden import fails here before it can surprise a user at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "medcne"
MAX_FUNCTION_LINES = 60  # code lines (docstring excluded)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "node_modules" not in p.parts}


def resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The medcne modules an import statement loads (a name may be a module or an attribute)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "medcne"]
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    if node.level:
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "medcne":
        return []
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append(sub if sub in MODULES else target)
    return out


def imports_of(name: str, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(m for m in resolve(name, node) if m in MODULES and m != name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    # Every import counts, also those inside functions: a lazy import hides a cycle, it does not remove it.
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("leaf", ["medcne.io", "medcne.defaults", "medcne.errors", "medcne.parallel"])
def test_leaf_modules_import_nothing_from_medcne(leaf):
    assert GRAPH[leaf] == set()


def test_metrics_take_arrays_and_need_no_torch_at_import():
    for name in MODULES:
        if name.startswith("medcne.metrics"):
            tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
            top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
            top |= {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
            assert "torch" not in top, name
            assert not {m for m in GRAPH[name] if not m.startswith(("medcne.metrics", "medcne.errors", "medcne.defaults",
                                                                    "medcne.parallel", "medcne.device"))}, name


def test_the_data_path_flows_one_way():
    # read -> store -> augment -> train -> embed -> evaluate -> show: lower rooms never import upper ones.
    lower_than = {
        "medcne.datasets": ("medcne.augment", "medcne.train", "medcne.estimator", "medcne.runs", "medcne.cli",
                            "medcne.viewer", "medcne.baselines", "medcne.models"),
        "medcne.augment": ("medcne.train", "medcne.estimator", "medcne.runs", "medcne.cli", "medcne.viewer"),
        "medcne.models": ("medcne.train", "medcne.estimator", "medcne.runs", "medcne.cli"),
        "medcne.train": ("medcne.estimator", "medcne.runs", "medcne.cli", "medcne.baselines"),
        "medcne.runs": ("medcne.cli", "medcne.viewer"),
    }
    for room, uppers in lower_than.items():
        for name, targets in GRAPH.items():
            if name == room or name.startswith(room + "."):
                bad = {t for t in targets if t.startswith(uppers)}
                assert not bad, f"{name} imports {sorted(bad)}"


def test_every_module_states_its_job():
    missing = [name for name, path in MODULES.items() if not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []


def test_functions_stay_short():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                start = first.end_lineno + 1 if has_doc else first.lineno
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}")
    assert long == []


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not a comment, not inside a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                doc_lines.update(range(first.lineno, first.end_lineno + 1))
    lines = path.read_text(encoding="utf-8").splitlines()
    return sum(1 for i, line in enumerate(lines, 1)
               if line.strip() and not line.strip().startswith("#") and i not in doc_lines)


def test_the_estimator_stays_the_method():
    # fit reads as the method (resolve, build, run the session, embed): what happens around the loop
    # lives in train/session.py, the parameter rules in params.py and resolve.py.
    assert len(GRAPH["medcne.estimator"]) <= 8, sorted(GRAPH["medcne.estimator"])
    assert code_lines(MODULES["medcne.estimator"]) <= 200


def test_code_lines_counts_code_only(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""Doc\n\nmore."""\n\n# a comment\nx = 1\n\n\ndef f():\n    """Doc."""\n    return x\n')
    assert code_lines(f) == 3


def test_user_durations_are_parsed_outside_training():
    assert "medcne.durations" in GRAPH["medcne.params"]
    assert not any(name.startswith("medcne.train") for name in GRAPH["medcne.durations"] | GRAPH["medcne.params"])


@pytest.mark.parametrize("argv", [[], ["--help"], ["info", "SAMPLE"], ["fit", "--help"], ["view", "--help"],
                                  ["plot", "--help"], ["compare", "--help"], ["evaluate", "--help"]])
def test_commands_that_do_not_train_start_without_torch(argv):
    import subprocess
    import sys

    from medcne.datasets import SAMPLE_PATH

    argv = [str(SAMPLE_PATH) if a == "SAMPLE" else a for a in argv]
    code = ("import sys\nfrom medcne.cli import main\n"
            f"try:\n    main({argv!r}) if {bool(argv)!r} else None\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(SRC)})
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout[-500:] + out.stderr[-500:]


def literal_file_names(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants of ``tree`` that are a run file's name (e.g. ``run / "embedding.npz"``)."""
    from medcne.runfiles import RUN_FILES

    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in RUN_FILES]


def test_the_run_file_names_are_written_in_runfiles_only():
    typed = {f"{path.relative_to(SRC)}:{line}": name for mod, path in MODULES.items() if mod != "medcne.runfiles"
             for line, name in literal_file_names(ast.parse(path.read_text(encoding="utf-8")))}
    assert not typed, f"use the names of medcne.runfiles: {typed}"


def test_the_file_name_scan_sees_a_typed_name():
    assert literal_file_names(ast.parse('p = run.path / "embedding.npz"\nq = "embedding.npz holds"')) == [
        (1, "embedding.npz")]
