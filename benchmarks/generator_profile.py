"""Where one window's generation goes: prefill and each scale level, against the machine's GEMM peak.

    python benchmarks/generator_profile.py [--size large|small] [--threads 2] [--dtype float32] [--json OUT]

Times the real engine step phase by phase (audio context, prefix prefill, each level's cached
extension, sampling, codec decode) with random weights at the official sizes, counts the matrix
FLOPs of each phase with torch's profiler, and compares the achieved rate with a large square GEMM
on the same threads: how far the generator is from its FLOP floor.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

from unils.bench import random_model
from unils.config import UniLSConfig
from unils.precision import cpu_kind


def gemm_peak(threads: int, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def timed(fn, reps: int = 3):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn()
    return (time.perf_counter() - t0) / reps, out


def flops(fn) -> float:
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    return sum(e.flops for e in prof.key_averages() if e.flops) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["large", "small"], default="large")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = UniLSConfig.large() if args.size == "large" else UniLSConfig.small()
    model = random_model(config)
    model.set_precision(args.dtype)
    with torch.inference_mode():
        profile_step(model, config, args)


def profile_step(model, config, args) -> None:
    gen, dtype = model.generator, model.generator.sos_embed.dtype
    eng = model.engine
    opts = eng.options()  # cfg 1.5: four rows for two people
    g = torch.Generator().manual_seed(0)
    la, width = 199, config.audio_encoder.out_dim
    sf, of = torch.randn(2, la, width, generator=g), torch.randn(2, la, width, generator=g)
    state = eng.start([0, 1])
    _, state = eng.step(state, sf, of, opts)  # past the first window (the guided prev is then real)

    prev = model.codec.sum_features(state.prev_motion)
    style = torch.cat([state.style_features, state.zero_features]).to(dtype)
    prefix = gen.condition_tokens(style, torch.cat([prev, prev]).to(dtype))
    null = gen.null_audio_context(2, la, sf.device)
    rows = []

    def audio():
        return gen.concat_contexts(gen.audio_context(sf.to(dtype), of.to(dtype)), null)

    t, ctx = timed(audio)
    rows.append(("audio context", t, flops(audio)))
    t, _ = timed(lambda: gen.prefill(prefix, ctx))
    rows.append(("prefill (style + prev)", t, flops(lambda: gen.prefill(prefix, ctx))))
    # Each level extends a cache holding the prefix and the levels before it.
    for level in range(len(gen.scales)):
        n = gen.scales[level]
        tokens = torch.randn(4, gen.offsets[level + 1] - gen.offsets[level], gen.sos_embed.shape[-1], generator=g).to(dtype)

        def ext(level=level, tokens=tokens):
            cache = gen.prefill(prefix, ctx)
            for past in range(level):
                prev_tok = torch.zeros(4, gen.offsets[past + 1] - gen.offsets[past], gen.sos_embed.shape[-1], dtype=dtype)
                gen.extend(prev_tok, past, cache, ctx)
            t0 = time.perf_counter()
            gen.extend(tokens, level, cache, ctx)
            return time.perf_counter() - t0

        ext()
        t = sum(ext() for _ in range(3)) / 3
        cache = gen.prefill(prefix, ctx)
        for past in range(level):
            gen.extend(torch.zeros(4, gen.offsets[past + 1] - gen.offsets[past], gen.sos_embed.shape[-1], dtype=dtype), past, cache, ctx)
        rows.append((f"level {level} ({n} tokens)", t, flops(lambda: gen.extend(tokens, level, cache, ctx))))
    t_step, _ = timed(lambda: eng.step(state, sf, of, opts))
    f_step = flops(lambda: eng.step(state, sf, of, opts))
    peak = gemm_peak(args.threads, dtype)
    print(f"{config.name}, {args.dtype}, {args.threads} threads, CPU {cpu_kind()}; GEMM peak {peak:.0f} GFLOP/s")
    out = []
    for name, t, f in rows:
        print(f"  {name:32s} {t * 1000:8.1f} ms  {f:7.2f} GFLOP  {f / t:6.1f} GFLOP/s ({f / t / peak:4.0%} of peak)")
        out.append({"phase": name, "ms": round(t * 1000, 2), "gflop": round(f, 3)})
    print(f"  {'whole step (sampling, decode)':32s} {t_step * 1000:8.1f} ms  {f_step:7.2f} GFLOP  "
          f"{f_step / t_step:6.1f} GFLOP/s ({f_step / t_step / peak:4.0%} of peak)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"model": config.name, "dtype": args.dtype, "threads": args.threads, "cpu": cpu_kind(),
                       "gemm_peak_gflops": round(peak, 1), "phases": out,
                       "step_ms": round(t_step * 1000, 2), "step_gflop": round(f_step, 3)}, fh, indent=2)


if __name__ == "__main__":
    main()
