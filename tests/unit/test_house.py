"""The house rules (docs/design.md, "The house"), checked on the source itself.

The import graph is read with `ast`, not by importing: every `import` counts, also the lazy ones
inside functions (a cycle through a lazy import is still a cycle, only a later one), except
those under `if TYPE_CHECKING:`, which never run. `from a import b` is an edge to the module
`a.b` when that is a module, else to `a`. Importing `a.b.c` does not count as importing `a.b`'s
`__init__`: the package docstrings import nothing, so that could not close a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("protocols", "security", "firmware_sim", "edge", "cloud", "wattrail")
MAX_LINES = 400

# Which top-level package may import which (DESIGN.md, "Packages"); itself is always allowed.
MAY_IMPORT: dict[str, set[str]] = {
    "protocols": set(),
    "security": {"protocols"},
    "firmware_sim": {"protocols"},
    "edge": {"protocols", "security"},
    "cloud": {"protocols", "security"},
    "wattrail": {"protocols", "security", "firmware_sim", "edge", "cloud"},
}

# The rooms of cloud/ (docs/design.md): which of its rooms each may import. Analytics' rooms
# are listed on their own because they are the ones that used to be mixed.
CLOUD_MAY_IMPORT: dict[str, set[str]] = {
    "cloud.store": set(),
    # the ingestor judges the alarm rules in the transaction that stores a batch
    "cloud.ingest": {"cloud.store", "cloud.alarms"},
    "cloud.alarms": {"cloud.store"},
    "cloud.analytics.kernels": set(),
    # data/ reads into the pipeline's Feed and writes its Report: it knows their types; the
    # pipeline computes and knows no database
    "cloud.analytics.data": {"cloud.store", "cloud.analytics.kernels", "cloud.analytics.pipeline"},
    "cloud.analytics.pipeline": {"cloud.analytics.kernels"},
    "cloud.analytics.evaluation": {"cloud.analytics.kernels", "cloud.analytics.data",
                                   "cloud.analytics.pipeline"},
    "cloud.analytics": {"cloud.store"},  # the room's top-level modules (batch, ...): all of it
    # local time, tariffs, determinants, VEE; reads registers into intervals with analytics'
    # interval kernel (analytics never imports mdm: it reads the post-VEE layer through store)
    "cloud.mdm": {"cloud.store", "cloud.analytics.kernels"},
    # the customer archive's checks: reads the feed analytics reads, reruns the loss report
    "cloud.archive": {"cloud.store", "cloud.analytics", "cloud.analytics.data"},
    "cloud.api": {"cloud.store", "cloud.analytics", "cloud.mdm", "cloud.archive"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _real_edges() -> dict[str, set[str]]:
    """Edges without the `a` of `from a import b` when `a.b` is the module meant."""
    mods = _modules()
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        targets: set[str] = set()
        pending: list[tuple[str, list[str]]] = []
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in mods)
                continue
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                keep = len(parts) - node.level + int(path.name == "__init__.py")
                base = ".".join([*parts[:keep], *([base] if base else [])])
            names = [a.name for a in node.names]
            pending.append((base, names))
        for base, names in pending:
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in mods]
            targets.update(subs)
            if len(subs) < len(names) and base in mods:
                targets.add(base)  # a name defined in the module (or package) itself
        targets.discard(name)
        out[name] = targets
    return out


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for n in node.orelse:
                yield from _import_nodes(n)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        else:
            yield from _import_nodes(node)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(_real_edges()) == []


def _room(module: str, rooms: dict[str, set[str]]) -> str | None:
    best = None
    for room in rooms:
        if (module == room or module.startswith(room + ".")) and (best is None
                                                                   or len(room) > len(best)):
            best = room
    return best


def test_packages_import_only_what_design_md_allows() -> None:
    wrong = []
    for mod, targets in sorted(_real_edges().items()):
        pkg = mod.split(".")[0]
        for t in sorted(targets):
            other = t.split(".")[0]
            if other != pkg and other not in MAY_IMPORT[pkg]:
                wrong.append(f"{mod} imports {t}")
    assert wrong == []


def test_cloud_rooms_import_only_what_design_md_allows() -> None:
    wrong = []
    for mod, targets in sorted(_real_edges().items()):
        room = _room(mod, CLOUD_MAY_IMPORT)
        if room is None:
            continue
        for t in sorted(targets):
            other = _room(t, CLOUD_MAY_IMPORT)
            if other is None or other == room:
                continue
            if room == "cloud.analytics" and other.startswith("cloud.analytics"):
                continue  # the room's own top level (batch, ...) wires its sub-rooms
            if other not in CLOUD_MAY_IMPORT[room]:
                wrong.append(f"{mod} ({room}) imports {t} ({other})")
    assert wrong == []


def test_no_module_is_over_400_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_cloud_imports_neither_typer_nor_rich() -> None:
    found = []
    for name, path in _modules().items():
        if not name.startswith("cloud"):
            continue
        for node in _import_nodes(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""])
            found += [f"{name}: {n}" for n in names if n.split(".")[0] in ("typer", "rich")]
    assert found == []


MAIN_TABLES = ("readings", "envelopes", "quarantine")
_SQL = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+(" + "|".join(MAIN_TABLES) + r")\b", re.I)


def test_sql_on_the_main_tables_is_written_in_cloud_store_only() -> None:
    found = []
    for name, path in _modules().items():
        # edge.outbox's `envelopes` is the agent's own SQLite outbox, not the cloud's table
        if name.startswith("cloud.store") or name == "edge.outbox":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _SQL.search(line) and re.search(r"['\"]", line):
                found.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert found == []


def test_field_lists_come_from_measured_fields() -> None:
    """No module types out the measured fields again: a tuple of three or more of their names
    outside protocols/reading.py is a copy that would drift."""
    from protocols.reading import MEASURED_FIELDS

    names = set(MEASURED_FIELDS)
    copies = []
    for name, path in _modules().items():
        if name == "protocols.reading":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                lits = [e.value for e in node.elts if isinstance(e, ast.Constant)
                        and isinstance(e.value, str)]
                if len(lits) >= len(names) // 2 and set(lits) <= names:
                    copies.append(f"{name}:{node.lineno}")
    assert copies == []
