"""Training extra: dataset format, sampler, LoRA, schedule/EMA, the three stages end to end, resume, DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tiny_config
from safetensors.torch import load_file
from helpers.train_data import make_dataset

from unils import UniLS
from unils.config import AudioEncoderConfig, MelConfig, UniLSConfig
from unils.nn.generator import Generator
from unils.nn.lora import LoRALinear, apply_lora, merge_lora_modules, merged_weight
from unils.train.data import ClipSampler, DatasetError, load_dataset, validate_dataset
from unils.train.stages import AudioStage, StageOptions, lora_targets
from unils.train.trainer import EMA, TrainOptions, lr_factor, train_stage


def mel_tiny() -> UniLSConfig:
    cfg = tiny_config()
    cfg.audio_encoder = AudioEncoderConfig(type="mel", mel=MelConfig(channels=16, out_dim=16, n_mels=20, num_layers=1))
    return cfg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "data")


# ---------------------------------------------------------------------------------- dataset
def test_validator_accepts_good_dataset(dataset):
    report = validate_dataset(dataset)
    assert report.ok, report.summary()
    assert report.conversations == 3 and report.motion_only == 1
    assert report.frames == 3 * 300 + 300


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_validator_reports_problems(dataset, tmp_path):
    bad = _copy(dataset, tmp_path / "bad")
    (bad / "dataset.json").unlink()
    np.savez(bad / "conversations" / "conv000" / "motion.npz", speaker0=np.zeros((300, 107), np.float32),
             speaker1=np.zeros((300, 107), np.float32))
    m = np.zeros((300, 108), np.float32)
    m[5, 3] = np.nan
    np.savez(bad / "conversations" / "conv001" / "motion.npz", speaker0=m, speaker1=m)
    sf.write(bad / "conversations" / "conv002" / "speaker1.wav", np.zeros((300 * 640, 2), np.float32), 16000)
    np.savez(bad / "motion_only" / "short.npz", motion=np.zeros((80, 108), np.float32))
    report = validate_dataset(bad)
    text = report.summary()
    assert not report.ok
    assert "dataset.json: missing" in text
    assert "must be [T, 108], got [300, 107]" in text
    assert "NaN" in text
    assert "2 channels, the format needs mono" in text
    assert any("short" in w and "too short" in w for w in report.warnings)
    with pytest.raises(DatasetError, match="dataset has errors"):
        load_dataset(bad)
    with pytest.raises(ValueError):  # DatasetError is a ValueError
        load_dataset(tmp_path / "nowhere")


def test_validator_wrong_sample_rate(dataset, tmp_path):
    bad = _copy(dataset, tmp_path / "sr")
    sf.write(bad / "conversations" / "conv000" / "speaker0.wav", np.zeros(300 * 441, np.float32), 44100)
    assert "44100 Hz, the format needs 16000 Hz" in validate_dataset(bad).summary()


def test_sampler_follows_official_rules(dataset):
    data = load_dataset(dataset)
    sampler = ClipSampler(data, seed=3)
    # One index entry per start 0, 50, ... below T - 100 for every person's sequence.
    assert len(sampler.motion_index) == 7 * len(range(0, 200, 50))
    for _ in range(20):
        b = sampler.motion_batch(4)
        assert b.motion.shape == b.prev.shape == b.style.shape == (4, 100, 108)
    # The previous clip is the 100 frames before the current one, zero-padded on the left.
    seq = data.motion_sequences()[0].motion
    sampler.rng = np.random.default_rng(0)
    cur, prev, style = sampler.clips(seq, 30)
    np.testing.assert_array_equal(cur, seq[30:130])
    np.testing.assert_array_equal(prev[:70], 0)
    np.testing.assert_array_equal(prev[70:], seq[:30])
    assert any(np.array_equal(style, seq[s : s + 100]) for s in range(201))
    # Pairs: both people share the start and the audio window is cut at start * 640.
    pb = sampler.pair_batch(2)
    assert pb.motion.shape == (2, 2, 100, 108) and pb.audio.shape == (2, 2, 64000)
    conv = data.conversations[0]
    sampler.rng = np.random.default_rng(1)
    sampler.pair_index = [(0, 50)]
    start = min(int(np.random.default_rng(1).integers(50, 101)), conv.frames - 100)
    pb = sampler.pair_batch(1)
    np.testing.assert_array_equal(pb.motion[0], conv.motion[:, start : start + 100])
    track, _ = sf.read(conv.audio_paths[1], dtype="float32")
    np.testing.assert_array_equal(pb.audio[0, 1], track[start * 640 : start * 640 + 64000])


def test_motion_stats(dataset):
    data = load_dataset(dataset)
    mean, std = data.motion_stats()
    frames = np.concatenate([s.motion for s in data.motion_sequences()])
    np.testing.assert_allclose(mean, frames.mean(0), atol=1e-6)
    assert std.min() >= 1e-4 and mean.shape == (108,)


# ---------------------------------------------------------------------------------- pieces
def test_lr_schedule_official_values():
    assert lr_factor(0, 1000, 200000, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 1000, 200000, 0.1) == pytest.approx(0.55)
    assert lr_factor(1000, 1000, 200000, 0.1) == pytest.approx(1.0)
    assert lr_factor(100500, 1000, 200000, 0.1) == pytest.approx(0.55)
    assert lr_factor(200000, 1000, 200000, 0.1) == pytest.approx(0.1)
    assert lr_factor(300000, 1000, 200000, 0.1) == pytest.approx(0.1)


def test_ema_update():
    lin = torch.nn.Linear(2, 2)
    ema = EMA(lin, decay=0.5)
    start = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(lin)  # first update: decay min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["weight"], start * d + (start + 1) * (1 - d))


def test_lora_linear_zero_init_and_merge():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 4)
    x = torch.randn(3, 6)
    lora = LoRALinear(base, r=2, alpha=4.0)
    torch.testing.assert_close(lora(x), base(x))  # B starts at zero
    with torch.no_grad():
        lora.lora_B.normal_()
    expected = base(x) + 2.0 * (x @ lora.lora_A.T @ lora.lora_B.T)
    torch.testing.assert_close(lora(x), expected)
    torch.testing.assert_close(lora.merged()(x), expected, atol=1e-5, rtol=1e-5)
    w = merged_weight(base.weight, lora.lora_A, lora.lora_B, 2.0)
    torch.testing.assert_close(w, base.weight + 2.0 * lora.lora_B @ lora.lora_A, atol=1e-6, rtol=1e-6)


def test_official_lora_targets_and_trainable_set():
    cfg = mel_tiny()
    stage = AudioStage(cfg, StageOptions(lora_r=4, lora_alpha=4))
    g = stage.model.generator
    wrapped = [n for n, m in g.named_modules() if isinstance(m, LoRALinear)]
    assert sorted(wrapped) == sorted(lora_targets(cfg.generator.depth))
    assert len(wrapped) == 2 + 4 * cfg.generator.depth
    trainable = {n for n, p in stage.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or "_audio_attn." in n or n.startswith("model.audio_encoder.") for n in trainable)
    assert "model.generator.self_pos" not in trainable  # frozen at init, as in the official recipe
    assert not any(n.startswith("model.codec.") for n in trainable)
    merge_lora_modules(g)
    assert not any(isinstance(m, LoRALinear) for m in g.modules())


def test_prior_generator_matches_official_sizes():
    cfg = UniLSConfig.large()
    free = Generator(cfg.generator, cfg.codec, 1024, with_audio=False)
    full = Generator(cfg.generator, cfg.codec, 1024)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(free) == 25_261_632  # official UniLSFreeGen (L) without its codec
    assert count(full) == 50_511_424  # official UniLSGen (L)
    assert not any("audio_attn" in k or k.endswith("_pos") and "self" in k for k in free.state_dict())
    small = UniLSConfig.small()
    assert count(Generator(small.generator, small.codec, 1024, with_audio=False)) == 10_680_640
    lora = sum(p.numel() for p in apply_lora_count(cfg))
    assert lora == 2_132_992  # official LoRA parameter count (L, r = 32)


def apply_lora_count(cfg: UniLSConfig) -> list[torch.nn.Parameter]:
    g = Generator(cfg.generator, cfg.codec, 1024)
    apply_lora(g, lora_targets(cfg.generator.depth), 32, 32.0)
    return [p for m in g.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]


def test_teacher_forcing_equals_reference_path():
    torch.manual_seed(0)
    cfg = tiny_config()
    g = Generator(cfg.generator, cfg.codec, 32).eval()
    b = 2
    prefix = torch.randn(b, 200, 32)
    nxt = torch.randn(b, g.num_tokens - 1, cfg.codec.code_dim)
    tokens = g.teacher_tokens(nxt)
    per_level = [g.level_tokens(0, None, b)] + [
        g.level_tokens(k, nxt[:, g.offsets[k] - 1 : g.offsets[k + 1] - 1], b) for k in range(1, len(g.scales))
    ]
    torch.testing.assert_close(tokens, torch.cat(per_level, dim=1))
    sf_, of_ = torch.randn(b, 199, 32), torch.randn(b, 199, 32)
    torch.testing.assert_close(g.forward_full(prefix, tokens, g.audio_context(sf_, of_)),
                               g.forward_reference(prefix, tokens, sf_, of_))
    free = Generator(cfg.generator, cfg.codec, 32, with_audio=False).eval()
    assert free.forward_full(prefix, tokens, None).shape == (b, g.num_tokens, 32)
    with pytest.raises(ValueError, match="audio context"):
        g.forward_full(prefix, tokens, None)


# ---------------------------------------------------------------------------------- end to end
FAST = dict(batch_size=2, lr=3e-3, warmup=2, log_every=2, checkpoint_every=100, progress=False)


@pytest.fixture(scope="module")
def pipeline(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    r1 = train_stage("codec", dataset, out / "codec", config=mel_tiny(), options=TrainOptions(steps=40, **FAST))
    r2 = train_stage("prior", dataset, out / "prior", init=r1.export_dir, options=TrainOptions(steps=30, **FAST))
    r3 = train_stage("audio", dataset, out / "audio", init=r2.export_dir, options=TrainOptions(steps=16, **FAST))
    return r1, r2, r3


def test_three_stages_lower_their_losses(pipeline):
    for r in pipeline:
        assert len(r.history) >= 8
        assert r.mean_loss(first=False) < r.mean_loss(first=True), (r.stage, r.history)
    codec, prior, audio = pipeline
    assert (codec.export_dir / "codec.safetensors").is_file()
    assert set(load_file(str(prior.export_dir / "prior.safetensors"))) >= {"generator.sos_embed", "codec.motion_mean"}
    assert not any("audio_attn" in k for k in load_file(str(prior.export_dir / "prior.safetensors")))
    rows = [json.loads(line) for line in (codec.export_dir.parent / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 40 and {"vq", "exp", "pose", "head_vel", "head_smooth", "lr"} <= set(rows[-1])


def test_codec_stats_come_from_data(pipeline, dataset):
    tensors = load_file(str(pipeline[0].export_dir / "codec.safetensors"))
    mean, std = load_dataset(dataset).motion_stats()
    np.testing.assert_allclose(tensors["codec.motion_mean"].numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(tensors["codec.motion_std"].numpy(), std, atol=1e-6)


def test_export_loads_and_generates(pipeline, dataset):
    export = pipeline[2].export_dir
    model = UniLS.from_pretrained(export)
    assert not any(".lora_" in k or ".base." in k for k in model.state_dict())  # merged
    prior = load_file(str(pipeline[1].export_dir / "prior.safetensors"))
    # self_pos stays at its initialisation and the codec is the stage-1 codec.
    torch.testing.assert_close(model.codec.motion_std, prior["codec.motion_std"])
    a, _ = sf.read(dataset / "conversations" / "conv000" / "speaker0.wav", dtype="float32")
    b, _ = sf.read(dataset / "conversations" / "conv000" / "speaker1.wav", dtype="float32")
    motion = model.generate(a[: 16000 * 5], b[: 16000 * 5], sample_rate=16000, seed=0)
    assert motion.jaw.shape == (125, 1) and np.isfinite(motion.to_array()).all()


def test_merged_export_equals_unmerged_stage(pipeline, dataset):
    """The exported (merged) model computes the same logits as the trained LoRA model."""
    stage = AudioStage(mel_tiny(), StageOptions())
    stage.init_from(pipeline[2].export_dir, "audio")
    with torch.no_grad():
        for m in stage.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.05)
    stage.eval()
    out = stage.export(Path(pipeline[2].export_dir).parent / "merged_check")
    merged = UniLS.from_pretrained(out)
    g0, g1 = stage.model.generator, merged.generator
    torch.manual_seed(0)
    prefix, nxt = torch.randn(1, 200, 32), torch.randn(1, g0.num_tokens - 1, 32)
    feats = torch.randn(1, 199, 16)
    with torch.no_grad():
        a = g0.logits(g0.forward_full(prefix, g0.teacher_tokens(nxt), g0.audio_context(feats, feats)))
        b = g1.logits(g1.forward_full(prefix, g1.teacher_tokens(nxt), g1.audio_context(feats, feats)))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_resume_equals_uninterrupted(dataset, tmp_path):
    base = dict(FAST, checkpoint_every=5)
    cfg = mel_tiny()
    straight = train_stage("codec", dataset, tmp_path / "a", config=cfg, options=TrainOptions(steps=10, **base))
    train_stage("codec", dataset, tmp_path / "b", config=cfg, options=TrainOptions(steps=10, stop_at=5, **base))
    assert json.loads((tmp_path / "b" / "checkpoint" / "trainer.json").read_text())["step"] == 5
    resumed = train_stage("codec", dataset, tmp_path / "b", resume=True, options=TrainOptions(steps=10, **base))
    assert resumed.steps == 10
    a = load_file(str(straight.export_dir / "codec.safetensors"))
    b = load_file(str(resumed.export_dir / "codec.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    with pytest.raises(ValueError, match="pass more steps"):
        train_stage("codec", dataset, tmp_path / "b", resume=True, options=TrainOptions(steps=10, **base))
    with pytest.raises(ValueError, match="holds a 'codec' run"):
        train_stage("prior", dataset, tmp_path / "b", resume=True, options=TrainOptions(steps=20, **base))


def test_bad_stage_inputs(dataset, tmp_path, pipeline):
    with pytest.raises(ValueError, match="pass init"):
        train_stage("prior", dataset, tmp_path / "x", options=TrainOptions(steps=1, **FAST))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        train_stage("prior", dataset, tmp_path / "x", init=tmp_path, options=TrainOptions(steps=1, **FAST))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_stage("codec", dataset, tmp_path / "y", resume=True, options=TrainOptions(steps=1, **FAST))
    with pytest.raises(ValueError, match="steps must be positive"):
        train_stage("codec", dataset, tmp_path / "y", options=TrainOptions(steps=0, **FAST))
    only_motion = tmp_path / "mo"
    make_dataset(only_motion, conversations=0, motion_only=2)
    with pytest.raises(DatasetError, match="needs conversations"):
        train_stage("audio", only_motion, tmp_path / "z", init=pipeline[1].export_dir,
                    options=TrainOptions(steps=1, **FAST))
    w2v = tiny_config()  # stage 3 with a frozen wav2vec2 needs its pretrained weights
    train_stage("codec", dataset, tmp_path / "wc", config=w2v, options=TrainOptions(steps=2, **FAST))
    train_stage("prior", dataset, tmp_path / "wp", init=tmp_path / "wc" / "export", options=TrainOptions(steps=2, **FAST))
    with pytest.raises(ValueError, match="--audio-encoder"):
        train_stage("audio", dataset, tmp_path / "wa", init=tmp_path / "wp" / "export", options=TrainOptions(steps=2, **FAST))


def test_cli_train_and_validate(dataset, tmp_path, capsys):
    from unils.cli import main

    assert main(["train", "validate", "--data", str(dataset)]) == 0
    assert "3 conversation(s)" in capsys.readouterr().out
    assert main(["train", "validate", "--data", str(tmp_path)]) == 1
    cfg = tmp_path / "cfg.json"
    mel_tiny().save(cfg)
    rc = main(["-q", "train", "codec", "--data", str(dataset), "--out", str(tmp_path / "run"), "--config", str(cfg),
               "--steps", "4", "--batch-size", "2", "--warmup", "1", "--log-every", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "codec: 4 steps" in out and "export:" in out
    assert main(["train", "prior", "--data", str(dataset)]) == 2  # no --out
    assert "needs --out" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo(dataset, tmp_path):
    cfg = tmp_path / "cfg.json"
    mel_tiny().save(cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "unils", "-q", "train", "codec", "--data", str(dataset),
           "--out", str(tmp_path / "ddp"), "--config", str(cfg), "--steps", "6", "--batch-size", "2",
           "--warmup", "1", "--log-every", "2", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp" / "export" / "codec.safetensors").is_file()
    rows = (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()
    assert len(rows) == 3  # only rank 0 writes


def test_codec_mesh_losses_with_user_flame(dataset, tmp_path):
    """With a FLAME model (synthetic here, FLAME-shaped) stage 1 adds the mesh and lip terms."""
    from helpers.flame_synth import synthetic_flame_arrays

    from unils.flame import FlameModel
    from unils.train.mesh import flame_vertices

    a = synthetic_flame_arrays(seed=0)
    path = tmp_path / "flame.pt"
    FlameModel(a["v_template"], a["shapedirs"], a["posedirs"], a["J_regressor"], a["weights"],
               a["kintree_table"], a["f"]).save(path)
    vertices, lips = flame_vertices(path)
    r = train_stage("codec", dataset, tmp_path / "run", config=mel_tiny(), vertices=vertices, lip_indices=lips,
                    options=TrainOptions(steps=2, **FAST))
    row = r.history[-1]
    assert row["mesh"] > 0 and row["lips"] > 0
    # The logged loss is the sum of the weighted terms.
    terms = ("vq", "exp", "pose", "head_vel", "head_smooth", "mesh", "lips")
    assert row["loss"] == pytest.approx(sum(row[k] for k in terms), rel=1e-5)


def test_codec_expr_mse_term_is_opt_in():
    """The squared expression term is off in the official recipe and prices a missed blink when on."""
    from unils.errors import ConfigError
    from unils.train.losses import CodecLossWeights, codec_losses

    target = torch.zeros(2, 100, 108)
    target[:, 40:44, 6] = 1.5  # one 4-frame blink per window
    target[:, 60:62, 3] = 1.2  # one lip closure
    pred = torch.zeros_like(target)  # a codec that reconstructs neither
    vq = torch.tensor(0.25)
    official = codec_losses(pred, target, vq)
    assert set(official) == {"vq", "exp", "pose", "head_vel", "head_smooth"}
    terms = codec_losses(pred, target, vq, CodecLossWeights(expr_mse=2.0, expr_mse_dims=7))
    for k, v in official.items():
        assert torch.equal(terms[k], v)
    expected = 2.0 * (2 * 4 * 1.5**2 + 2 * 2 * 1.2**2) / (2 * 100 * 7)
    assert terms["expr_mse"].item() == pytest.approx(expected, rel=1e-6)
    # Coefficients past expr_mse_dims are not part of the term.
    assert codec_losses(pred, target, vq, CodecLossWeights(expr_mse=1.0, expr_mse_dims=3))["expr_mse"].item() == 0.0
    for bad in ({"expr_mse": -1.0}, {"expr_mse_dims": 0}, {"expr_mse_dims": 101}):
        with pytest.raises(ConfigError, match="expr_mse"):
            CodecLossWeights(**bad)


def test_cli_codec_expr_mse_flags(dataset, tmp_path, capsys):
    from unils.cli import main

    cfg = tmp_path / "cfg.json"
    mel_tiny().save(cfg)
    base = ["-q", "train", "codec", "--data", str(dataset), "--config", str(cfg), "--steps", "2",
            "--batch-size", "2", "--warmup", "1", "--log-every", "1"]
    assert main([*base, "--out", str(tmp_path / "run"), "--expr-mse", "1.5", "--expr-mse-dims", "7"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["expr_mse"] > 0 for r in rows)
    terms = ("vq", "exp", "pose", "head_vel", "head_smooth", "expr_mse")
    assert rows[-1]["loss"] == pytest.approx(sum(rows[-1][k] for k in terms), rel=1e-5)
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "bad"), "--expr-mse-dims", "108"]) == 2
    assert "expr_mse_dims must be in 1..100" in capsys.readouterr().err


def test_cli_corpus_writes_a_valid_dataset(tmp_path, capsys):
    from unils.cli import main

    out = tmp_path / "corpus"
    assert main(["-q", "train", "corpus", "--data", str(out), "--conversations", "1", "--seconds", "6", "6",
                 "--seed", "3"]) == 0
    assert "wrote 1 conversation(s)" in capsys.readouterr().out
    report = validate_dataset(out)
    assert report.ok and report.conversations == 1 and report.frames == 150


def test_bf16_autocast_runs_on_cpu(dataset, tmp_path):
    r = train_stage("codec", dataset, tmp_path / "bf", config=mel_tiny(),
                    options=TrainOptions(steps=2, precision="bf16", **FAST))
    assert r.steps == 2 and np.isfinite(r.history[-1]["loss"])
