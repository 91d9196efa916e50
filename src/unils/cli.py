"""``unils`` command line: generate, stream, convert, bench, train.

The only module that prints. Errors raised on purpose by unils become a one-line message and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .errors import UniLSError

__all__ = ["main"]

DEFAULT_MODEL = "demo"


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--cfg-scale", type=float, default=None)
    p.add_argument("--no-smooth", action="store_true", help="skip Savitzky-Golay smoothing")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help="checkpoint folder, Hub repo id or bundled name")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--audio-autocast", choices=["bfloat16", "float16"], default=None,
                   help="run the audio encoder under autocast (faster on CPUs with bf16 support; small drift)")


def _load(args: argparse.Namespace):  # noqa: ANN202
    from .model import UniLS

    if args.model == DEFAULT_MODEL:
        logging.getLogger("unils").warning(
            "no --model given: using the bundled synthetic demo model (trained on synthesized speech and "
            "rule-based motion, for trying unils out); pass --model for a real checkpoint"
        )
    model = UniLS.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    if args.audio_autocast:
        model.set_audio_autocast(args.audio_autocast)
    return model


def _write_motion(motion, path: Path) -> None:  # noqa: ANN001
    motion.write(path)


def _cmd_generate(args: argparse.Namespace) -> int:
    model = _load(args)
    kw = dict(seed=args.seed, temperature=args.temperature, top_p=args.top_p, cfg_scale=args.cfg_scale,
              smooth=not args.no_smooth, progress=not args.quiet)
    t0 = time.perf_counter()
    out = Path(args.output)
    if args.both:
        if args.partner is None:
            raise UniLSError("--both needs --partner")
        first, second = model.generate_both(args.audio, args.partner, **kw)
        out.mkdir(parents=True, exist_ok=True) if not out.suffix else None
        a_path = out / "self.npz" if not out.suffix else out
        b_path = out / "partner.npz" if not out.suffix else out.with_name(out.stem + "_partner" + out.suffix)
        _write_motion(first, a_path)
        _write_motion(second, b_path)
        written = f"{a_path}, {b_path}"
        frames = len(first)
    else:
        motion = model.generate(args.audio, args.partner, **kw)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_motion(motion, out)
        written, frames = str(out), len(motion)
    dt = time.perf_counter() - t0
    print(f"wrote {written}: {frames} frames ({frames / model.fps:.2f} s) in {dt:.2f} s")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_official

    report = convert_official(
        args.checkpoint, args.out_dir, audio_encoder=args.audio_encoder, dtype=args.dtype, lora_scale=args.lora_scale,
        revision=args.revision, local_files_only=args.offline,
    )
    print(report.summary())
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    import numpy as np

    from .audio import load_audio, pad_to_same_length

    model = _load(args)
    a = load_audio(args.audio, name="audio")
    channels = [a] if args.partner is None else pad_to_same_length(a, load_audio(args.partner, name="partner"))
    block = int(args.block_ms * 16)
    frames = []
    session = model.stream(partner=args.partner is not None, seed=args.seed, hop_frames=args.hop_frames,
                           smooth=not args.no_smooth)
    t_start = time.perf_counter()
    with session:
        for start in range(0, channels[0].shape[0], block):
            if args.realtime:
                due = t_start + start / 16000
                time.sleep(max(0.0, due - time.perf_counter()))
            blocks = [c[start : start + block] for c in channels]
            out = session.push(*blocks)
            if len(out):
                frames.append(out)
                lag = (time.perf_counter() - t_start) - session.frames_emitted / model.fps
                if not args.quiet:
                    print(f"t={start / 16000:7.2f}s  +{len(out):4d} frames  total {session.frames_emitted:6d}  lag {lag:6.2f}s")
        frames.append(session.flush())
        stats = session.stats()
    from .motion import Motion

    motion = Motion.concatenate([f for f in frames if len(f)] or [Motion.zeros(0)])
    if args.output:
        _write_motion(motion, Path(args.output))
    print(json.dumps({"frames": len(motion), **stats.__dict__}, indent=2))
    del np
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmark, write_json
    from .config import UniLSConfig

    config = {"large": UniLSConfig.large(), "small": UniLSConfig.small()}[args.size]
    results = run_benchmark(
        args.seconds, batches=args.batch, straightforward=not args.fast_only, config=config, device=args.device or "cpu",
        audio_autocast=args.audio_autocast, threads=args.threads,
    )
    for r in results:
        extra = r.extra.get("speedup_fast_vs_straightforward")
        print(
            f"{r.mode:16s} {r.seconds_of_audio:6.0f}s x{r.batch}: total {r.total_s:8.2f}s  rtf {r.rtf:6.3f}  "
            f"fps {r.fps:8.1f}  enc {r.audio_encoder_s:7.2f}  gen {r.generator_s:7.2f}  dec {r.codec_decode_s:6.2f}  "
            f"rss {r.peak_rss_mb:7.0f}MB" + (f"  speed-up x{extra}" if extra else "")
        )
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    try:
        from .serve.server import ServeConfig, run
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise UniLSError(f"{exc}") from exc
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = ServeConfig(
        host=args.host, port=args.port, token=args.token or os.environ.get("UNILS_SERVE_TOKEN") or None,
        max_sessions=args.max_sessions, max_message_bytes=args.max_message_bytes, idle_timeout_s=args.idle_timeout,
        workers=args.workers, min_hop_frames=args.min_hop_frames, allowed_origins=tuple(args.allow_origin),
    ).validate()  # refuse an unsafe configuration before loading the model
    model = _load(args)

    def ready(server) -> None:  # noqa: ANN001
        print(f"unils serve: {model.config.name} on {server.url} (WebSocket {server.ws_url}), "
              f"max {config.max_sessions} sessions{', token required' if config.token else ''}; Ctrl-C stops",
              flush=True)

    run(model, config, on_ready=ready)
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from .viz.preview import preview_from_files

    def save(index: int, motion) -> None:  # noqa: ANN001
        out = Path(args.save_motion)
        _write_motion(motion, out if index == 0 else out.with_name(f"{out.stem}_partner{out.suffix}"))

    renderer = None
    if args.flame:
        from .flame import FlameFrameRenderer, FlameModel

        renderer = FlameFrameRenderer(FlameModel.from_file(args.flame, device=args.device))
    elif args.head_gain != 1.0:
        from .viz import SchematicRenderer

        renderer = SchematicRenderer(head_gain=args.head_gain)
    result = preview_from_files(
        args.inputs, args.output, audio=args.audio, partner_audio=args.partner_audio, model=lambda: _load(args),
        seed=args.seed, generate_options=dict(temperature=args.temperature, top_p=args.top_p,
                                              cfg_scale=args.cfg_scale, smooth=not args.no_smooth),
        fps=args.fps, size=args.size, labels=args.labels, at=args.at,
        save_motion=save if args.save_motion else None, renderer=renderer,
    )
    print(result.summary())
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .viz.preview import plot_from_files

    out = plot_from_files(args.inputs, args.output, audio=args.audio, partner_audio=args.partner_audio,
                          labels=args.labels, expression_coefs=args.expression_coefs, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def _train_config(value: str | None):  # noqa: ANN202
    from .config import UniLSConfig

    if value is None:
        return None
    presets = {"large": UniLSConfig.large, "small": UniLSConfig.small}
    if hasattr(UniLSConfig, "demo"):
        presets["demo"] = UniLSConfig.demo
    if value in presets:
        return presets[value]()
    if not Path(value).is_file():
        raise FileNotFoundError(f"--config {value!r}: not a preset ({', '.join(presets)}) nor a config.json file")
    return UniLSConfig.load(value)


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        from .train.data import validate_dataset
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise UniLSError(f"training needs the train extra: pip install 'unils[train]' ({exc})") from exc
    if args.stage == "validate":
        report = validate_dataset(args.data)
        print(report.summary())
        return 0 if report.ok else 1
    if args.stage == "corpus":
        from .train.corpus import write_corpus

        lo, hi = args.seconds
        t0 = time.perf_counter()
        root = write_corpus(args.data, args.conversations, seconds=(lo, hi), seed=args.seed,
                            motion_only=args.motion_only, progress=not args.quiet, workers=args.workers)
        print(f"wrote {args.conversations} conversation(s) and {args.motion_only} motion-only clip(s) to {root} "
              f"in {time.perf_counter() - t0:.1f} s")
        return 0
    from .train.stages import StageOptions
    from .train.trainer import TrainOptions, train_stage

    if not args.out:
        raise UniLSError(f"unils train {args.stage} needs --out (the run folder)")
    logging.getLogger("unils").setLevel(logging.INFO)
    opts = TrainOptions(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, seed=args.seed, precision=args.precision,
        progress=not args.quiet, stop_at=args.stop_at,
    )
    sopts = StageOptions(lora_r=args.lora_r, lora_alpha=args.lora_alpha)
    vertices = lips = None
    if args.flame:
        from .train.mesh import flame_vertices

        vertices, lips = flame_vertices(args.flame, args.device or "cpu")
    result = train_stage(
        args.stage, args.data, args.out, config=_train_config(args.config), init=args.init,
        audio_encoder=args.audio_encoder, resume=args.resume, options=opts, stage_options=sopts, device=args.device,
        vertices=vertices, lip_indices=lips,
    )
    if result.history:
        print(f"{args.stage}: {result.steps} steps in {result.seconds:.1f} s, loss "
              f"{result.mean_loss(first=True):.4f} (first 20% of logged steps) -> {result.mean_loss(first=False):.4f} "
              f"(last 20%); export: {result.export_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import os

    from .metrics import evaluate_folder

    flame = None
    flame_path = args.flame or os.environ.get("UNILS_FLAME")
    if flame_path:
        from .flame import FlameModel

        flame = FlameModel.from_file(flame_path, device=args.device)
    result = evaluate_folder(args.pred_dir, args.gt_dir, flame=flame, length_tolerance=args.length_tolerance)
    print(result.table())
    note = "" if flame is not None else "; coefficient metrics only (--flame or $UNILS_FLAME adds LVE/MHD/FDD)"
    print(f"{len(result.per_file)} sequence(s) scored{note}")
    if result.missing:
        print(f"not scored, no prediction: {', '.join(result.missing)}")
    if result.unmatched:
        print(f"ignored, no ground truth: {', '.join(result.unmatched)}")
    if args.json:
        result.save_json(args.json)
        print(f"wrote {args.json}")
    return 0


# ---- info / cache (self-contained: handlers + _add_info_cache_parsers)
def _cmd_info(args: argparse.Namespace) -> int:
    from .hub import describe_model

    desc = describe_model(
        args.model, filename=args.filename, subfolder=args.subfolder, audio_encoder=args.audio_encoder,
        revision=args.revision, local_files_only=args.offline,
    )
    print("\n".join(desc.lines()))
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from .convert import clear_converted, converted_cache_root, list_converted

    if args.action == "list":
        copies = list_converted()
        print(f"{converted_cache_root()}: {len(copies)} converted checkpoint(s)")
        for c in copies:
            print(f"  {c.sha256[:16]}  {c.size / 1e6:8.1f} MB  {c.path}\n      from {c.source}\n      audio encoder {c.audio_encoder}")
        return 0
    removed = clear_converted(sha256=args.sha256)
    print(f"removed {len(removed)} converted checkpoint(s), {sum(c.size for c in removed) / 1e6:.1f} MB")
    return 0


def _add_info_cache_parsers(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("info", help="what a model name resolves to: files, stage, sizes, precision, cache",
                       description="Resolve MODEL as UniLS.from_pretrained does (an official checkpoint is "
                       "downloaded and converted once) and describe it without generating anything.")
    i.add_argument("model", help="checkpoint folder, Hub repo id or bundled name")
    i.add_argument("--filename", default=None, help="official checkpoint file to use (relative path)")
    i.add_argument("--subfolder", default=None, help="look only inside this folder of the repo")
    i.add_argument("--audio-encoder", default=None, help="wav2vec2 folder or Hub repo for an official checkpoint")
    i.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    i.add_argument("--offline", action="store_true", help="use the local Hub cache only")
    i.set_defaults(func=_cmd_info)
    ca = sub.add_parser("cache", help="list or clear the converted copies of official checkpoints")
    ca.add_argument("action", choices=["list", "clear"])
    ca.add_argument("--sha256", default=None, help="clear only the copy whose source sha256 starts with this")
    ca.set_defaults(func=_cmd_cache)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unils", description="Audio-driven avatars that listen and speak (UniLS).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="audio file(s) -> motion file (.npz, .json or .csv)")
    g.add_argument("audio")
    g.add_argument("--partner", "-p", default=None, help="the other person's audio")
    g.add_argument("--both", action="store_true", help="also write the partner's motion")
    g.add_argument("-o", "--output", default="motion.npz")
    _add_model(g)
    _add_sampling(g)
    g.set_defaults(func=_cmd_generate)

    s = sub.add_parser("stream", help="replay audio through a streaming session; report latency and RTF")
    s.add_argument("audio")
    s.add_argument("--partner", "-p", default=None)
    s.add_argument("--block-ms", type=float, default=20.0, help="block size pushed per call (ms)")
    s.add_argument("--hop-frames", type=int, default=None, help="low-latency hop (frames); default exact mode")
    s.add_argument("--realtime", action="store_true", help="push at real-time pace")
    s.add_argument("-o", "--output", default=None)
    _add_model(s)
    _add_sampling(s)
    s.set_defaults(func=_cmd_stream)

    c = sub.add_parser(
        "convert", help="official UniLS .pt -> unils folder",
        description="Convert an official UniLS stage-3 checkpoint (merged, or an unmerged peft dict) into a "
        "unils folder (config.json, model.safetensors, README.md). Official checkpoints never hold the "
        "wav2vec2 weights: pass them with --audio-encoder.",
    )
    c.add_argument("checkpoint", help="official .pt file (e.g. iter_400000.pt)")
    c.add_argument("out_dir", help="output folder")
    c.add_argument("--audio-encoder", default=None,
                   help="transformers wav2vec2 folder, weights file or Hub repo (facebook/wav2vec2-xls-r-300m)")
    c.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="storage precision of generator and audio encoder (codec stays float32)")
    c.add_argument("--lora-scale", type=float, default=None,
                   help="alpha/r for unmerged LoRA adapters (default: meta_cfg, else 1.0)")
    c.add_argument("--revision", default=None, help="Hub revision of --audio-encoder")
    c.add_argument("--offline", action="store_true", help="use the local Hub cache only")
    c.set_defaults(func=_cmd_convert)
    _add_info_cache_parsers(sub)

    b = sub.add_parser("bench", help="speed benchmark at full model size (random weights)")
    b.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    b.add_argument("--batch", type=int, nargs="+", default=[1])
    b.add_argument("--size", choices=["large", "small"], default="large")
    b.add_argument("--fast-only", action="store_true", help="skip the straightforward (official-style) path")
    b.add_argument("--device", default=None)
    b.add_argument("--audio-autocast", choices=["bfloat16", "float16"], default=None)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--json", default=None, help="write results as JSON")
    b.set_defaults(func=_cmd_bench)
    v = sub.add_parser(
        "serve", help="streaming sessions over WebSocket, with a browser demo (needs the serve extra)",
        description="Serve streaming sessions over WebSocket (one connection = one session; protocol in "
        "docs/serve.md) and a browser demo at http://HOST:PORT/. Binds to 127.0.0.1 unless told otherwise; "
        "any other address needs a token.",
    )
    v.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any free port)")
    v.add_argument("--token", default=None,
                   help="shared secret clients must send (?token= or Authorization: Bearer); "
                   "default $UNILS_SERVE_TOKEN; required off localhost")
    v.add_argument("--max-sessions", type=int, default=8, help="concurrent sessions (default 8)")
    v.add_argument("--max-message-bytes", type=int, default=1 << 20, help="largest client message (default 1 MiB)")
    v.add_argument("--idle-timeout", type=float, default=30.0, help="close a session silent this long (s, default 30)")
    v.add_argument("--workers", type=int, default=None, help="model threads (default min(max sessions, CPUs))")
    v.add_argument("--threads", type=int, default=None, help="torch intra-op threads (torch.set_num_threads)")
    v.add_argument("--min-hop-frames", type=int, default=5,
                   help="smallest low-latency hop a client may ask for (default 5)")
    v.add_argument("--allow-origin", action="append", default=[],
                   help="a browser origin allowed besides the server's own (repeatable)")
    _add_model(v)
    v.set_defaults(func=_cmd_serve)

    pv = sub.add_parser(
        "preview", help="schematic avatar video (MP4 with sound, GIF) or still (PNG) of motion or audio files",
        description="Draw one or two people side by side with speaking / listening indicators. INPUTs are motion "
        "files (.npz/.npy/.json/.csv; sound from --audio / --partner-audio) or audio files (the motion is "
        "generated with --model first; two voices = both people). Needs the viz extra.",
    )
    pv.add_argument("inputs", nargs="+", metavar="INPUT", help="one or two motion files, or one or two audio files")
    pv.add_argument("-o", "--output", default="preview.mp4", help=".mp4 (with sound), .gif or .png (default preview.mp4)")
    pv.add_argument("--audio", "-a", default=None, help="first person's audio, for motion inputs")
    pv.add_argument("--partner-audio", "-p", default=None, help="second person's audio")
    pv.add_argument("--fps", type=float, default=None, help="output frame rate (default: the motion's, 25)")
    pv.add_argument("--size", type=int, default=320, help="panel size in pixels (default 320)")
    pv.add_argument("--labels", nargs="+", default=None, help="names on the panels (default: file names)")
    pv.add_argument("--at", type=float, default=None, help="time (s) of a .png still (default: the middle)")
    pv.add_argument("--save-motion", default=None, help="also write generated motion(s) here (.npz/.json/.csv)")
    pv.add_argument("--head-gain", type=float, default=1.0,
                    help="schematic avatar: multiply head rotations (e.g. 2 to make small nods visible)")
    pv.add_argument("--flame", default=None,
                    help="draw FLAME meshes with your FLAME 2020 model (generic_model.pkl or .pt) "
                    "instead of the schematic face")
    _add_model(pv)
    _add_sampling(pv)
    pv.set_defaults(func=_cmd_preview)

    pl = sub.add_parser("plot", help="coefficient curves of motion files under the speakers' speech activity",
                        description="Plot jaw, head pose, eyes and leading expression coefficients over time, one "
                        "column per motion, shaded where each person speaks (from --audio / --partner-audio).")
    pl.add_argument("inputs", nargs="+", metavar="MOTION", help="one or two motion files")
    pl.add_argument("-o", "--output", default="motion.png", help="image file (.png, .pdf, .svg; default motion.png)")
    pl.add_argument("--audio", "-a", default=None, help="first person's audio (speech shading)")
    pl.add_argument("--partner-audio", "-p", default=None, help="second person's audio")
    pl.add_argument("--labels", nargs="+", default=None, help="names (default: file names)")
    pl.add_argument("--expression-coefs", type=int, default=6, help="leading expression coefficients drawn (default 6)")
    pl.add_argument("--dpi", type=int, default=100)
    pl.set_defaults(func=_cmd_plot)
    t = sub.add_parser(
        "train", help="train a stage (codec, prior, audio) or validate a dataset (needs unils[train])",
        description="The three UniLS training stages: 'codec' (stage 1, motion codec), 'prior' (stage 2, "
        "audio-free prior; --init a codec export), 'audio' (stage 3, dual-audio LoRA fine-tuning; --init a "
        "prior export). Each writes OUT/checkpoint (resumable), OUT/export and OUT/log.jsonl. "
        "'validate' checks a dataset folder; 'corpus' writes the synthetic two-person corpus. Several processes: torchrun --nproc_per_node N -m unils train ...",
    )
    t.add_argument("stage", choices=["codec", "prior", "audio", "validate", "corpus"])
    t.add_argument("--data", required=True, help="dataset folder (unils-dataset format); corpus: the folder to write")
    t.add_argument("--out", help="run folder (checkpoint/, export/, log.jsonl)")
    t.add_argument("--init", default=None, help="export folder of the previous stage (or of this stage, to fine-tune)")
    t.add_argument("--config", default=None, help="stage 1 model size: large, small, demo or a config.json")
    t.add_argument("--audio-encoder", default=None, help="stage 3, wav2vec2 models: transformers wav2vec2 folder/file/repo")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    t.add_argument("--steps", type=int, default=1000, help="length of the schedule")
    t.add_argument("--stop-at", type=int, default=None, help="stop (checkpointed) at this step; continue with --resume")
    t.add_argument("--batch-size", type=int, default=16, help="per process (official: 64 codec, 128 prior/audio)")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--warmup", type=int, default=1000)
    t.add_argument("--ema-decay", type=float, default=0.9999)
    t.add_argument("--lora-r", type=int, default=32)
    t.add_argument("--lora-alpha", type=float, default=32.0)
    t.add_argument("--checkpoint-every", type=int, default=1000)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    t.add_argument("--device", default=None)
    t.add_argument("--flame", default=None, help="stage 1: FLAME 2020 model file, adds the mesh and lip losses")
    t.add_argument("--conversations", type=int, default=200, help="corpus: number of conversations")
    t.add_argument("--seconds", type=float, nargs=2, default=(20.0, 40.0), metavar=("MIN", "MAX"),
                   help="corpus: conversation length range")
    t.add_argument("--motion-only", type=int, default=0, help="corpus: extra motion-only clips")
    t.add_argument("--workers", type=int, default=1, help="corpus: processes")
    t.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "evaluate", help="score predicted motions against ground truth (the paper's metrics; table + JSON)",
        description="Match PRED_DIR and GT_DIR files by name and compute the UniLS metrics: speaking (S_LVE, "
        "S_MHD, S_FDD, S_PDD, S_JDD) and listening (L_FDD, L_PDD, L_JDD) from the ground truth's speech_mask, "
        "whole-sequence and FLAME-free coefficient metrics. Mesh metrics need your FLAME 2020 model (--flame). "
        "File conventions: docs/evaluation.md.",
    )
    ev.add_argument("pred_dir", help="folder of predicted motions (.npz/.npy/.json/.csv)")
    ev.add_argument("gt_dir", help="folder of ground truths (unils.metrics.save_ground_truth .npz, or motion files)")
    ev.add_argument("--flame", default=None, help="FLAME 2020 generic_model.pkl or converted .pt (default $UNILS_FLAME)")
    ev.add_argument("--json", default=None, help="also write the scores (summary and per file) as JSON")
    ev.add_argument("--length-tolerance", type=int, default=2,
                    help="largest frame-count difference trimmed per pair (default 2)")
    ev.add_argument("--device", default=None, help="device for the FLAME vertices (cpu, cuda ...)")
    ev.set_defaults(func=_cmd_evaluate)

    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``unils`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (UniLSError, FileNotFoundError, ValueError) as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"unils {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
