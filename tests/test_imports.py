"""The package's import structure: no cycles (lazy imports included), the library never reaching into the CLI,
Rich only behind the CLI, and every module importable on its own in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "llm2vec_search"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def lazy_names(tree: ast.Module) -> dict[str, str]:
    """A package's `_LAZY` table (public name → module), which its `__getattr__` imports on first use."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported(name: str, tree: ast.Module, type_checking: bool = False) -> dict[str, set[str]]:
    """Every module this one imports, at the top or inside a function, and under TYPE_CHECKING when
    `type_checking`; the value is the set of names taken from it (empty for `import x`)."""
    found: dict[str, set[str]] = {}
    is_package = MODULES[name].name == "__init__.py"

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node) and not type_checking:
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.setdefault(target, set()).update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def internal_edges(type_checking: bool = False) -> dict[str, set[str]]:
    """module → the package's modules it imports (`type_checking`: also for type hints only), with `from pkg
    import name` resolved to the module that defines `name` where that is a submodule or a lazily imported
    name."""
    trees = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}
    lazy = {name: lazy_names(tree) for name, tree in trees.items()}
    edges: dict[str, set[str]] = {}
    for name, tree in trees.items():
        targets = set()
        for module, names in imported(name, tree, type_checking).items():
            if module not in MODULES:
                continue
            for item in names or {""}:
                if f"{module}.{item}" in MODULES:
                    targets.add(f"{module}.{item}")
                elif item in lazy[module]:  # a full module name, or one relative to the package
                    source = lazy[module][item]
                    targets.add(source if source.startswith(f"{PACKAGE}.") else f"{module}.{source}")
                else:
                    targets.add(module)
        edges[name] = targets - {name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_the_package():
    """Not even through imports for type hints, which say two modules' concerns are tangled just the same.
    Package `__init__` modules are left out: importing a submodule runs its package first by design."""
    edges = internal_edges(type_checking=True)
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    modules = {name: targets - packages for name, targets in edges.items() if name not in packages}
    assert find_cycle(modules) is None


def test_the_library_does_not_import_the_cli():
    cli = f"{PACKAGE}.cli"
    offenders = {
        name: sorted(t for t in targets if t == cli or t.startswith(cli + "."))
        for name, targets in internal_edges().items()
        if not (name == cli or name.startswith(cli + ".") or name == f"{PACKAGE}.__main__")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_rich_is_imported_only_by_the_cli():
    """The library reports progress through callbacks; only the CLI draws (the loss plot is matplotlib's)."""
    users = sorted(
        name
        for name, path in MODULES.items()
        if not name.startswith(f"{PACKAGE}.cli")
        and any(module.split(".")[0] == "rich" for module in imported(name, ast.parse(path.read_text())))
    )
    assert users == []


# Imports the third-party libraries given after the first argument, then forks once per package module named
# in the first (comma-separated): each child imports its module into a process where no module of the package
# is loaded yet, and a line is printed if that fails or the child dies. A fresh interpreter per module took
# 40-50 s on 2 cores, most of it importing torch and transformers again each time.
FORKING_IMPORTER = """
import importlib, os, sys
for library in sys.argv[2:]:
    try:
        importlib.import_module(library)
    except Exception:
        pass  # an optional extra that is not installed: the module that needs it reports it
for name in sys.argv[1].split(","):
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as error:
            print(name, type(error).__name__, str(error).splitlines()[0] if str(error) else "", flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):  # a crash in native code prints nothing of its own
        print(name, "killed by signal", os.WTERMSIG(status), flush=True)
"""


def third_party_imports() -> list[str]:
    """The top-level libraries any module of the package imports, at its top or inside a function."""
    found = set()
    for name, path in MODULES.items():
        for module in imported(name, ast.parse(path.read_text()), type_checking=True):
            top = module.split(".")[0]
            if top and top != PACKAGE and top not in sys.stdlib_module_names:
                found.add(top)
    return sorted(found)


def test_third_party_imports_are_found():
    assert {"torch", "numpy", "faiss", "onnxruntime"} <= set(third_party_imports())


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    """Each module imported where none of the package is loaded yet: an import that works only after another
    module of the package was loaded fails. The libraries are loaded once, before the forks."""
    libraries = sorted(name for name in MODULES if not name.endswith(".__main__"))  # that one runs the CLI
    result = subprocess.run(
        [sys.executable, "-c", FORKING_IMPORTER, ",".join(libraries), *third_party_imports()],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ""
