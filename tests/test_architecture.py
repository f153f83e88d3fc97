"""The package's import graph: no cycles, and imports only point down the layers of the README's layout.

Every `import` statement counts, at module level or inside a function (a function-level import is
still a dependency; moving an import into a function must not be a way around these rules).
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "simkd_lite"

# Top to bottom, as in the README's "Layout" section. A module may import its own layer or lower ones.
LAYERS = [
    ("faces", ["simkd_lite.cli", "simkd_lite.__main__"]),
    ("experiments", ["simkd_lite.experiments"]),
    ("training", ["simkd_lite.training"]),
    ("looking", ["simkd_lite.viz", "simkd_lite.widgets", "simkd_lite.analysis", "simkd_lite.assignment"]),
    ("methods", ["simkd_lite.distillers"]),
    ("files", ["simkd_lite.checkpoints"]),
    ("foundations", ["simkd_lite.models", "simkd_lite.data", "simkd_lite.errors", "simkd_lite.tempfiles"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path], missing: list | None = None) -> set[str]:
    """The simkd_lite modules that `name` imports anywhere in its file (unresolvable ones go to `missing`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    if missing is not None:
        missing.extend(f"{name} imports {m}" for m in sorted(found)
                       if m.split(".")[0] == "simkd_lite" and m not in modules)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_every_module_has_a_layer():
    unplaced = [m for m in all_modules() if m != "simkd_lite" and layer_of(m) is None]
    assert not unplaced, f"modules outside the README's layers (add them to the layout): {unplaced}"


def test_every_import_of_the_package_resolves():
    """A module that moved leaves no import of its old name behind (here, in the tests or the benchmarks)."""
    modules, missing = all_modules(), []
    for name, path in modules.items():
        imports_of(name, path, modules, missing)
    root = PACKAGE.parent
    for path in [*root.glob("tests/*.py"), *root.glob("benchmarks/*.py"), *root.glob("scripts/*.py")]:
        imports_of(f"simkd_lite_outside.{path.stem}", path, modules, missing)
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_imports_only_point_down():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
              for m, deps in import_graph().items() if layer_of(m) is not None
              for d in deps if d == "simkd_lite" or (layer_of(d) or 0) < layer_of(m)]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph, state, cycles = import_graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    source = "from .registry import create_model\n\ndef f():\n    from simkd_lite.training import loop\n"
    path = PACKAGE / "models" / "_probe.py"
    modules = {**all_modules(), "simkd_lite.models._probe": path, "simkd_lite.training.loop": path}
    tree_path = tmp_path / "_probe.py"
    tree_path.write_text(source)
    found = imports_of("simkd_lite.models._probe", tree_path, modules)
    assert {"simkd_lite.models.registry", "simkd_lite.training.loop"} <= found


# ------------------------------------------------------------------------------------ the issue-18 rules
def test_the_cli_talks_only_to_the_experiment_api():
    """cli.py imports nothing of the package but `simkd_lite.experiments` (and its modules) and `simkd_lite.errors`."""
    modules = all_modules()
    allowed = ("simkd_lite.experiments", "simkd_lite.errors")
    reached = [m for m in imports_of("simkd_lite.cli", modules["simkd_lite.cli"], modules)
               if not any(m == a or m.startswith(a + ".") for a in allowed)]
    assert not reached, f"cli.py reaches past the experiment API: {reached}"


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_training_has_one_loop():
    """One module of training/ runs epochs (calls a batch stream's `.epoch(e)`) and defines `fit`: loop.py."""
    runs_epochs, defines_fit = set(), set()
    for name, path in all_modules().items():
        if not name.startswith("simkd_lite.training"):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "epoch"
               for n in ast.walk(tree)):
            runs_epochs.add(name)
        if any(f.name.startswith("fit") for f in _functions(path)):
            defines_fit.add(name)
    assert runs_epochs == {"simkd_lite.training.loop"} and defines_fit == {"simkd_lite.training.loop"}, \
        (runs_epochs, defines_fit)


def test_no_function_over_100_lines_or_12_parameters():
    too_big = []
    for name, path in all_modules().items():
        for f in _functions(path):
            args = f.args
            count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
            count -= bool(args.args) and args.args[0].arg in ("self", "cls")
            lines = f.end_lineno - f.lineno + 1
            if lines > 100 or count > 12:
                too_big.append(f"{name}.{f.name}: {lines} lines, {count} parameters")
    assert not too_big, "split or group these (small frozen dataclasses for option groups):\n" + "\n".join(too_big)


def test_loading_names_no_method():
    """How a trained method's checkpoint predicts is the distiller's to say (`predictor_from_checkpoint`)."""
    source = (PACKAGE / "experiments" / "loading.py").read_text()
    assert '"simkd"' not in source and "'simkd'" not in source
