"""Docstrings are Markdown for mkdocstrings: fenced examples, cross-references that resolve, no reST.

The API page renders docstrings with mkdocstrings (Google style, Markdown). reStructuredText there
shows literally or runs together: a Sphinx role (``:meth:`generate` ``) reads as ":meth:" plus code,
a ``>>>`` example becomes one run-on paragraph, a ``::`` literal block and a ``====`` table lose their
layout. The conversion rule (see CHANGELOG / the report of issue 25):

- ``:meth:`name` `` (and ``:class:``, ``:func:``, ``:data:``, ``:attr:``, ``:mod:``, ``:exc:``)
  -> ``[`name`][unils.module.name]``: the text as written (``~a.b.c`` shows ``c``), the target the
  full dotted path where the object is defined; a target the site does not render (a private
  module, a name outside unils) -> plain code ``` `name` ```.
- ``>>>`` examples -> an ``Example:`` section holding a fenced ``python`` block, without prompts or
  doctest directives; ``text::`` + indented block -> ``text:`` + a fenced block; reST simple
  tables -> Markdown tables.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "unils"

# Files not converted yet (the lead is rewriting them). Remove a file from this list once it is
# converted; the last test below fails for an entry that has nothing left to convert.
PENDING_CONVERSION: list[str] = [
]

ROLE = re.compile(r":(?:py:)?(?:meth|class|func|data|attr|mod|exc|obj|const|ref|term):`")
LITERAL_BLOCK = re.compile(r"\S::\s*$")
REST_TABLE = re.compile(r"^\s*={3,}(?:\s+={3,})+\s*$")
XREF = re.compile(r"\]\[(unils(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\]")


def _docs(source: str) -> list[tuple[int, str]]:
    """(first line, text) of every docstring (module, class, function, attribute) and `#:` comment."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found.append((node.lineno, node.value.value))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            found.append((tok.start[0], tok.string[2:]))
    return found


def problems(source: str) -> list[str]:
    """What would not render as Markdown: `line: what`, one per finding."""
    out = []
    for first, text in _docs(source):
        fenced = False
        lines = text.split("\n")
        for k, line in enumerate(lines):
            where = first + k
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                continue
            for role in ROLE.finditer(line):
                out.append(f"{where}: Sphinx role {role.group(0)}...`: write [`name`][unils.module.name]")
            if line.lstrip().startswith(">>>"):
                out.append(f"{where}: >>> example: write a fenced ```python block under Example:")
            if LITERAL_BLOCK.search(line) and (k + 1 == len(lines) or not lines[k + 1].strip()):
                out.append(f"{where}: reST literal block (::): end the sentence with ':' and fence the block")
            if REST_TABLE.match(line):
                out.append(f"{where}: reST table: write a Markdown table")
    return out


def _files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def test_docstrings_are_markdown():
    found = [
        f"src/unils/{_rel(path)}:{p}"
        for path in _files()
        if _rel(path) not in PENDING_CONVERSION
        for p in problems(path.read_text(encoding="utf-8"))
    ]
    assert not found, "docstrings that mkdocstrings shows as raw reST:\n" + "\n".join(found)


def test_the_check_finds_each_kind():
    probe = (
        '"""Use :meth:`generate` or :class:`~unils.Motion`.\n\n'
        "Example:\n    >>> m = 1\n\n"
        "A folder::\n\n    DIR/\n\n"
        "===  ===\na    b\n===  ===\n"
        '"""\n'
        "#: see :data:`PARTS`\nX = 1\n"
        'def f():\n    """Fine: [`Motion`][unils.motion.Motion].\n\n    ```python\n    >>> ok_inside_a_fence\n    ```\n    """\n'
    )
    kinds = [p.split(": ", 1)[1].split(" ")[0] for p in problems(probe)]
    assert kinds == ["Sphinx", "Sphinx", ">>>", "reST", "reST", "reST", "Sphinx"], problems(probe)


@functools.cache
def _package():
    griffe = pytest.importorskip("griffe")
    return griffe.load(
        "unils",
        search_paths=[str(SRC.parent)],
        resolve_aliases=False,
        extensions=griffe.load_extensions("griffe_sphinx"),
    )


def _exists(identifier: str) -> bool:
    obj = _package()
    for part in identifier.split(".")[1:]:
        while obj.is_alias:
            obj = obj.final_target
        if part not in obj.members:
            return False
        obj = obj.members[part]
    return True


def test_cross_reference_targets_exist():
    """Every `[text][unils.x.y]` in a docstring names a real object (rendered or not: a private
    target only warns when a rendered docstring links to it, which the strict site build catches)."""
    missing = [
        f"src/unils/{_rel(path)}:{first}: {target}"
        for path in _files()
        for first, text in _docs(path.read_text(encoding="utf-8"))
        for target in XREF.findall(text)
        if not _exists(target)
    ]
    assert not missing, "cross-references to names that do not exist:\n" + "\n".join(missing)


def test_pending_list_holds_only_files_left_to_convert():
    stale = [
        name
        for name in PENDING_CONVERSION
        if not (SRC / name).is_file() or not problems((SRC / name).read_text(encoding="utf-8"))
    ]
    assert not stale, f"converted (or gone): remove from PENDING_CONVERSION: {stale}"
