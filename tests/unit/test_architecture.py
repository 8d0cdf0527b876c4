"""The package's import graph keeps the shape docs/ARCHITECTURE.md draws: no circles, no
import that goes up a layer, and the directions the design rests on (the planner is pure,
the Stripe client knows nothing of dbt, nothing outside objects/ names a single object).

Every import counts, those inside functions and under TYPE_CHECKING too: a lazy import is
still a dependency, only a cheaper one.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "dbt_stripe_activation"
ARCHITECTURE_MD = ROOT / "docs" / "ARCHITECTURE.md"

# Lowest first. A module may import its own layer (the cycle check keeps that honest) and
# the layers below; never one above. Patterns are module names relative to the package.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("facts", ("objects", "objects.*", "errors", "records", "results", "ratelimit")),
    ("boundaries", ("project", "spec", "stripe_api", "stripe_api.*")),
    ("stages", ("dbt_compat", "meta_block", "cross_model", "warehouse", "match", "planner")),
    ("execution", ("execution", "execution.*")),
    ("commands", ("context", "report", "notify", "lineage", "pipeline")),
    ("entry points", ("api", "cli", "integrations", "integrations.*")),
)

# The object contract and its generic machinery; every other objects.* module declares one
# Stripe object, and only objects/ may import it (the registry hands specs out).
OBJECTS_GENERIC = {"objects", "objects.contract", "objects.catalogue", "objects.values",
                   "objects.params", "objects.keys", "objects.macro_registry"}

# (importer pattern, imported pattern, why)
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("planner", "warehouse", "the planner is pure: a row and its match in, a plan out"),
    ("planner", "stripe_api*", "the planner is pure: it makes no request"),
    ("planner", "match", "the planner takes a match, it does not look one up"),
    ("planner", "execution*", "the planner does not run anything"),
    ("stripe_api*", "project", "the Stripe client knows nothing of dbt"),
    ("stripe_api*", "dbt_compat", "the Stripe client knows nothing of dbt"),
    ("stripe_api*", "warehouse", "the Stripe client knows nothing of the warehouse"),
    ("stripe_api*", "spec", "the Stripe client knows nothing of models"),
    ("ratelimit", "stripe_api*", "the limiter paces any client"),
    ("warehouse", "stripe_api*", "the warehouse does not call Stripe"),
    ("warehouse", "match", "the warehouse does not call Stripe"),
    ("cli", "warehouse", "the CLI does not build SQL"),
    ("cli", "dbt_compat", "the CLI does not call dbt"),
    ("cli", "execution*", "the CLI goes through the pipeline"),
    ("project", "dbt_compat", "the manifest is read as JSON; dbt's internals import it"),
    ("execution.events", "execution.upsert", "the two executors are peers"),
    ("execution.upsert", "execution.events", "the two executors are peers"),
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (names relative to the package; the
    package itself is ''). `from . import x` counts as importing `x` when it is a module."""
    root = package_dir.parent
    modules = {_module_name(p, root): p for p in package_dir.rglob("*.py")}
    prefix = package_dir.name
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    if not is_package:
                        base = base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                submodules = [f"{origin}.{a.name}" for a in node.names
                              if f"{origin}.{a.name}" in modules]
                targets = submodules or [origin]
            for target in targets:
                if target == prefix or target.startswith(prefix + "."):
                    found.add(target)
        graph[_relative(name, prefix)] = {_relative(t, prefix) for t in found} - {
            _relative(name, prefix)}
    return graph


def _relative(name: str, prefix: str) -> str:
    return "" if name == prefix else name.removeprefix(prefix + ".")


def _matches(module: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(module, pattern)


def layer_of(module: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(_matches(module, p) for p in patterns):
            return index
    raise LookupError(module)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each import circle once, as the modules along it (Tarjan's strongly connected
    components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Every import against the layers or a forbidden direction, as a sentence."""
    problems = []
    for importer, imported in sorted((a, b) for a, targets in graph.items() for b in targets):
        if "" in (importer, imported):
            continue  # the package facade: checked by its own test below
        if layer_of(imported) > layer_of(importer):
            problems.append(f"{importer} ({LAYERS[layer_of(importer)][0]}) imports {imported} "
                            f"({LAYERS[layer_of(imported)][0]}), a layer above it")
        for source, target, why in FORBIDDEN:
            if _matches(importer, source) and _matches(imported, target):
                problems.append(f"{importer} imports {imported}: {why}")
        if (imported.startswith("objects.") and imported not in OBJECTS_GENERIC
                and not importer.startswith("objects")):
            problems.append(f"{importer} imports {imported}, a single object's module: ask "
                            "the object contract (objects.get_object_spec) instead")
    return problems


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT / PACKAGE)


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    unplaced = []
    for module in graph:
        if module == "":
            continue
        try:
            layer_of(module)
        except LookupError:
            unplaced.append(module)
    assert not unplaced, f"place these modules in LAYERS (and the picture): {unplaced}"


def test_the_package_has_no_import_circle(graph: dict[str, set[str]]) -> None:
    # Imports of the facade take its version constant only (the test below): not an edge.
    assert cycles({module: targets - {""} for module, targets in graph.items()}) == []


def test_no_import_goes_up_a_layer_or_a_forbidden_way(graph: dict[str, set[str]]) -> None:
    assert violations(graph) == []


def test_the_facade_is_imported_for_its_version_only() -> None:
    """The package's __init__ loads the API lazily, on first use: a module inside may take
    only the `__version__` constant from it, or importing that module would load the API."""
    taken = []
    for path in (ROOT / PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and not node.module:
                depth = len(path.relative_to(ROOT / PACKAGE).parts) - 1
                if node.level - 1 == depth:  # `from . import x` in the package's root
                    taken += [f"{path.name}: {a.name}" for a in node.names
                              if a.name != "__version__" and not (ROOT / PACKAGE / f"{a.name}.py")
                              .exists() and not (ROOT / PACKAGE / a.name).is_dir()]
    assert taken == []


def test_the_checks_find_what_they_look_for() -> None:
    """The checker on a graph with a planted circle and planted wrong-way imports."""
    planted = {
        "planner": {"warehouse", "records"},
        "warehouse": {"execution.engine"},
        "execution.engine": {"warehouse", "objects.customer"},
        "records": set(),
        "objects.customer": set(),
    }
    assert cycles(planted) == [["execution.engine", "warehouse"]]
    found = violations(planted)
    assert "planner imports warehouse: the planner is pure: a row and its match in, a plan " \
        "out" in found
    assert any(p.startswith("warehouse (stages) imports execution.engine") for p in found)
    assert any("execution.engine imports objects.customer, a single object's module" in p
               for p in found)


def test_the_architecture_picture_names_every_module(graph: dict[str, set[str]]) -> None:
    """docs/ARCHITECTURE.md's picture of the modules is the one a newcomer reads first: a
    module missing from it is a module nobody was told about."""
    text = ARCHITECTURE_MD.read_text()
    picture = text[text.index("```text"): text.index("```", text.index("```text") + 7)]
    words = set(re.findall(r"[a-z_]+(?:\.[a-z_]+)*", picture))
    missing = [m for m in sorted(graph) if m and m.rsplit(".", 1)[-1] not in words]
    assert missing == [], f"add to the picture in docs/ARCHITECTURE.md: {missing}"
