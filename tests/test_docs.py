"""The documentation: the site builds strictly, documents every public symbol, and its code runs.

Conventions for code blocks in docs/*.md and README.md: see tests/helpers/docs_snippets.py.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

from helpers import docs_snippets as ds
import pytest

ROOT = ds.ROOT
DEMO_DIR = ROOT / "src" / "unils" / "assets" / "demo"

# Modules whose __all__ is the public API: every name listed there must have a docstring and be
# rendered by a `::: ...` directive of the site (docs/api.md).
PUBLIC_MODULES = [
    "unils",
    "unils.arkit",
    "unils.arkit.animation",
    "unils.arkit.convert",
    "unils.arkit.expression_map",
    "unils.arkit.head",
    "unils.arkit.livelink",
    "unils.arkit.names",
    "unils.arkit.rotations",
    "unils.audio",
    "unils.batch",
    "unils.batch.command",
    "unils.batch.manifest",
    "unils.batch.plan",
    "unils.batch.runner",
    "unils.batch.shard",
    "unils.batch.summary",
    "unils.bench",
    "unils.checkpoint",
    "unils.config",
    "unils.convert",
    "unils.errors",
    "unils.generation",
    "unils.graphs",
    "unils.levels",
    "unils.hub",
    "unils.metrics",
    "unils.metrics.folder",
    "unils.metrics.ground_truth",
    "unils.metrics.scores",
    "unils.model",
    "unils.motion",
    "unils.options",
    "unils.precision",
    "unils.resample",
    "unils.sampling",
    "unils.smoothing",
    "unils.streaming",
    "unils.flame",
    "unils.flame.indices",
    "unils.flame.io",
    "unils.flame.model",
    "unils.flame.render",
    "unils.serve",
    "unils.serve.access",
    "unils.serve.batcher",
    "unils.serve.client",
    "unils.serve.hello",
    "unils.serve.protocol",
    "unils.serve.server",
    "unils.serve.settings",
    "unils.serve.slots",
    "unils.train.compact",
    "unils.train.corpus",
    "unils.train.corpus.channels",
    "unils.train.corpus.generate",
    "unils.train.corpus.motion_rules",
    "unils.train.corpus.planning",
    "unils.train.corpus.writing",
    "unils.train.data",
    "unils.train.losses",
    "unils.train.mesh",
    "unils.train.stages",
    "unils.train.trainer",
    "unils.train.tts",
    "unils.viz",
    "unils.viz.activity",
    "unils.viz.arkit_plot",
    "unils.viz.avatar",
    "unils.viz.head3d",
    "unils.viz.plot",
    "unils.viz.preview",
    "unils.viz.video",
    "unils.voice",
    "unils.pipecat",
    "unils.livekit",
]
# torch.nn.Module methods that subclasses override with torch's meaning (documented by torch).
TORCH_HOOKS = {"extra_repr"}
# Modules that are not API, and why. A new module must be added to one of the two lists.
INTERNAL_MODULES = {
    "unils.__main__": "runs the CLI",
    "unils.cli": "the command line, documented on docs/cli.md",
    "unils.nn": "network building blocks, reached through UniLS; names follow the checkpoint layout",
    "unils.train": "a namespace; its modules are listed one by one",
    "unils.viz._deps": "private",
    "unils.serve.metrics": "the server's /metrics counters, documented on docs/serve.md",
    "unils.serve.scheduler": "the server's worker scheduling, documented on docs/serve.md",
    "unils.serve.session": "the server's per-connection handling, documented on docs/serve.md",
    "unils._version": "holds __version__, exported by unils",
    "unils.convert.cache": "part of unils.convert, whose __all__ is the API",
    "unils.convert.keys": "part of unils.convert, whose __all__ is the API",
    "unils.convert.meta": "part of unils.convert, whose __all__ is the API",
    "unils.convert.official": "part of unils.convert, whose __all__ is the API",
    "unils.convert.remote": "Hub listing/download helpers of unils.convert and unils.hub",
    "unils.convert.select": "part of unils.convert, whose __all__ is the API",
    "unils.convert.wav2vec2": "part of unils.convert, whose __all__ is the API",
}


def _all_modules() -> list[str]:
    import unils

    names = ["unils"]
    for info in pkgutil.walk_packages(unils.__path__, "unils."):
        names.append(info.name)
    return names


def _internal(name: str) -> bool:
    return name in INTERNAL_MODULES or name.startswith(("unils.nn.", "unils.cli."))


# ---------------------------------------------------------------------------------------------------- build
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site once (strict) for the tests below; returns (exit status, output, site folder)."""
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr, out


