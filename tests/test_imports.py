"""Imports run one way through the whole package, and no module imports another that imports it back.

Ranks (lower first; a module may import only modules of its rank or lower):
errors/config/precision -> audio, motion, smoothing, sampling, options -> nn -> checkpoint -> convert -> hub
-> levels, graphs, generation -> streaming -> model -> arkit, flame, bench -> viz, metrics, batch, serve, train,
integrations -> cli. Within a rank, the import graph of modules must have no circle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unils"

RANKS = {
    "unils._version": 0, "unils.errors": 0, "unils.config": 0, "unils.precision": 0,
    "unils.audio": 1, "unils.resample": 1, "unils.motion": 1, "unils.smoothing": 1, "unils.sampling": 1,
    "unils.options": 1,
    "unils.nn": 2, "unils.checkpoint": 3, "unils.convert": 4, "unils.hub": 5,
    "unils.levels": 6, "unils.graphs": 6, "unils.generation": 6, "unils.streaming": 7, "unils.model": 8,
    # The extras and tools, above the core.
    "unils.arkit": 9, "unils.flame": 9, "unils.bench": 9,
    "unils.viz": 10, "unils.metrics": 10, "unils.batch": 10, "unils.serve": 10, "unils.train": 10,
    "unils.pipecat": 10, "unils.livekit": 10, "unils.voice": 10,
    "unils.cli": 11,
    # The package's front door imports the core for users; __main__ runs the CLI.
    "unils": 12, "unils.__main__": 12,
}


def _rank(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANKS:
            return RANKS[".".join(parts[:n])]
    raise AssertionError(f"{module} has no rank: add its package to RANKS in tests/test_imports.py")


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path, me: str, typing_too: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module) of every unils import, function-level ones included, TYPE_CHECKING ones
    only with ``typing_too`` (a circle through type hints is still a knot)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if not typing_too and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("unils"):
                continue
            for a in node.names:  # `from x import y`: y may be a submodule
                sub = f"{target}.{a.name}"
                found.append((node.lineno, sub if sub in MODULES or node.module is None else target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("unils")]
    return found


def _violations(path: Path, me: str) -> list[str]:
    return [
        f"{me}:{line} imports {target}"
        for line, target in _imports(path, me)
        if target == "unils.__version__" or _rank(target) > _rank(me)
    ]


def test_every_module_has_a_rank_and_imports_run_one_way():
    bad = [v for name, path in MODULES.items() for v in _violations(path, name)]
    assert not bad, bad


def test_no_import_circle_anywhere():
    graph = {
        name: {t for _, t in _imports(path, name, typing_too=True) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }
    # Tarjan's strongly connected components: a component of more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, circles


def test_core_modules_import_on_their_own_in_rank_order():
    ranked = sorted((n for n in MODULES if _rank(n) <= RANKS["unils.model"]), key=_rank)
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % ranked
    env = dict(os.environ, PYTHONPATH=str(SRC.parent))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_the_checks_catch_late_imports_and_circles(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from .codec import MotionCodec\n"
        "if TYPE_CHECKING:\n    from ..model import UniLS\n"
        "def f():\n    from ..hub import resolve_checkpoint\n    from .. import __version__\n"
    )
    assert _violations(probe, "unils.nn.probe") == [
        "unils.nn.probe:5 imports unils.hub",
        "unils.nn.probe:6 imports unils.__version__",
    ]
