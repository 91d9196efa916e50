"""The public :class:`UniLS` model: loading, saving and offline generation.

The class is thin on purpose: the math lives in :mod:`unils.nn`, the window step in
:mod:`unils.generation`, audio handling in :mod:`unils.audio` and file resolution in :mod:`unils.hub`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .audio import AudioInput, load_audio, pad_to_same_length
from .checkpoint import load_state_dict_strict, read_checkpoint, save_checkpoint
from .config import UniLSConfig
from .errors import MotionError
from .generation import ChunkState, GenerationOptions, initial_state, plan_windows, step
from .hub import resolve_checkpoint
from .motion import Motion
from .nn.build import build_audio_encoder
from .nn.codec import MotionCodec
from .nn.generator import Generator
from .sampling import make_generator
from .smoothing import savgol_filter

if TYPE_CHECKING:
    from .streaming import StreamSession

__all__ = ["UniLS", "build_audio_encoder"]

logger = logging.getLogger("unils")

MotionLike = Motion | np.ndarray | Tensor


def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU runs ``dtype`` matrix work natively (oneDNN bf16/fp16 kernels)."""
    try:
        if dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if dtype == torch.float16:
            return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):  # older torch builds without the probe
        return False
    return dtype == torch.float32


class UniLS(nn.Module):
    """UniLS: audio of a person (and optionally of their partner) -> that person's FLAME motion.

    Build one with :meth:`from_pretrained`; it holds weights only, so one instance can serve many
    threads and streaming sessions at once (each call keeps its own state).

    Example:
        >>> model = UniLS.from_pretrained("path/to/checkpoint")          # doctest: +SKIP
        >>> motion = model.generate("me.wav", partner_audio="you.wav")  # doctest: +SKIP
        >>> motion.jaw.shape                                             # doctest: +SKIP
        (250, 1)
    """

    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.codec = MotionCodec(config.codec)
        self.audio_encoder = build_audio_encoder(config)
        self.generator = Generator(config.generator, config.codec, config.audio_encoder.out_dim)
        self._silence: dict[tuple[Any, ...], Tensor] = {}
        self.audio_autocast: torch.dtype | None = None
        self.eval()

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        subfolder: str | None = None,
        audio_encoder: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> "UniLS":
        """Load a checkpoint folder, a Hub repo id (cached or downloaded) or a bundled name.

        A folder or repo holding official ``.pt`` checkpoints instead of ``config.json`` is converted
        once into the converted cache (``unils cache list``); only the files of the chosen model are
        downloaded. Stage-1/2 checkpoints are skipped; when several stage-3 candidates remain, the
        error lists each with the exact call that chooses it.

        Args:
            name_or_path: local folder with ``config.json`` + ``model.safetensors``, a folder of
                official ``.pt`` files, a Hub repo id, or a bundled name.
            filename: the official checkpoint to use, relative to the repo/folder (and ``subfolder``),
                e.g. ``"unils_loragen_s/iter_400000.pt"``.
            subfolder: look only inside this folder of the repo/folder.
            audio_encoder: wav2vec2 weights for an official checkpoint (folder, weights file or Hub
                repo id); default: a ``wav2vec2/`` folder beside the checkpoint, else
                ``facebook/wav2vec2-xls-r-300m``.
            revision: Hub branch, tag or commit.
            cache_dir: Hub cache folder.
            local_files_only: use the local cache only (``HF_HUB_OFFLINE=1`` does the same).
            token: Hub token for private repos.
            device: where to put the model (default CPU).
            dtype: precision of the generator and audio encoder (``torch.float32`` default,
                ``torch.bfloat16`` / ``torch.float16`` for speed); the small motion codec stays float32.

        Raises:
            CheckpointNotFoundError: nothing found at ``name_or_path`` (or not in the cache offline).
            AmbiguousCheckpointError: several official checkpoints fit; the message shows each call.
            CheckpointError: the weights do not match the config (names the tensors).
            ConfigError: config.json is malformed.

        Example:
            ```python
            from unils import UniLS

            model = UniLS.from_pretrained("xg-chu/UniLS", filename="unils_loragen.pt")
            ```
        """
        folder = resolve_checkpoint(
            name_or_path, filename=filename, subfolder=subfolder, audio_encoder=audio_encoder,
            revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token,
        )
        config, tensors = read_checkpoint(folder)
        model = cls(config)
        load_state_dict_strict(model, tensors, label=str(folder))
        logger.info("loaded %s from %s", config.name, folder)
        if device is not None:
            model.to(device)
        if dtype is not None:
            model.set_precision(dtype)
        return model

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (loadable with :meth:`from_pretrained`)."""
        return save_checkpoint(folder, self.config, self.state_dict())

    def set_precision(self, dtype: torch.dtype | str) -> "UniLS":
        """Cast the generator and audio encoder to ``dtype``; the codec and its stats stay float32."""
        if isinstance(dtype, str):
            dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        self.generator.to(dtype)
        self.audio_encoder.to(dtype)
        self._silence.clear()
        return self

    def set_audio_autocast(self, dtype: torch.dtype | str | None) -> "UniLS":
        """Run the audio encoder under autocast (``"bfloat16"``/``"float16"``) or exactly (None).

        On CPUs with native bfloat16 (AVX512-BF16/AMX) this makes wav2vec2 about 3x faster at a
        relative feature error of about 1%; see the benchmarks page for the drift it causes.
        """
        if isinstance(dtype, str):
            dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None}[dtype]
        if dtype is not None and self.device.type == "cpu" and not cpu_has_native(dtype):
            logger.warning(
                "this CPU has no native %s support (capability %s): autocast would be emulated and much "
                "slower than float32; keeping it as asked",
                dtype, torch.backends.cpu.get_cpu_capability(),
            )
        self.audio_autocast = dtype
        self._silence.clear()
        return self

    def compile(self, **kwargs: Any) -> "UniLS":  # type: ignore[override]
        """Compile the audio encoder and the generator blocks with ``torch.compile`` (in place).

        Optional speed-up, mostly on GPUs: the first calls pay for compilation (seconds to minutes) and
        every new shape recompiles. Weights, parameter names and ``save_pretrained`` are unchanged;
        results equal the eager model within float tolerance (kernels may sum in another order). On
        the CPU, compilation needs a C++ compiler.

        Args:
            **kwargs: passed to ``torch.compile`` (default ``dynamic=True``).
        """
        kwargs.setdefault("dynamic", True)
        self.audio_encoder.compile(**kwargs)
        for blk in self.generator.blocks:
            blk.compile(**kwargs)
        self._silence.clear()
        logger.info("compiled the audio encoder and %d generator blocks (%s)", len(self.generator.blocks), kwargs)
        return self

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.codec.motion_mean.device

    @property
    def fps(self) -> int:
        """Motion frames per second (25 for the official models)."""
        return self.config.fps

    # ------------------------------------------------------------------ audio features
    @torch.inference_mode()
    def encode_windows(self, windows: Tensor, batch_size: int = 8) -> Tensor:
        """Audio windows [K, window_samples] (16 kHz) -> features [K, La, A], each window on its own."""
        enc_dtype = next(self.audio_encoder.parameters()).dtype
        outs = []
        for start in range(0, windows.shape[0], batch_size):
            chunk = windows[start : start + batch_size].to(self.device)
            if self.audio_autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.audio_autocast):
                    feats = self.audio_encoder(chunk.to(enc_dtype))
            else:
                feats = self.audio_encoder(chunk.to(enc_dtype))
            outs.append(feats.float())
        return torch.cat(outs)

    def _window_audio(self, samples: np.ndarray, num_windows: int) -> Tensor:
        total = num_windows * self.config.window_samples
        padded = np.zeros(total, dtype=np.float32)
        padded[: samples.shape[0]] = samples
        return torch.from_numpy(padded).view(num_windows, self.config.window_samples)

    def silence_features(self) -> Tensor:
        """Features [La, A] of an all-zero window: the partner channel when no partner audio is given."""
        key = (self.device, next(self.audio_encoder.parameters()).dtype, self.audio_autocast)
        feats = self._silence.get(key)
        if feats is None:
            feats = self.encode_windows(torch.zeros(1, self.config.window_samples))[0]
            self._silence[key] = feats
        return feats

    # ------------------------------------------------------------------ generation
    def _options(self, temperature: float | None, top_p: float | None, cfg_scale: float | None, use_cache: bool) -> GenerationOptions:
        c = self.config
        return GenerationOptions(
            temperature=c.temperature if temperature is None else float(temperature),
            top_p=c.top_p if top_p is None else float(top_p),
            cfg_scale=c.cfg_scale if cfg_scale is None else float(cfg_scale),
            use_cache=use_cache,
        )

    def _clip(self, motion: MotionLike | None, what: str, from_end: bool) -> Tensor | None:
        if motion is None:
            return None
        arr = motion.to_array() if isinstance(motion, Motion) else Motion.from_array(motion).to_array()
        w = self.config.window_frames
        if what == "style":
            if arr.shape[0] < w:
                raise MotionError(f"style needs at least {w} frames ({w / self.fps:.0f} s); got {arr.shape[0]}")
            arr = arr[:w]
        else:  # previous motion: the last window, left-padded with zeros as in training
            arr = arr[-w:]
            arr = np.concatenate([np.zeros((w - arr.shape[0], arr.shape[1]), np.float32), arr])
        return torch.from_numpy(np.ascontiguousarray(arr))

    def initial_state(
        self,
        seeds: Sequence[int | None],
        styles: Sequence[MotionLike | None] | None = None,
        prev_motions: Sequence[MotionLike | None] | None = None,
    ) -> ChunkState:
        """Fresh :class:`~unils.generation.ChunkState` for ``len(seeds)`` people."""
        n = len(seeds)
        styles = list(styles) if styles is not None else [None] * n
        prevs = list(prev_motions) if prev_motions is not None else [None] * n
        w, d = self.config.window_frames, self.config.codec.motion_dim

        def stack(items: list[MotionLike | None], what: str) -> Tensor | None:
            clips = [self._clip(m, what, what == "prev") for m in items]
            if all(c is None for c in clips):
                return None
            return torch.stack([torch.zeros(w, d) if c is None else c for c in clips])

        gens = [make_generator(s, self.device) for s in seeds]
        return initial_state(self.codec, gens, stack(styles, "style"), stack(prevs, "prev"))

    def step(self, state: ChunkState, self_features: Tensor, other_features: Tensor, options: GenerationOptions) -> tuple[Tensor, ChunkState]:
        """One window for every row of ``state``; see :func:`unils.generation.step`."""
        motion, _bits, new_state = step(self.codec, self.generator, state, self_features, other_features, options)
        return motion, new_state

    def _finish(self, motion: np.ndarray, frames: int, smooth: bool) -> Motion:
        arr = motion[:frames]
        if smooth:
            arr = savgol_filter(arr)
        return Motion.from_array(arr, fps=float(self.fps))

    @torch.inference_mode()
    def _generate_rows(
        self,
        channels: list[np.ndarray],
        rows: list[tuple[int, int | None]],
        seeds: Sequence[int | None],
        styles: Sequence[MotionLike | None] | None,
        prev_motions: Sequence[MotionLike | None] | None,
        options: GenerationOptions,
        smooth: bool,
        progress: bool,
        row_frames: list[int] | None = None,
        skip_draws: int = 0,
    ) -> list[Motion]:
        """Generate one person per row; ``rows[i] = (own channel, partner channel or None)``.

        Every channel is encoded once and shared by every row that uses it (own or partner).
        """
        longest = max(ch.shape[0] for ch in channels)
        frames, windows = plan_windows(longest, self.config.samples_per_frame, self.config.window_frames)
        if row_frames is None:
            row_frames = [frames] * len(rows)
        # All windows of all channels in one batched encoder pass (each window is still encoded alone).
        feats = self.encode_windows(torch.cat([self._window_audio(ch, windows) for ch in channels]))
        feats = list(feats.view(len(channels), windows, *feats.shape[1:]))
        silence = self.silence_features().expand(windows, -1, -1) if any(o is None for _, o in rows) else None
        self_f = torch.stack([feats[s] for s, _ in rows])  # [B, K, La, A]
        other_f = torch.stack([feats[o] if o is not None else silence for _, o in rows])
        state = self.initial_state(seeds, styles, prev_motions)
        for gen in state.generators:
            for _ in range(skip_draws):
                torch.rand((), generator=gen, device=gen.device)
        out = []
        iterator = range(windows)
        if progress:
            from huggingface_hub.utils import tqdm

            iterator = tqdm(iterator, desc="unils", unit="window")
        for k in iterator:
            motion, state = self.step(state, self_f[:, k], other_f[:, k], options)
            out.append(motion.float().cpu())
        full = torch.cat(out, dim=1).numpy()
        return [self._finish(full[i], row_frames[i], smooth) for i in range(len(rows))]

    def _load_pair(self, audio: AudioInput, partner_audio: AudioInput | None, sample_rate: int | None) -> list[np.ndarray]:
        a = load_audio(audio, sample_rate, target_rate=self.config.sample_rate, name="audio")
        if partner_audio is None:
            return [a]
        b = load_audio(partner_audio, sample_rate, target_rate=self.config.sample_rate, name="partner_audio")
        return pad_to_same_length(a, b)

    def generate(
        self,
        audio: AudioInput,
        partner_audio: AudioInput | None = None,
        *,
        sample_rate: int | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        smooth: bool = True,
        style: MotionLike | None = None,
        prev_motion: MotionLike | None = None,
        use_cache: bool = True,
        progress: bool = False,
        official_rng: bool = False,
    ) -> Motion:
        """Generate the motion of the person speaking in ``audio``.

        Args:
            audio: the person's voice: a path, or a 1-D / [channels, samples] numpy array or tensor.
            partner_audio: the other person's voice, same forms; None = nobody else (silence).
            sample_rate: rate of array inputs (default 16000); files carry their own. Audio at other
                rates is resampled to 16 kHz.
            seed: seed of this generation's random draws (None = random).
            temperature: divides the logits (default from the config, 1.0).
            top_p: per-bit nucleus threshold (default 0.97).
            cfg_scale: classifier-free guidance scale (default 1.5; <= 1 disables guidance and its cost).
            smooth: apply the official Savitzky-Golay smoothing (window 9, order 3).
            style: optional style clip (at least one window, 100 frames); its first window is used.
            prev_motion: optional motion that precedes the audio (its last window is used).
            use_cache: key/value caching across scales (fast). False runs the official full recomputation.
            progress: show a progress bar over windows.
            official_rng: reproduce, for the same ``seed``, the random draws of the official inference
                run on the CPU in its pinned environment, whose wav2vec2 (transformers 5.3) consumes one
                draw per encoder layer per encoded window even in eval mode. Without it the draws equal
                the official ones under transformers versions that do not (e.g. 5.24) and on CUDA.

        Returns:
            :class:`~unils.Motion` with ``ceil(samples / 640)`` frames at 25 fps (for 16 kHz audio).

        Raises:
            AudioError: empty, NaN/inf, too short or malformed audio.
            AudioFileError: a path that does not exist or cannot be decoded.
        """
        channels = self._load_pair(audio, partner_audio, sample_rate)
        rows = [(0, 1 if partner_audio is not None else None)]
        options = self._options(temperature, top_p, cfg_scale, use_cache)
        skip = 0
        if official_rng:
            if self.config.audio_encoder.type != "wav2vec2":
                raise ValueError("official_rng reproduces the official wav2vec2 pipeline; this model uses another encoder")
            windows = plan_windows(channels[0].shape[0], self.config.samples_per_frame, self.config.window_frames)[1]
            # The official inference encodes both channels (K windows each) before sampling.
            skip = 2 * windows * self.config.audio_encoder.wav2vec2.num_hidden_layers
        return self._generate_rows(
            channels, rows, [seed], [style], [prev_motion], options, smooth, progress, skip_draws=skip
        )[0]

    def generate_both(
        self,
        audio: AudioInput,
        partner_audio: AudioInput,
        *,
        sample_rate: int | None = None,
        seed: int | tuple[int, int] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        smooth: bool = True,
        styles: tuple[MotionLike | None, MotionLike | None] | None = None,
        use_cache: bool = True,
        progress: bool = False,
    ) -> tuple[Motion, Motion]:
        """Both people of a conversation in one batched pass: ``(motion of audio, motion of partner)``.

        Each channel is encoded once and serves as one person's own voice and the other's partner.
        ``seed=s`` seeds the first person with ``s`` and the second with ``s + 1`` (or pass a pair), so
        the result equals ``generate(audio, partner_audio, seed=s)`` and
        ``generate(partner_audio, audio, seed=s + 1)`` up to floating-point batch effects.
        """
        if isinstance(seed, tuple):
            seeds: list[int | None] = list(seed)
        else:
            seeds = [seed, None if seed is None else seed + 1]
        channels = self._load_pair(audio, partner_audio, sample_rate)
        options = self._options(temperature, top_p, cfg_scale, use_cache)
        first, second = self._generate_rows(
            channels, [(0, 1), (1, 0)], seeds, list(styles) if styles else None, None, options, smooth, progress
        )
        return first, second

    def generate_batch(
        self,
        items: Sequence[AudioInput | tuple[AudioInput, AudioInput | None]],
        *,
        sample_rate: int | None = None,
        seeds: Sequence[int | None] | int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        smooth: bool = True,
        use_cache: bool = True,
        progress: bool = False,
    ) -> list[Motion]:
        """Many independent generations in one batched pass (e.g. a folder of clips).

        Args:
            items: each an audio input, or an ``(audio, partner_audio)`` pair (partner may be None).
                Lengths may differ: every result has its own input's frame count.
            seeds: one seed per item, or an int ``s`` meaning ``s, s + 1, ...``.
            sample_rate: rate of array inputs (default 16000), as in :meth:`generate`.
            temperature: sampling temperature, as in :meth:`generate`.
            top_p: nucleus threshold, as in :meth:`generate`.
            cfg_scale: classifier-free guidance scale, as in :meth:`generate`.
            smooth: Savitzky-Golay smoothing, as in :meth:`generate`.
            use_cache: key/value caching across scales, as in :meth:`generate`.
            progress: show a progress bar, as in :meth:`generate`.

        Returns:
            One :class:`~unils.Motion` per item, equal to ``generate(audio, partner, seed=seed_i)``
            up to floating-point batch effects.
        """
        if not items:
            return []
        if seeds is None or isinstance(seeds, int):
            base = seeds
            seed_list: list[int | None] = [None if base is None else base + i for i in range(len(items))]
        else:
            seed_list = list(seeds)
            if len(seed_list) != len(items):
                raise ValueError(f"{len(items)} items but {len(seed_list)} seeds")
        channels: list[np.ndarray] = []
        rows: list[tuple[int, int | None]] = []
        frames: list[int] = []
        for item in items:
            audio, partner = item if isinstance(item, tuple) else (item, None)
            pair = self._load_pair(audio, partner, sample_rate)
            own = len(channels)
            channels.extend(pair)
            rows.append((own, own + 1 if len(pair) == 2 else None))
            frames.append(plan_windows(pair[0].shape[0], self.config.samples_per_frame, self.config.window_frames)[0])
        options = self._options(temperature, top_p, cfg_scale, use_cache)
        return self._generate_rows(channels, rows, seed_list, None, None, options, smooth, progress, row_frames=frames)

    def stream(self, **kwargs: Any) -> "StreamSession":
        """Open a streaming session (see :class:`unils.streaming.StreamSession`)."""
        from .streaming import StreamSession

        return StreamSession(self, **kwargs)
