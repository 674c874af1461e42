"""The package's shape as docs/ARCHITECTURE.md states it: imports flow one way, imports at
module level (optional extras excepted), functions fit on a screen."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tms"
LAYERS = {
    0: ["checks", "io", "records", "plots"],
    1: ["model", "data", "loss", "loss_kernels"],
    2: ["zoo", "samplers", "diagnostics", "inference"],
    3: ["phases", "zoo_table"],
    4: ["llc", "llc_model", "llc_run", "posterior", "train", "zoo_llc"],
    5: ["cluster", "free_energy", "free_energy_run", "transitions", "comparison"],
    6: ["report", "reproduce"],
    7: ["commands", "cli", "__main__"],
}
LEVEL = {name: k for k, names in LAYERS.items() for name in names}
OPTIONAL = ("dask", "distributed", "dask_jobqueue")  # the cluster extra, imported only where used
MAX_LINES = 60
# function-local tms imports kept on purpose, with the reason
LAZY = {("loss.py", "loss_kernels"): "numba compiles on first use; the eager path works without it"}


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return rel.parts[0]


def _imports(tree) -> list[tuple[str, int, bool]]:
    """(top-level tms module imported, line, at module level?) for every tms import."""
    out = []
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tms":
            parts = node.module.split(".")
            names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("tms.")]
        out += [(n, node.lineno, id(node) in top_level) for n in names]
    return out


def test_every_module_has_a_layer():
    missing = sorted({_top(p) for p in _modules()} - set(LEVEL) - {"__init__"})
    assert not missing, f"modules not placed in docs/ARCHITECTURE.md's layers: {missing}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_flow_one_way_at_module_level(path):
    me = _top(path)
    if me == "__init__":
        return
    tree = ast.parse(path.read_text())
    for name, line, top in _imports(tree):
        assert name in LEVEL or name == "__init__", f"{path.name}:{line} imports unknown tms.{name}"
        assert LEVEL.get(name, 0) <= LEVEL[me], (
            f"{path.name}:{line}: layer {LEVEL[me]} module imports tms.{name} of layer {LEVEL[name]} (upward)")
        assert top or (path.name, name) in LAZY, (
            f"{path.name}:{line}: function-local import of tms.{name}; import at module level")
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top_level:
            mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if mod and mod.split(".")[0] not in ("tms", *OPTIONAL):
                raise AssertionError(f"{path.relative_to(PKG)}:{node.lineno}: function-local import of {mod}")


def test_no_function_over_60_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(PKG)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