def test_site_builds_strictly(site):
    rc, output, _ = site
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert rc == 0 and not warnings, "mkdocs build --strict failed:\n" + output


def test_demo_page_includes_the_model_card(site):
    card = DEMO_DIR / "README.md"
    if not card.is_file():
        pytest.skip("demo checkpoint not bundled yet (no src/unils/assets/demo/README.md)")
    html = (site[2] / "demo" / "index.html").read_text(encoding="utf-8")
    text = card.read_text(encoding="utf-8")
    body = text
    if text.startswith("---"):  # Hub-style YAML metadata: keep it off the page
        lines = text.splitlines()
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        first = next(line for line in lines[1:end] if line.strip())
        body, start = "\n".join(lines[end + 1 :]), end + 2  # start: the 1-based line after the metadata
        assert first.strip() not in html, (
            f"the card's metadata shows on docs/demo.md; include it from line {start}: "
            f'--8<-- "src/unils/assets/demo/README.md:{start}:"'
        )
    words = re.findall(r"[A-Za-z]{6,}", body)[:20]
    assert words and all(w in html for w in words), "docs/demo.md does not show the model card"


# ---------------------------------------------------------------------------------------------------- API
def test_every_module_is_classified():
    unknown = [m for m in _all_modules() if m not in PUBLIC_MODULES and not _internal(m)]
    assert unknown == [], "add these modules to PUBLIC_MODULES (and docs/api.md) or INTERNAL_MODULES"


def _public_symbols():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{module_name} has no __all__"
        for name in exported:
            yield module_name, name, getattr(module, name)


def _anchors(site_dir: Path) -> set[str]:
    found: set[str] = set()
    for html in site_dir.rglob("*.html"):
        found.update(re.findall(r'id="(unils(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"', html.read_text(encoding="utf-8")))
    return found


def _resolve(path: str):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


@functools.cache
def _griffe_package():
    """The package as mkdocstrings sees it (attribute docstrings are string literals after the assignment)."""
    import griffe

    return griffe.load("unils", search_paths=[str(ROOT / "src")], resolve_aliases=False,
                       extensions=griffe.load_extensions("griffe_sphinx"))


def _has_docstring(module_name: str, name: str, obj) -> bool:
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        # dataclasses invent "Name(field, ...)" when they have none of their own
        return bool(doc and doc.strip()) and not doc.startswith(f"{getattr(obj, '__name__', '')}(")
    member = _griffe_package()[module_name.removeprefix("unils.")] if "." in module_name else _griffe_package()
    member = member[name]
    while member.is_alias:
        member = member.final_target
    return bool(member.docstring and member.docstring.value.strip())


