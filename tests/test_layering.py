"""The packages depend one way: unet_core <- unetflow <- tune <- flows <- unetflow_cli.

Every import counts, also one inside a function (a lazy import is still a dependency);
only imports under `if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("unet_core", "unetflow", "tune", "flows", "unetflow_cli")

# unet_core is a plain PyTorch library: anyone can use it without the orchestration.
UNET_CORE_THIRD_PARTY = {
    "torch",
    "numpy",
    "scipy",
    "pydantic",
    "PIL",
    "tifffile",
    "nibabel",
    "zarr",
    "fsspec",
    "s3fs",
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> set[str]:
    """Absolute module names a module imports (relative imports are not used here)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # `from pkg import module` depends on pkg.module when that is a module.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    files = [p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        imported = _imports(ast.parse(path.read_text(), str(path)))
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_every_import_points_down_the_layers():
    wrong = [
        f"{mod} imports {dep}"
        for mod, deps in project_graph().items()
        for dep in sorted(deps)
        if _layer(dep) > _layer(mod)
    ]
    assert not wrong, (
        "imports against the layer order " + " <- ".join(LAYERS) + ":\n" + "\n".join(wrong)
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ re-exporting its modules is not a cycle between modules.
    packages = {m for m in graph if (ROOT / m.replace(".", "/") / "__init__.py").exists()}
    return {m: deps - packages for m, deps in graph.items() if m not in packages}


def test_no_import_cycles_between_modules():
    cycles = _cycles(_without_packages(project_graph()))
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_unet_core_imports_only_its_allowlist():
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for path in sorted((ROOT / "unet_core").rglob("*.py")):
        for mod in _imports(ast.parse(path.read_text())):
            top = mod.split(".")[0]
            if top in stdlib or top == "unet_core" or top in UNET_CORE_THIRD_PARTY:
                continue
            wrong.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not wrong, "unet_core imports outside its allowlist:\n" + "\n".join(sorted(set(wrong)))


def test_importing_all_of_unet_core_loads_no_orchestration():
    modules = sorted(_module_name(p) for p in (ROOT / "unet_core").rglob("*.py"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'ray', 'mlflow', 'unetflow', 'tune', 'flows'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
