"""Every field of GenerationOptions reaches the model, from every entry point: the Python API (options= and
keywords), each CLI command (single file, --both, --batch with flags, manifest columns), stream and preview.
The walk is over the dataclass fields, so a new field without a way in fails here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import speech_like

import unils.cli.options
import unils.model
import unils.streaming
from unils import GenerationOptions, Motion
from unils.audio import save_audio
from unils.cli import main
from unils.options import option_fields

DIALOGUE = Path(__file__).resolve().parents[1] / "examples" / "dialogue"


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    Motion.from_array(rng.normal(0, 0.1, (120, 108)).astype(np.float32)).save(tmp_path / "style.json")
    Motion.from_array(rng.normal(0, 0.1, (110, 108)).astype(np.float32)).save(tmp_path / "prev.csv")
    save_audio(tmp_path / "a.wav", speech_like(4.5, seed=1))
    save_audio(tmp_path / "b.wav", speech_like(4.5, seed=2))
    return tmp_path


def values(d: Path) -> dict:
    """A value other than the default for every field (motions as they come back from their files)."""
    by_kind = {"seed": 7, "motion": None}
    chosen = {"temperature": 0.8, "top_p": 0.9, "cfg_scale": 2.5, "style": Motion.load(d / "style.json"),
              "prev_motion": Motion.load(d / "prev.csv")}
    out = {}
    for f in option_fields():
        if f.kind == "bool":
            out[f.name] = not f.default
        elif f.name in chosen:
            out[f.name] = chosen[f.name]
        else:
            out[f.name] = by_kind[f.kind]
        assert out[f.name] is not None, f"no test value for the new option {f.name}: add one here"
    return out


def flags(d: Path) -> list[str]:
    """The command-line flags of values(d), derived from the fields."""
    files = {"style": str(d / "style.json"), "prev_motion": str(d / "prev.csv")}
    out = []
    for f in option_fields():
        v = values(d)[f.name]
        if f.kind == "bool":
            out.append(f.flag)
        else:
            out += [f.flag, files.get(f.name, str(v))]
    return out


def manifest_cells(d: Path) -> dict:
    files = {"style": "style.json", "prev_motion": "prev.csv"}
    return {f.name: files.get(f.name, values(d)[f.name]) for f in option_fields()}


@pytest.fixture
def spy(tiny_model, monkeypatch):
    """Records the options each person reaches the engine with (offline runs and stream sessions)."""
    seen: list[tuple[str, list[GenerationOptions]]] = []
    real_run, real_init = unils.model.UniLS._run, unils.streaming.StreamSession.__init__

    def run(self, channels, rows, frames, people, progress, **kw):
        seen.append(("offline", list(people)))
        return real_run(self, channels, rows, frames, people, progress, **kw)

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        seen.append(("stream", list(self._people)))

    monkeypatch.setattr(unils.model.UniLS, "_run", run)
    monkeypatch.setattr(unils.streaming.StreamSession, "__init__", init)
    monkeypatch.setattr(unils.cli.options, "load_model", lambda args: tiny_model)
    return seen


def check(person: GenerationOptions, want: dict, seed_offset: int = 0) -> None:
    for f in dataclasses.fields(GenerationOptions):
        got, expected = getattr(person, f.name), want[f.name]
        if f.name == "seed":
            expected = expected + seed_offset
        if isinstance(expected, Motion):
            assert isinstance(got, Motion) and got.allclose(expected, atol=1e-6), f.name
        else:
            assert got == expected, (f.name, got, expected)


def test_every_field_reaches_the_model_from_the_python_api(tiny_model, spy, files):
    want = values(files)
    a, b = speech_like(4.5, seed=1), speech_like(4.5, seed=2)
    opts = GenerationOptions(**want)
    tiny_model.generate(a, b, options=opts)
    tiny_model.generate(a, b, **want)
    tiny_model.generate(a, b, options={k: v for k, v in want.items()})  # a plain dict works too
    tiny_model.generate_both(a, b, options=opts)
    tiny_model.generate_batch([(a, b), a], options=opts)
    tiny_model.stream(options=opts).close()
    tiny_model.stream(**want).close()
    tiny_model.stream_group().open(options=opts).close()
    kinds = [k for k, _ in spy]
    assert kinds == ["offline"] * 5 + ["stream"] * 3
    for _, people in spy:
        for i, person in enumerate(people):
            check(person, want, seed_offset=i)
    # A keyword overrides the object's field.
    tiny_model.generate(a, options=opts, temperature=0.3)
    assert spy[-1][1][0].temperature == 0.3 and spy[-1][1][0].top_p == want["top_p"]


def test_every_field_reaches_the_model_from_each_command(spy, files):
    d = files
    want = values(d)
    a, b = str(d / "a.wav"), str(d / "b.wav")
    assert main(["-q", "generate", a, "-p", b, "-o", str(d / "m.npz"), *flags(d)]) == 0
    assert main(["-q", "generate", a, "-p", b, "--both", "-o", str(d / "pair"), *flags(d)]) == 0
    assert main(["-q", "stream", a, "-p", b, "--block-ms", "500", "-o", str(d / "s.npz"), *flags(d)]) == 0
    pytest.importorskip("PIL")
    assert main(["-q", "preview", a, b, "-o", str(d / "p.png"), "--size", "64", *flags(d)]) == 0
    assert [k for k, _ in spy] == ["offline", "offline", "stream", "offline"]
    for _, people in spy:
        for i, person in enumerate(people):
            check(person, want, seed_offset=i)
    assert len(Motion.load(d / "pair" / "self.npz")) == len(Motion.load(d / "pair" / "partner.npz")) == 113


def test_batch_flags_and_manifest_columns_reach_the_model(spy, files):
    """`generate --batch` honours every flag (as defaults of the rows) and every manifest column."""
    d = files
    want = values(d)
    (d / "flags.csv").write_text("audio,partner,output\na.wav,b.wav,one\n")
    assert main(["-q", "generate", "--batch", str(d / "flags.csv"), "--out-dir", str(d / "o1"), *flags(d)]) == 0
    cells = manifest_cells(d)
    (d / "cols.jsonl").write_text(json.dumps({"audio": "a.wav", "partner": "b.wav", "output": "two", **cells}) + "\n")
    assert main(["-q", "generate", "--batch", str(d / "cols.jsonl"), "--out-dir", str(d / "o2")]) == 0
    assert [k for k, _ in spy] == ["offline", "offline"]
    for _, people in spy:
        check(people[0], want)
    # ... and the batch writes exactly what the single-file command writes with the same flags.
    assert main(["-q", "generate", str(d / "a.wav"), "-p", str(d / "b.wav"), "-o", str(d / "single.npz"),
                 *flags(d)]) == 0
    single = Motion.load(d / "single.npz")
    assert Motion.load(d / "o1" / "one.npz") == single == Motion.load(d / "o2" / "two.npz")
    # Without the flags the frames differ: --style, --prev-motion and --no-cache are not dropped.
    assert main(["-q", "generate", "--batch", str(d / "flags.csv"), "--out-dir", str(d / "o3"),
                 *[x for x in flags(d) if x != "--no-cache"][:-4]]) == 0
    assert Motion.load(d / "o3" / "one.npz") != single


def test_bad_motion_flag_is_a_one_line_error(spy, files, capsys):
    d = files
    rc = main(["generate", str(d / "a.wav"), "--style", str(d / "missing.npz"), "-o", str(d / "m.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("unils generate: error: ") and "missing.npz" in err and err.count("\n") == 1
    assert spy == []  # refused before generating
    assert main(["stream", str(d / "a.wav"), "--prev-motion", str(d / "a.wav")]) == 2
    assert "not a motion file" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_stream_equals_generate_with_the_same_flags(tmp_path, dtype):
    """`unils stream` and `unils generate` with the same sampling flags write the same frames (demo model),
    bit for bit, in float32 and in bfloat16 (the default precision on bfloat16 CPUs and GPUs)."""
    a, b = str(DIALOGUE / "person_a.flac"), str(DIALOGUE / "person_b.flac")
    flags = ["--temperature", "0.3", "--top-p", "0.5", "--cfg-scale", "3", "--seed", "5", "--dtype", dtype]
    assert main(["-q", "generate", a, "-p", b, "-o", str(tmp_path / "g.npz"), *flags]) == 0
    assert main(["-q", "stream", a, "-p", b, "--block-ms", "400", "-o", str(tmp_path / "s.npz"), *flags]) == 0
    assert main(["-q", "stream", a, "-p", b, "--block-ms", "400", "-o", str(tmp_path / "d.npz"), "--dtype", dtype]) == 0
    generated, streamed = Motion.load(tmp_path / "g.npz"), Motion.load(tmp_path / "s.npz")
    assert len(generated) == 400
    assert streamed == generated  # bit for bit
    # The flags matter: the default options give other frames.
    assert not Motion.load(tmp_path / "d.npz").allclose(generated, atol=1e-2)


def hello_values(d: Path, window: int) -> dict:
    """values(d) with the clips cut to one window (the most a hello carries), as float32 arrays."""
    out = values(d)
    for f in option_fields():
        if f.kind == "motion":
            out[f.name] = out[f.name].to_array()[:window]
    return out


def check_hello(person: GenerationOptions, want: dict) -> None:
    for f in option_fields():
        got, expected = getattr(person, f.name), want[f.name]
        if f.kind == "motion":
            assert np.array_equal(np.asarray(got), expected), f.name
        else:
            assert got == expected, (f.name, got, expected)


def test_every_field_reaches_the_model_through_the_hello(tiny_model, spy, files):
    """Each field, sent in a hello, is parsed (by its kind) and reaches the session the server opens."""
    from unils.serve.hello import Clip, parse_hello
    from unils.serve.session import open_session

    window = tiny_model.config.window_frames
    want = hello_values(files, window)
    msg: dict = {"type": "hello", "sample_rate": 16000}
    for f in option_fields():
        msg[f.name] = Clip.from_array(want[f.name]).to_json() if f.kind == "motion" else want[f.name]
    hello = parse_hello(json.dumps(msg), window)
    check_hello(hello.options(), want)
    # The hello round-trips: what a client sends is what the server parses.
    assert parse_hello(hello.to_message(), window) == hello
    open_session(tiny_model, hello).close()
    assert [k for k, _ in spy] == ["stream"]
    check_hello(spy[0][1][0], want)


def test_every_field_reaches_the_model_through_both_clients(tiny_model, spy, files):
    """StreamClient and AsyncStreamClient, with options= and with keywords, against a real server."""
    import asyncio

    pytest.importorskip("websockets")
    from unils.serve import AsyncStreamClient, ServeConfig, ServerThread, StreamClient

    want = hello_values(files, tiny_model.config.window_frames)
    opts = GenerationOptions(**want)

    async def run_async(url: str) -> None:
        client = await AsyncStreamClient.connect(url, partner=False, options=opts)
        await client.close()
        client = await AsyncStreamClient.connect(url, partner=False, **want)
        await client.close()

    with ServerThread(tiny_model, ServeConfig(port=0)) as srv:
        with StreamClient(srv.ws_url, partner=False, options=opts) as c:
            assert c.ready["hello"]["use_cache"] is want["use_cache"]
        with StreamClient(srv.ws_url, partner=False, options={"seed": 1}, **want):  # keywords win
            pass
        asyncio.run(run_async(srv.ws_url))
    assert [k for k, _ in spy] == ["stream"] * 4
    for _, people in spy:
        check_hello(people[0], want)
