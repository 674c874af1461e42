"""The package's shape as docs/ARCHITECTURE.md states it.

Imports flow one way, core <- theory, samplers <- llc <- bayes, dynamics <- report <-
experiments <- cli; siblings do not import each other; samplers import only core; no private
name crosses a package; no command imports another command; nothing in tms imports the test
oracles; imports at module level (optional extras and the listed lazy ones excepted); short
modules and functions."""
import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tms"
RANK = {"core": 0, "theory": 1, "samplers": 1, "llc": 2, "bayes": 3, "dynamics": 3, "report": 4,
        "experiments": 5, "cli": 6}
# what each package may import besides itself (everything of lower rank, except as below)
ALLOWED = {pkg: {p for p, r in RANK.items() if r < RANK[pkg]} for pkg in RANK}
ALLOWED["samplers"] = {"core"}  # a kernel never sees W and b
TOP = {"__init__": set(RANK), "__main__": {"cli"}}  # tms/__init__.py re-exports the public API
OPTIONAL = ("dask", "distributed", "dask_jobqueue")  # the cluster extra, imported only where used
# function-local imports kept on purpose, with the reason
LAZY = {("theory/loss.py", "tms.theory"): "numba compiles on first use; the eager path works without it",
        "arviz": "ArviZ is imported only where InferenceData is written (its import warns and costs ~1 s)",
        "h5py": "h5py is imported only where saved draws are read (tms.core.inference)",
        "netCDF4": "netCDF4 is imported where draws are written, to pick xarray's engine (tms.core.inference)",
        "matplotlib": "matplotlib is imported at the first figure (tms.report.plots.pyplot), not with tms (~0.7 s)",
        "scipy": "scipy is imported where a p-value or a root is computed, not with tms (~1 s with scipy.stats)",
        ("theory/phases.py", "tms.theory"): "numba compiles the one-row zoo reading where a wall runs; classify works without it",
        ("samplers/compiled.py", "tms.samplers"): "numba compiles the round where one runs; the torch path works without it",
        ("samplers/compiled_sgld.py", "tms.samplers"): "numba compiles the SGLD steps where they run; the torch step "
                                                       "works without it",
        ("bayes/feature_response.py", "tms.bayes"): "numba compiles the per-sample losses where they run; the "
                                                    "forward pass works without it",
        ("dynamics/train_compiled.py", "tms.dynamics"): "numba compiles the SGD block where one runs; the torch path works without it",
        "numba": "numba loads where a compiled round runs (tms.samplers.compiled); the torch path works without it"}
CLI_SHARED = {"common", "main"}  # the cli modules a command may import
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 60, 500
# modules still over the limit, each to be split by job (this list only shrinks)
OVERSIZE: set[str] = set()


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _rel(path: Path) -> str:
    return str(path.relative_to(PKG))


def _tms_imports(tree) -> list[tuple[str, list[str], int, bool]]:
    """(dotted tms module, names imported from it, line, at module level?) for every tms import."""
    out, top_level = [], {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tms":
            out.append((node.module, [a.name for a in node.names], node.lineno, id(node) in top_level))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno, id(node) in top_level) for a in node.names if a.name.startswith("tms")]
    return out


def _target_package(module: str, names: list[str]) -> list[str]:
    """The tms packages an import reaches: `from tms.bayes import x` -> bayes; `from tms import core`."""
    parts = module.split(".")
    return [parts[1]] if len(parts) > 1 else [n for n in names]


def test_every_module_is_in_a_package():
    stray = [_rel(p) for p in _modules() if _package(p) not in RANK and _package(p) not in TOP]
    assert not stray, f"modules outside the packages of docs/ARCHITECTURE.md: {stray}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_imports_flow_one_way(path):
    me = _package(path)
    allowed = TOP.get(me) if me in TOP else ALLOWED[me] | {me}
    tree = ast.parse(path.read_text())
    for module, names, line, top in _tms_imports(tree):
        for pkg in _target_package(module, names):
            if me in TOP and pkg not in RANK:  # tms/__init__ re-exports names, not packages
                continue
            assert pkg in allowed, f"{_rel(path)}:{line}: package {me} imports tms.{pkg} ({module})"
        assert top or (_rel(path), module) in LAZY, f"{_rel(path)}:{line}: function-local import of {module}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_private_name_crosses_a_package(path):
    me, tree = _package(path), ast.parse(path.read_text())
    foreign = set()  # local names bound to modules of other packages
    for module, names, line, _ in _tms_imports(tree):
        pkg = _target_package(module, names)
        other = [p for p in pkg if p != me]
        if not other:
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private and ("._" not in module or module == "tms.core._version"), f"{_rel(path)}:{line}: imports private {module} {private}"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                foreign |= {a.asname or a.name for a in node.names}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in foreign
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            raise AssertionError(f"{_rel(path)}:{node.lineno}: uses private {node.value.id}.{node.attr}")


@pytest.mark.parametrize("path", [p for p in _modules() if _package(p) == "cli"], ids=_rel)
def test_no_command_imports_another(path):
    for module, names, line, _ in _tms_imports(ast.parse(path.read_text())):
        if module.startswith("tms.cli"):
            used = [module.split(".")[2]] if module.count(".") >= 2 else names
            assert set(used) <= CLI_SHARED, f"{_rel(path)}:{line}: a command imports another command ({module})"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_imports_at_module_level_and_no_test_oracles(path):
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        root = (mod or "").split(".")[0]
        assert root not in ("tests", "reference", "conftest"), f"{_rel(path)}:{node.lineno} imports the tests"
        if id(node) not in top_level and root not in ("tms", *OPTIONAL) and root not in LAZY:
            raise AssertionError(f"{_rel(path)}:{node.lineno}: function-local import of {mod}")


def test_short_functions_and_modules():
    long = []
    for path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and _rel(path) not in OVERSIZE:
            long.append(f"{_rel(path)} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{_rel(path)}:{node.lineno} {node.name} ({n} lines)")
    fixed = [m for m in OVERSIZE if len((PKG / m).read_text().splitlines()) <= MAX_MODULE_LINES]
    assert not fixed, f"remove from OVERSIZE (now short): {fixed}"
    assert not long, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function:\n" + "\n".join(long)


CITED = re.compile(r"\b((?:docs|tests|benchmarks|scripts|notebooks|tms)/[\w/.-]*\w\.(?:py|md|ipynb))")


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_docstrings_cite_only_what_the_repository_has(path):
    """No issue numbers (nobody can follow them) and no file that is not in the repository."""
    text, root = path.read_text(), PKG.parent
    assert not re.search(r"\bissues? #?\d+|\bDESIGN\b", text), f"{_rel(path)} cites an issue or the DESIGN document"
    missing = [p for p in CITED.findall(text) if not (root / p).exists() and not (root / "docs" / p).exists()]
    assert not missing, f"{_rel(path)} cites files that are not in the repository: {missing}"
