"""Code blocks of the documentation as tests: extraction, and the runner that executes them.

Conventions (for everyone who writes docs/*.md or README.md):

- Every fenced block names its language. ``python`` and ``bash`` blocks run; ``text``, ``json``, ``js``,
  ``yaml`` and ``toml`` blocks are shown only.
- The blocks of one page run in order, like a reader pasting them into one Python session and one
  shell: a later block may use names and files from an earlier one. Each page gets its own empty
  working directory holding ``examples/dialogue/person_a.flac`` and ``person_b.flac`` (the repository's
  16 s dialogue) and ``me.wav`` / ``you.wav`` (the first 4.4 s of those, two windows).
- A model that a block needs is the bundled demo: ``UniLS.from_pretrained("demo")``, or a ``unils``
  command without ``--model``. Until the demo checkpoint is bundled, those blocks (and the blocks
  after them on the same page, which may need their results) are skipped as "demo checkpoint not
  bundled yet".
- A block that cannot run in CI gets an HTML comment on the line before its fence:
  ``<!-- test: skip (needs FLAME 2020) -->`` (the reason is required and is reported), or
  ``<!-- test: slow -->`` for a block that runs only with ``pytest -m slow``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_LANGS = {"python", "bash"}
SHOW_LANGS = {"text", "json", "js", "yaml", "toml"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<kind>skip|slow)\s*(?:\((?P<reason>.*)\))?\s*-->\s*$")
DEMO_NOT_BUNDLED = "demo checkpoint not bundled yet"
# unils commands that load a model, and so use the bundled demo when --model is not given.
_MODEL_COMMANDS = re.compile(r"\bunils\s+(?:-\S+\s+)*(generate|stream|serve|preview)\b")


def doc_pages() -> list[Path]:
    """The Markdown files whose code blocks are tested: the site's pages and the README."""
    return sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None = None  # "skip" or "slow"
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS

    def needs_demo(self) -> bool:
        """Whether the block loads the bundled demo model (by name, or as the CLI's default)."""
        if self.lang == "python":
            return bool(re.search(r"""from_pretrained\(\s*["']demo["']""", self.code))
        if self.lang == "bash":
            for command in re.split(r"&&|;|\n", self.code):
                if (
                    _MODEL_COMMANDS.search(command)
                    and not re.search(r"(^|\s)(--model|-m)(\s|=)", command)
                    and not re.search(r"\s(-h|--help)\b", command)
                ):
                    return True
        return False


def extract_blocks(path: Path) -> list[Block]:
    """All fenced code blocks of a Markdown file, with their ``<!-- test: ... -->`` markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = str(path.relative_to(ROOT))
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group("indent"), m.group("fence"), m.group("lang").lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"{rel}:{i + 1}: unclosed code fence")
        block = Block(rel, i + 1, lang, "\n".join(body) + "\n")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and (mm := MARKER.match(lines[k])):
            block.marker, block.reason = mm.group("kind"), (mm.group("reason") or "").strip()
            if block.marker == "skip" and not block.reason:
                raise ValueError(f"{rel}:{k + 1}: a skip marker needs a reason: <!-- test: skip (why) -->")
        elif k >= 0 and "<!-- test" in lines[k]:
            raise ValueError(f"{rel}:{k + 1}: malformed test marker {lines[k].strip()!r}")
        blocks.append(block)
        i = j + 1
    return blocks


def plan(blocks: list[Block], *, demo_available: bool, include_slow: bool) -> list[dict]:
    """Decide per block: run, or skip with a reason. Blocks keep their page order."""
    out: list[dict] = []
    waiting_for_demo: set[str] = set()
    for b in blocks:
        action, reason = "run", ""
        if not b.runs:
            continue
        if b.marker == "skip":
            action, reason = "skip", b.reason
        elif b.marker == "slow" and not include_slow:
            action, reason = "skip", "slow: runs with pytest -m slow"
        elif not demo_available and (b.page in waiting_for_demo or b.needs_demo()):
            waiting_for_demo.add(b.page)
            action, reason = "skip", DEMO_NOT_BUNDLED
        out.append({**asdict(b), "id": b.id, "action": action, "reason": reason})
    return out


# ---------------------------------------------------------------------------------------------------- runner
@dataclass
class Result:
    id: str
    status: str  # passed, failed, skipped
    reason: str = ""
    output: str = ""
    seconds: float = 0.0


def prepare_workdir(folder: Path) -> None:
    """The files every page may use (see the module docstring)."""
    import numpy as np
    import soundfile as sf

    dialogue = folder / "examples" / "dialogue"
    dialogue.mkdir(parents=True, exist_ok=True)
    for name, short in (("person_a", "me"), ("person_b", "you")):
        src = ROOT / "examples" / "dialogue" / f"{name}.flac"
        (dialogue / src.name).write_bytes(src.read_bytes())
        audio, sr = sf.read(src, dtype="float32")
        sf.write(folder / f"{short}.wav", np.ascontiguousarray(audio[: int(4.4 * sr)]), sr)


def _run_python(code: str, namespace: dict, label: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        exec(compile(code, label, "exec"), namespace)  # noqa: S102 - running the docs is the point
    return buf.getvalue()


def _run_bash(code: str, cwd: Path, timeout: float) -> str:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code], check=False, cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}\n{output}")
    return output


def run_plan(items: list[dict], workroot: Path, timeout: float = 300.0) -> list[Result]:
    """Execute planned blocks page by page (one namespace and one working directory per page)."""
    try:  # pages that plot must not open windows
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        pass
    results: list[Result] = []
    pages: dict[str, list[dict]] = {}
    for item in items:
        pages.setdefault(item["page"], []).append(item)
    start_dir = os.getcwd()
    for page, page_items in pages.items():
        work = workroot / page.replace("/", "_").replace(".md", "")
        work.mkdir(parents=True, exist_ok=True)
        prepare_workdir(work)
        namespace: dict = {"__name__": "__main__"}
        failed: str | None = None
        os.chdir(work)
        try:
            for item in page_items:
                if item["action"] == "skip":
                    results.append(Result(item["id"], "skipped", item["reason"]))
                    continue
                if failed is not None:
                    results.append(Result(item["id"], "skipped", f"an earlier block on this page failed ({failed})"))
                    continue
                t0 = time.perf_counter()
                try:
                    if item["lang"] == "python":
                        output = _run_python(item["code"], namespace, item["id"])
                    else:
                        output = _run_bash(item["code"], work, timeout)
                    results.append(Result(item["id"], "passed", output=output[-4000:],
                                          seconds=time.perf_counter() - t0))
                except BaseException as exc:  # report anything the block raised
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    failed = item["id"]
                    detail = traceback.format_exc() if item["lang"] == "python" else str(exc)
                    results.append(Result(item["id"], "failed", output=detail[-6000:],
                                          seconds=time.perf_counter() - t0))
        finally:
            os.chdir(start_dir)
    return results


def main(argv: list[str]) -> int:
    """``python docs_snippets.py PLAN.json RESULTS.json WORKROOT``: run a plan, write the results."""
    plan_path, results_path, workroot = (Path(a) for a in argv)
    items = json.loads(plan_path.read_text())
    try:
        import torch

        torch.set_num_threads(min(2, torch.get_num_threads()))
    except ImportError:
        pass
    results = run_plan(items, workroot)
    results_path.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
