"""Every command's help renders; each command lists the flags it uses and no others."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from unils.cli import COMMANDS, build_parser, main

GENERATION_FLAGS = ["--seed", "--temperature", "--top-p", "--cfg-scale", "--no-smooth", "--style", "--prev-motion",
                    "--no-cache"]
MODEL_FLAGS = ["--model", "--device", "--dtype", "--audio-autocast"]
TRAIN_SUBCOMMANDS = ["codec", "prior", "audio", "validate", "corpus"]


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_parser_lists_the_registry():
    listing = build_parser().format_help()
    positions = [listing.find(f"\n    {name} ") for name in COMMANDS]
    assert -1 not in positions and positions == sorted(positions)  # every command, in registry order
    for name in COMMANDS:
        module = importlib.import_module(f"unils.cli.{name}")
        assert callable(module.register), name


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + [["train", s] for s in TRAIN_SUBCOMMANDS],
                         ids=lambda argv: " ".join(argv))
def test_help_renders(argv, capsys):
    out = _help(capsys, *argv)
    assert out.startswith(f"usage: unils {' '.join(argv)}")
    if argv[0] in ("generate", "stream", "preview"):
        assert all(flag in out for flag in GENERATION_FLAGS + MODEL_FLAGS), argv
    elif argv[0] == "serve":
        assert all(flag in out for flag in MODEL_FLAGS) and "--temperature" not in out
    else:
        assert "--temperature" not in out and "--model" not in out


@pytest.mark.parametrize(
    ("stage", "has", "lacks"),
    [
        ("codec", ["--config", "--flame", "--init", "--steps", "--resume", "--out", "--expr-mse", "--expr-mse-dims"],
         ["--lora-r", "--audio-encoder", "--conversations", "--motion-only", "--workers", "--seconds"]),
        ("prior", ["--init", "--steps", "--batch-size", "--out"],
         ["--config", "--flame", "--lora-r", "--audio-encoder", "--conversations", "--expr-mse"]),
        ("audio", ["--init", "--audio-encoder", "--lora-r", "--lora-alpha", "--steps"],
         ["--config", "--flame", "--conversations", "--workers"]),
        ("validate", ["--data"], ["--out", "--steps", "--seed", "--conversations", "--device"]),
        ("corpus", ["--data", "--conversations", "--seconds", "--motion-only", "--workers", "--seed"],
         ["--out", "--steps", "--init", "--lr", "--device"]),
    ],
)
def test_train_subcommands_show_only_their_flags(stage, has, lacks, capsys):
    out = _help(capsys, "train", stage)
    assert [f for f in has if f not in out] == []
    assert [f for f in lacks if f in out] == []


def test_train_flags_of_another_stage_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "codec", "--data", "d", "--out", "o", "--lora-r", "4"])
    assert exit_info.value.code == 2 and "--lora-r" in capsys.readouterr().err


def _documented_train_commands() -> list[str]:
    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", root / "src" / "unils" / "assets" / "demo" / "README.md", *(root / "docs").glob("*.md"),
             *(root / "benchmarks").glob("*.md")]
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        for match in re.finditer(r"(?:^|`|-m )unils train ([^`\n#]*)", text, flags=re.MULTILINE):
            line = match.group(1).strip()
            if "--data" in line and not re.search(r"[\[|]|\b[A-Z]{3,}\b", line):  # commands, not synopses
                found.append(line)
    return found


def test_documented_train_command_lines_parse():
    commands = _documented_train_commands()
    assert len(commands) >= 8  # docs/training.md and the demo model card
    parser = build_parser()
    for line in commands:
        args = parser.parse_args(["train", *shlex.split(line)])
        assert args.stage in TRAIN_SUBCOMMANDS and callable(args.func), line
