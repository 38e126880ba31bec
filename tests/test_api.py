"""The package's shape: a small public API over a private core, dependencies one way."""

import ast
import importlib
import inspect
import pathlib
import types

import funcnet as fn

PACKAGE = pathlib.Path(fn.__file__).parent
PUBLIC_NAMESPACES = {"callbacks", "datasets", "distributed", "losses", "playground", "plot"}

# What each part of funcnet._src may import from funcnet (DESIGN.md section 6):
# core, then layers and combinators, then losses and metrics, then files and
# parallel (which know nothing of training), then training, then the playground.
ALLOWED = {
    "core": set(),
    "custom_grad": {"core"},
    "summary": {"core"},
    "compilation_cache": set(),
    "layers": {"core"},
    "combinators": {"core", "layers"},
    "losses": {"core"},
    "metrics": {"core", "losses"},
    "files": {"core", "layers", "combinators", "losses", "metrics", "parallel"},
    "parallel": {"core", "layers", "combinators", "losses", "metrics"},
    "training": {
        "core",
        "layers",
        "combinators",
        "losses",
        "metrics",
        "files",
        "parallel",
        "compilation_cache",
        "summary",
    },
    "playground": {
        "core",
        "layers",
        "combinators",
        "losses",
        "metrics",
        "files",
        "parallel",
        "training",
        "compilation_cache",
        "summary",
    },
    # Transformer blocks and models: layers composed by combinators.
    "transformer": {"core", "layers", "combinators"},
    # Converters to and from other libraries: built on layers and combinators only.
    "interop": {"core", "layers", "combinators"},
}


def _src_modules():
    for path in sorted((PACKAGE / "_src").rglob("*.py")):
        parts = path.relative_to(PACKAGE / "_src").with_suffix("").parts
        yield path, parts


def _funcnet_imports(path):
    """(module imported, names imported, line) for every import of funcnet in a file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("funcnet"):
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("funcnet"):
                    yield alias.name, [], node.lineno


def test_dir_holds_the_api_and_no_implementation_module():
    public = {name for name in dir(fn) if not name.startswith("_")}
    modules = {name for name in public if isinstance(getattr(fn, name), types.ModuleType)}
    assert modules <= PUBLIC_NAMESPACES, modules - PUBLIC_NAMESPACES
    # playground and plot are namespaces a user imports (plot needs matplotlib).
    assert set(fn.__all__) == public - {"playground", "plot"}
    assert len(fn.__all__) == len(set(fn.__all__))


def test_every_public_name_has_a_docstring():
    for namespace in [fn, *(importlib.import_module(f"funcnet.{n}") for n in PUBLIC_NAMESPACES)]:
        assert namespace.__doc__, namespace.__name__
        for name in namespace.__all__:
            value = getattr(namespace, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue  # constants and type aliases: documented where they are defined
            assert inspect.getdoc(value), f"{namespace.__name__}.{name} has no docstring"


def test_public_namespaces_only_re_export():
    for name in PUBLIC_NAMESPACES:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in tree.body:
            assert isinstance(node, (ast.ImportFrom, ast.Import, ast.Assign, ast.Expr)), (
                f"funcnet/{name}.py line {node.lineno}: a public namespace only re-exports"
            )


def _own_package(parts):
    """A file's own package: its folder under _src, or the module itself at the top."""
    return ".".join(("funcnet", "_src", *(parts[:-1] if len(parts) > 1 else parts)))


def test_no_private_name_is_imported_across_packages():
    for path, parts in _src_modules():
        own = _own_package(parts)
        for module, names, line in _funcnet_imports(path):
            private = [n for n in names if n.startswith("_")]
            private += [p for p in module.split(".")[2:] if p.startswith("_")]
            if private:
                assert module == own or module.startswith(own + "."), (
                    f"{path.relative_to(PACKAGE)}:{line} imports private {private} from {module}"
                )


def test_dependencies_point_one_way():
    for path, parts in _src_modules():
        part = parts[0]
        for module, _, line in _funcnet_imports(path):
            target = module.split(".")
            if target[:2] != ["funcnet", "_src"]:
                raise AssertionError(
                    f"{path.relative_to(PACKAGE)}:{line} imports {module}: the implementation "
                    "imports funcnet._src only, never the public namespaces"
                )
            other = target[2] if len(target) > 2 else None
            if other is None or other == part:
                continue
            assert other in ALLOWED[part], (
                f"{path.relative_to(PACKAGE)}:{line}: {part} may not import {other} ({module})"
            )


def _is_module(dotted):
    relative = pathlib.Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for path, parts in _src_modules():
        name = ".".join(("funcnet", "_src", *parts)).removesuffix(".__init__")
        graph[name] = set()
        for module, names, _ in _funcnet_imports(path):
            if module.startswith("funcnet._src"):
                # ``from package import module`` imports the module, not a cycle
                # through the package's __init__.
                submodules = [f"{module}.{n}" for n in names if _is_module(f"{module}.{n}")]
                graph[name].update(submodules or [module])

    def visit(node, stack):
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        for nxt in graph.get(node, ()):
            visit(nxt, [*stack, node])

    for node in graph:
        visit(node, [])
