"""The house rules of ``src/`` (issue 16), checked on the code as it is: no import cycle, no
long function or class without a reason written beside it, the readers and the sweep loop
import without torch, and the store's names spelt in one module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
#: what a file-length limit (460 lines, issue 16) was meant to protect, measured where it matters
#: (issue 27): a function longer than this, or a class, says why on the line above its ``def``
#: or ``class`` (``# long: <reason>``); a file's length alone says nothing
MAX_FUNCTION, MAX_CLASS = 80, 250


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path], typing: bool = False) -> set[str]:
    """The project modules ``name`` imports at run time, function-level imports included
    (they are cycles all the same, only hidden), ``if TYPE_CHECKING:`` blocks left out
    unless ``typing``."""
    tree = ast.parse(path.read_text())
    typing_only = set() if typing else {
        id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
        and "TYPE_CHECKING" in ast.unparse(block.test) for stmt in block.body for node in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found.update(subs if len(subs) == len(node.names) else [target, *subs])
    return {m for m in found if m in modules and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_hidden_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_src_has_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "imbsweep.names" in graph["imbsweep.results"]  # the finder sees imports at all
    assert _cycles(graph) == []


def test_src_has_no_import_cycle_even_for_type_checking() -> None:
    """What a module only needs for its annotations comes from below it too (issue 27: the
    records of a run live in the torch-free ``records``; the checks are given what they check,
    a sweep's ``Tournament`` among it, plain data), so every module can be read, and moved, on
    its own floor."""
    modules = _modules()
    graph = {name: _imports(name, path, modules, typing=True) for name, path in modules.items()}
    assert "imbsweep.records" in graph["imbsweep.tracking"]  # the finder sees TYPE_CHECKING imports
    assert _cycles(graph) == []


def _long_without_a_reason(text: str) -> list[str]:
    """The functions over :data:`MAX_FUNCTION` lines and classes over :data:`MAX_CLASS` in
    ``text`` whose ``def``/``class`` line (or the line above it, decorators aside) carries no
    ``# long: <reason>``."""
    lines = text.splitlines()
    out = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
        size = (node.end_lineno or node.lineno) - node.lineno + 1
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        said = " ".join(lines[max(first - 2, 0):node.lineno])
        if size > limit and not re.search(r"#\s*long:\s*\S", said):
            out.append(f"{node.name} ({size} lines)")
    return out


def test_the_length_finder_asks_a_reason_of_a_long_function_only() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION))
    assert _long_without_a_reason(f"def f():\n{body}") == [f"f ({MAX_FUNCTION + 1} lines)"]
    assert _long_without_a_reason(f"# long: it mirrors a table\ndef f():\n{body}") == []
    shorter = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION - 1))
    assert _long_without_a_reason(f"def f():\n{shorter}") == []


def test_no_long_function_or_class_in_src_without_a_reason() -> None:
    found = {str(p.relative_to(SRC)): long for p in SRC.rglob("*.py")
             if (long := _long_without_a_reason(p.read_text()))}
    assert found == {}


@pytest.mark.parametrize("module", ["imbsweep.results", "imbsweep.compare", "imbsweep.export", "imbsweep.records",
                                    "imbsweep.reporting",
                                    "imbsweep.sweep._runner", "imbsweep.cli"])
def test_readers_and_the_sweep_loop_import_without_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


#: a store name of ours in a string; a class's path (``imbsweep.losses.Focal``) is none
STORE_NAME = re.compile(r"imbsweep[.:][a-z_]+(?![a-z_]|\.[A-Z])")


def _store_names_in_strings(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` for every ``imbsweep.<x>`` / ``imbsweep:<x>`` inside a string of
    ``source`` (f-strings and MLflow filters such as ``tags.`imbsweep.state` = …`` included),
    docstrings and a class's path (``imbsweep.losses.Focal``) left out."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found += [(node.lineno, m.group(0)) for m in STORE_NAME.finditer(node.value)]
    return found


def test_the_name_finder_sees_filters_and_f_strings() -> None:
    code = '''"""imbsweep.arm in a docstring is prose."""
flt = "tags.`imbsweep.state` = 'complete'"
key = f"tags.imbsweep.trick.{1}"
error = "must be a subclass of imbsweep.losses.ImbalanceLoss"
'''
    assert _store_names_in_strings(code) == [(2, "imbsweep.state"), (3, "imbsweep.trick")]


def test_the_stores_names_are_spelt_only_in_names_py() -> None:
    """An MLflow tag or Optuna attribute of ours (``imbsweep.trial``, ``imbsweep:arm``) is a
    constant of ``imbsweep.names``, never a literal elsewhere, in a filter string neither."""
    found = [f"{path.relative_to(SRC)}:{line}: {name}" for path in (SRC / "imbsweep").rglob("*.py")
             if path.name != "names.py" for line, name in _store_names_in_strings(path.read_text())]
    assert found == []


#: the libraries whose private names are listed in docs/contributing.md
LIBRARIES = ("hydra", "omegaconf", "optuna", "mlflow")


def _own_private_names(files: list[Path]) -> set[str]:
    """Every ``_name`` the project itself defines (functions, classes, attributes, variables)."""
    own: set[str] = set()
    for path in files:
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                own.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                own.add(n.id)
    return {n for n in own if n.startswith("_")}


def _private_segment(dotted: str) -> bool:
    return any(p.startswith("_") and not p.endswith("_") for p in dotted.split("."))


def private_uses(root: Path) -> set[tuple[str, str]]:
    """``(file, name)`` for every private name of :data:`LIBRARIES` under ``root/src``: a
    private module imported, an underscored attribute the project does not define itself
    (``os._exit`` aside: public), a class path naming a private module."""
    files = sorted((root / "src").rglob("*.py"))
    own = _own_private_names(files)
    found: set[tuple[str, str]] = set()
    for path in files:
        rel = str(path.relative_to(root))
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and not n.level and n.module.split(".")[0] in LIBRARIES:
                if _private_segment(n.module):
                    found.add((rel, n.module))
                found.update((rel, f"{n.module}.{a.name}") for a in n.names if _private_segment(a.name))
            elif isinstance(n, ast.Attribute) and _private_segment(n.attr) and n.attr not in own:
                base = ast.unparse(n.value).split("(")[0]
                if base not in ("self", "cls", "os"):
                    found.add((rel, f"{base}.{n.attr}"))
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) \
                    and re.fullmatch(rf"({'|'.join(LIBRARIES)})(\.\w+)+", n.value) and _private_segment(n.value):
                found.add((rel, n.value))
    return found


def test_every_private_name_of_a_library_is_listed_with_its_reason() -> None:
    """docs/contributing.md's table "Private names we use, and why" is the list, one row a
    use: a new private use fails here until it is listed with its reason; a row whose use
    went (a public way found) fails too."""
    root = SRC.parent
    text = (root / "docs" / "contributing.md").read_text()
    table = text[text.index("## Private names we use, and why"):]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| (.+) \|$", table, flags=re.M)
    listed = {(f, name) for f, name, why in rows if why.strip()}
    assert len(listed) == len(rows)
    found = private_uses(root)
    assert ("src/imbsweep/sweep/_space.py", "trial._suggest") in found  # the finder sees them at all
    assert sorted(found - listed) == [], "a private name not listed in docs/contributing.md"
    assert sorted(listed - found) == [], "a listed private name the code no longer uses"