def test_every_public_symbol_has_a_docstring_and_is_rendered(site):
    rc, _, site_dir = site
    if rc != 0:
        pytest.skip("the site did not build (see test_site_builds_strictly)")
    anchors = _anchors(site_dir)
    by_identity = {}
    for anchor in anchors:
        obj = _resolve(anchor)
        if obj is not None and not isinstance(obj, (int, float, str, bool, type(None))):
            by_identity.setdefault(id(obj), anchor)
    undocumented, unrendered = [], []
    for module_name, name, obj in _public_symbols():
        if name == "__version__":
            continue  # a version string, shown on the changelog
        if not _has_docstring(module_name, name, obj):
            undocumented.append(f"{module_name}.{name}")
        rendered = f"{module_name}.{name}" in anchors or id(obj) in by_identity and not isinstance(
            obj, (int, float, str, bool, type(None))
        )
        if not rendered:  # the same constant rendered under the module that defines it
            rendered = any(a.endswith("." + name) and _resolve(a) == obj for a in anchors if a.endswith("." + name))
        if not rendered:
            unrendered.append(f"{module_name}.{name}")
    assert not undocumented, "public names without a docstring:\n" + "\n".join(undocumented)
    assert not unrendered, "public names that no `::: ...` directive renders (docs/api.md):\n" + "\n".join(unrendered)


def test_public_methods_have_docstrings():
    """mkdocstrings leaves out members without a docstring: every public method must have one."""
    missing, seen = [], set()
    for _, _, cls in _public_symbols():
        if not inspect.isclass(cls) or id(cls) in seen or not cls.__module__.startswith("unils"):
            continue
        seen.add(id(cls))
        for attr, value in vars(cls).items():
            if attr.startswith("_") or attr in TORCH_HOOKS:
                continue
            func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if (inspect.isfunction(func) or isinstance(value, property)) and not (func.__doc__ or "").strip():
                missing.append(f"{cls.__module__}.{cls.__qualname__}.{attr}")
    assert not missing, "public methods without a docstring:\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------------------------- code
def _blocks():
    blocks = []
    for page in ds.doc_pages():
        blocks.extend(ds.extract_blocks(page))
    return blocks


BLOCKS = _blocks()
RUNNABLE = [b for b in BLOCKS if b.runs]


def test_code_blocks_name_a_known_language():
    unknown = [f"{b.id} ({b.lang or 'no language'})" for b in BLOCKS if b.lang not in ds.RUN_LANGS | ds.SHOW_LANGS]
    assert unknown == [], f"label fences with one of {sorted(ds.RUN_LANGS | ds.SHOW_LANGS)}"


def _demo_available() -> bool:
    import unils

    folder = Path(unils.__file__).parent / "assets" / "demo"
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


_RESULTS: dict[bool, dict[str, dict]] = {}


def _results(include_slow: bool, workroot: Path) -> dict[str, dict]:
    """Run every page's blocks once per session (in one subprocess) and index the results by block."""
    if include_slow not in _RESULTS:
        items = ds.plan(BLOCKS, demo_available=_demo_available(), include_slow=include_slow)
        folder = workroot / ("slow" if include_slow else "fast")
        folder.mkdir(parents=True, exist_ok=True)
        plan_path, results_path = folder / "plan.json", folder / "results.json"
        plan_path.write_text(json.dumps(items))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(
            [sys.executable, str(Path(ds.__file__)), str(plan_path), str(results_path), str(folder / "pages")],
            check=False, env=env, capture_output=True, text=True, timeout=1800,
        )
        if proc.returncode != 0 or not results_path.is_file():
            pytest.fail(f"the snippet runner crashed:\n{proc.stdout}\n{proc.stderr}")
        _RESULTS[include_slow] = {r["id"]: r for r in json.loads(results_path.read_text())}
    return _RESULTS[include_slow]


@pytest.fixture(scope="session")
def snippet_root(tmp_path_factory):
    return tmp_path_factory.mktemp("snippets")


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.marker == "slow" else []) for b in RUNNABLE],
)
def test_code_block_runs(block, snippet_root):
    result = _results(block.marker == "slow", snippet_root)[block.id]
    if result["status"] == "skipped":
        pytest.skip(f"{block.id}: {result['reason']}")
    assert result["status"] == "passed", f"{block.id} ({block.lang}) failed:\n{block.code}\n---\n{result['output']}"
