"""Cache keys from the code itself: a stage's code digest replaces a hand-bumped version.

A stage's digest is the sha256 of its module and of every `pipeline` module it imports,
transitively: top-level and function-level imports (a lazy import runs too), and the
module names written as strings (`python -m pipeline.training.distill_job`, the runtime
table's "pipeline.measure.runtimes.gguf:GgufRuntime"). Imports under `if TYPE_CHECKING:`
never run and are left out. Each module counts by its syntax tree without docstrings, so
a comment, a docstring or a reformat does not re-run an 18-minute teacher; any change to
what the code does re-keys the stage, and the runner's content chaining re-runs
downstream whatever that changes.

The boundary modules (`BOUNDARY`) are left out, with what they import: a stage sees the
config and target only through its `Settings`, whose values are in the key already (the
Stage contract: `run()` reads `ctx.settings`, never the config). Behaviour that lives
outside Python files (a data table a stage reads) enters through a stage's optional
`code_salt` string.

Example:
    >>> from pipeline.codehash import closure, code_digest
    >>> "pipeline.measure.sequential" in closure("pipeline.stages.bench")
    True
    >>> "pipeline.config" in closure("pipeline.stages.bench")  # keyed through Settings
    False
    >>> len(code_digest("pipeline.stages.filter"))
    64
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent  # the `pipeline` package folder
BOUNDARY = frozenset({"pipeline.config", "pipeline.targets", "pipeline.stage"})
# a module written as a string: "pipeline.a.b" or "pipeline.a.b:Class"
MODULE_STRING = re.compile(r"(pipeline(?:\.\w+)+)(?::\w+)?")


def module_path(name: str, root: Path = PACKAGE) -> Path | None:
    """The file of a `pipeline` module under `root` (a package's __init__.py), or None
    when `name` is not a module (e.g. a class imported by name)."""
    base = root.joinpath(*name.split(".")[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


class _Imports(ast.NodeVisitor):
    """Every module name a tree imports or names as a string, outside TYPE_CHECKING;
    `package`: the module's package, for relative imports (pipeline.runkit ships in bundles
    without the `pipeline` package around it, so it imports its siblings relatively)."""

    def __init__(self, package: str) -> None:
        self.names: set[str] = set()
        self.package = package

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:  # the body only runs under a type checker
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names |= {alias.name for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # `from .x import y` in package p.q: p.q.x (`..x`: p.x)
            parent = self.package.rsplit(".", node.level - 1)[0]
            base = f"{parent}.{node.module}" if node.module else parent
        self.names.add(base)  # `from pkg import sub` imports pkg.sub when it is one
        self.names |= {f"{base}.{alias.name}" for alias in node.names}

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and (match := MODULE_STRING.fullmatch(node.value)):
            self.names.add(match.group(1))


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body: list[Any] = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _parsed(name: str, path: Path) -> tuple[str, frozenset[str]]:
    """(sha256 of module `name`'s docstring-free syntax tree, the pipeline modules it names).
    Cached per process: a build digests the code it started with."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    visitor = _Imports(name if path.name == "__init__.py" else name.rpartition(".")[0])
    visitor.visit(tree)
    dump = ast.dump(_without_docstrings(tree), include_attributes=False)
    names = frozenset(n for n in visitor.names if n == "pipeline" or n.startswith("pipeline."))
    return hashlib.sha256(dump.encode()).hexdigest(), names


def closure(module: str, root: Path = PACKAGE) -> dict[str, Path]:
    """The module and every pipeline module it reaches (name -> file), boundary excluded."""
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found or (name in BOUNDARY and name != module):
            continue
        path = module_path(name, root)
        if path is None:
            continue
        found[name] = path
        todo.extend(_parsed(name, path)[1])
    return dict(sorted(found.items()))


def code_digest(module: str, salt: str = "", root: Path = PACKAGE) -> str:
    """sha256 over the module closure's trees (and `salt`): equal exactly when no code the
    module can run has changed."""
    digest = hashlib.sha256(salt.encode())
    for name, path in closure(module, root).items():
        digest.update(f"{name}\0{_parsed(name, path)[0]}\n".encode())
    return digest.hexdigest()


def stage_code(stage: Any, root: Path = PACKAGE) -> str:
    """A registered stage's code digest (its class's module, plus its `code_salt`)."""
    return code_digest(type(stage).__module__, str(getattr(stage, "code_salt", "")), root)
