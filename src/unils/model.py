"""The public :class:`UniLS` model: loading, saving and offline generation.

The class is thin on purpose: the math lives in :mod:`unils.nn`, the window step in
:mod:`unils.generation`, audio handling in :mod:`unils.audio` and file resolution in :mod:`unils.hub`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .audio import AudioInput, load_audio, pad_to_same_length
from .checkpoint import load_state_dict_strict, read_checkpoint, save_checkpoint
from .config import UniLSConfig
from .errors import ConfigError
from .generation import (
    ChunkState,
    GenerationOptions,
    WindowEngine,
    expand_seeds,
    frame_count,
    per_person,
    plan_windows,
)
from .hub import resolve_checkpoint
from .motion import Motion, MotionLike
from .nn.build import UniLSModules, build_audio_encoder
from .precision import Precision, choose_precision, cpu_has_native, quantize_linear_int8
from .sampling import official_skipped_draws
from .smoothing import savgol_filter
from .streaming import StreamSession

__all__ = ["UniLS", "build_audio_encoder", "cpu_has_native"]

logger = logging.getLogger("unils")

_DTYPE_OF = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UniLS(UniLSModules):
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
        super().__init__(
            config
        )  # the weights: codec, audio encoder, generator (as the converter builds them)
        #: Runs windows for offline calls and streaming sessions alike (holds references, not copies).
        self.engine = WindowEngine(self.config, self.codec, self.generator, self.audio_encoder)
        #: The number formats the model computes in (see :meth:`set_precision`).
        self.precision = Precision("float32", "float32", "float32", reason="constructed")
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
        dtype: torch.dtype | str | None = "auto",
    ) -> UniLS:
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
            dtype: precision of the audio encoder and the generator: ``"auto"`` (default) picks the
                fastest one this device runs natively (bfloat16 on CUDA and on CPUs with AVX512-BF16
                or AMX, float32 elsewhere; ``$UNILS_DTYPE`` overrides it); ``"float32"`` is the exact
                reference; ``"bfloat16"``, ``"float16"``, or ``"int8"`` (CPU: dynamic int8 linear
                layers in the audio encoder's transformer, for AVX2-only CPUs). The motion codec stays
                float32. See ``model.precision`` and the benchmarks page for speed and drift.

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
            name_or_path,
            filename=filename,
            subfolder=subfolder,
            audio_encoder=audio_encoder,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        config, tensors = read_checkpoint(folder)
        model = cls(config)
        load_state_dict_strict(model, tensors, label=str(folder))
        logger.info("loaded %s from %s", config.name, folder)
        if device is not None:
            model.to(device)
        model.set_precision(dtype)
        logger.info("precision %s (%s)", model.precision, model.precision.reason)
        return model

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (loadable with :meth:`from_pretrained`).

        Raises:
            ConfigError: the model runs in int8 (a run-time form of the weights that cannot be saved).
        """
        if self.precision.audio_encoder == "int8":
            raise ConfigError(
                "int8 is a run-time form of the weights: save a model loaded with dtype='float32'"
            )
        return save_checkpoint(folder, self.config, self.state_dict())

    def set_precision(self, dtype: torch.dtype | str | None = "auto") -> UniLS:
        """Compute the generator and audio encoder in ``dtype``; the codec and its stats stay float32.

        Args:
            dtype: ``"auto"`` (the fastest native precision of the model's device), ``"float32"``,
                ``"bfloat16"``, ``"float16"``, ``"int8"`` or a torch dtype; see :meth:`from_pretrained`.

        Raises:
            ValueError: an unknown precision, int8 off the CPU, or leaving int8 (reload the model).
        """
        chosen = choose_precision(dtype, self.device)
        if self.precision.audio_encoder == "int8" and chosen.name != "int8":
            raise ValueError("the weights were quantized to int8: reload the model for another precision")
        self.generator.to(chosen.dtype)
        if chosen.audio_encoder == "int8":
            transformer = getattr(self.audio_encoder, "encoder", None)
            if transformer is None:
                # The log-mel front end has no transformer: int8 would save nothing and it stays float32.
                chosen = dataclasses.replace(
                    chosen,
                    audio_encoder="float32",
                    reason=chosen.reason + "; the mel audio encoder stays float32",
                )
            elif self.precision.audio_encoder != "int8":
                self.audio_encoder.to(torch.float32)
                # wav2vec2's transformer only: the conv front end and the projection stay float32.
                layers = quantize_linear_int8(transformer)
                logger.info("int8: %d linear layers of the audio encoder quantized", layers)
        if chosen.audio_encoder != "int8":
            self.audio_encoder.to(_DTYPE_OF[chosen.audio_encoder])
        self.precision = chosen
        self.engine.clear_caches()
        return self

    def set_audio_autocast(self, dtype: torch.dtype | str | None) -> UniLS:
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
                dtype,
                torch.backends.cpu.get_cpu_capability(),
            )
        self.engine.audio_autocast = dtype
        self.engine.clear_caches()
        return self

    @property
    def audio_autocast(self) -> torch.dtype | None:
        """Autocast dtype of the audio encoder (None: it runs in its own dtype); see :meth:`set_audio_autocast`."""
        return self.engine.audio_autocast

    def compile(self, **kwargs: Any) -> UniLS:  # type: ignore[override]
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
        self.engine.clear_caches()
        logger.info(
            "compiled the audio encoder and %d generator blocks (%s)", len(self.generator.blocks), kwargs
        )
        return self

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.codec.motion_mean.device

    @property
    def fps(self) -> int:
        """Motion frames per second (25 for the official models)."""
        return self.config.fps

    # ------------------------------------------------------------------ lower level (the engine)
    def encode_windows(self, windows: Tensor, batch_size: int = 8) -> Tensor:
        """Audio windows [K, window_samples] (16 kHz) -> features [K, La, A], each window on its own."""
        return self.engine.encode(windows, batch_size)

    def silence_features(self) -> Tensor:
        """Features [La, A] of an all-zero window: the partner channel when no partner audio is given."""
        return self.engine.silence()

    def options(
        self,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        use_cache: bool = True,
    ) -> GenerationOptions:
        """Sampling options from this model's defaults and the given overrides (validated)."""
        return self.engine.options(
            temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache
        )

    def initial_state(
        self,
        seeds: Sequence[int | None],
        styles: Sequence[MotionLike | None] | None = None,
        prev_motions: Sequence[MotionLike | None] | None = None,
    ) -> ChunkState:
        """Fresh :class:`~unils.generation.ChunkState` for ``len(seeds)`` people."""
        return self.engine.start(seeds, styles, prev_motions)

    def step(
        self, state: ChunkState, self_features: Tensor, other_features: Tensor, options: GenerationOptions
    ) -> tuple[Tensor, ChunkState]:
        """One window for every row of ``state``; see :func:`unils.generation.step`."""
        return self.engine.step(state, self_features, other_features, options)

    # ------------------------------------------------------------------ generation
    def _load_pair(
        self, audio: AudioInput, partner_audio: AudioInput | None, sample_rate: int | None
    ) -> list[np.ndarray]:
        a = load_audio(audio, sample_rate, target_rate=self.config.sample_rate, name="audio")
        if partner_audio is None:
            return [a]
        b = load_audio(partner_audio, sample_rate, target_rate=self.config.sample_rate, name="partner_audio")
        return pad_to_same_length(a, b)

    def _run(
        self,
        channels: list[np.ndarray],
        rows: list[tuple[int, int | None]],
        frames: list[int],
        seeds: list[int | None],
        styles: list[MotionLike | None],
        prevs: list[MotionLike | None],
        options: GenerationOptions,
        smooth: bool,
        progress: bool,
        skip_draws: int = 0,
    ) -> list[Motion]:
        state = self.engine.start(seeds, styles, prevs, skip_draws=skip_draws)
        raw = self.engine.run(channels, rows, state, options, progress=progress)
        out = []
        for i, n in enumerate(frames):
            arr = raw[i, :n]
            out.append(Motion.from_array(savgol_filter(arr) if smooth else arr, fps=float(self.fps)))
        return out

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

        Every entry point (:meth:`generate`, :meth:`generate_both`, :meth:`generate_batch`,
        :meth:`stream`, the server and the CLI) takes the same options with the same names and defaults.

        Args:
            audio: the person's voice: a path, or a 1-D / [channels, samples] numpy array or tensor.
            partner_audio: the other person's voice, same forms; None = nobody else (silence).
            sample_rate: rate of array inputs (default 16000); files carry their own. Audio at other
                rates is resampled to 16 kHz.
            seed: seed of this generation's random draws (None = random).
            temperature: divides the logits (default from the config, 1.0; range 0.001 .. 100).
            top_p: per-bit nucleus threshold (default 0.97; range 0 .. 1).
            cfg_scale: classifier-free guidance scale (default 1.5; <= 1 disables guidance and its cost).
            smooth: apply the official Savitzky-Golay smoothing (window 9, order 3).
            style: optional style clip (at least one window, 100 frames); its first window is used.
            prev_motion: optional motion that precedes the audio (its last window is used).
            use_cache: key/value caching across scales (fast). False runs the official full recomputation.
            progress: show a progress bar over windows.
            official_rng: reproduce, for the same ``seed``, the random draws of the official inference
                in its pinned environment, whose wav2vec2 (transformers 5.3) consumes one draw per
                encoder layer per encoded window even in eval mode. Those draws come from torch's CPU
                generator, so they shift the sampling only on the CPU; on CUDA the official samples
                from the CUDA generator and this option changes nothing. Without it the draws equal
                the official ones under transformers versions that do not draw (e.g. 5.24).

        Returns:
            :class:`~unils.Motion` with ``ceil(samples / 640)`` frames at 25 fps (for 16 kHz audio).

        Raises:
            AudioError: empty, NaN/inf, too short or malformed audio.
            AudioFileError: a path that does not exist or cannot be decoded.
            ConfigError: a sampling option out of its range, or ``official_rng`` on a model without wav2vec2.
            MotionError: a style clip shorter than one window, or a malformed motion.

        Example:
            ```python
            from unils import UniLS

            model = UniLS.from_pretrained("demo")
            motion = model.generate("me.wav", partner_audio="you.wav", seed=0, cfg_scale=2.0)
            print(motion.jaw.shape)  # (frames, 1)
            ```
        """
        options = self.options(temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache)
        channels = self._load_pair(audio, partner_audio, sample_rate)
        frames, windows = plan_windows(
            channels[0].shape[0], self.config.samples_per_frame, self.config.window_frames
        )
        skip = 0
        if official_rng:
            if self.config.audio_encoder.type != "wav2vec2":
                raise ConfigError(
                    "official_rng reproduces the official wav2vec2 pipeline's random draws; this model uses the "
                    f"{self.config.audio_encoder.type!r} audio encoder: drop official_rng=True"
                )
            skip = official_skipped_draws(
                self.device, windows, self.config.audio_encoder.wav2vec2.num_hidden_layers
            )
        rows = [(0, 1 if partner_audio is not None else None)]
        return self._run(
            channels,
            rows,
            [frames],
            [seed],
            [style],
            [prev_motion],
            options,
            smooth,
            progress,
            skip_draws=skip,
        )[0]

    def generate_both(
        self,
        audio: AudioInput,
        partner_audio: AudioInput,
        *,
        sample_rate: int | None = None,
        seed: int | tuple[int | None, int | None] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        smooth: bool = True,
        style: MotionLike | tuple[MotionLike | None, MotionLike | None] | None = None,
        prev_motion: MotionLike | tuple[MotionLike | None, MotionLike | None] | None = None,
        use_cache: bool = True,
        progress: bool = False,
        styles: tuple[MotionLike | None, MotionLike | None] | None = None,
    ) -> tuple[Motion, Motion]:
        """Both people of a conversation in one batched pass: ``(motion of audio, motion of partner)``.

        Each channel is encoded once and serves as one person's own voice and the other's partner.
        ``seed=s`` seeds the first person with ``s`` and the second with ``s + 1`` (or pass a pair), so
        the result equals ``generate(audio, partner_audio, seed=s)`` and
        ``generate(partner_audio, audio, seed=s + 1)`` up to floating-point batch effects.

        Args:
            audio: the first person's voice (path, array or tensor).
            partner_audio: the second person's voice.
            sample_rate: rate of array inputs, as in :meth:`generate`.
            seed: an int ``s`` (people get ``s`` and ``s + 1``), a pair, or None (random).
            temperature: sampling temperature, as in :meth:`generate`.
            top_p: nucleus threshold, as in :meth:`generate`.
            cfg_scale: classifier-free guidance scale, as in :meth:`generate`.
            smooth: Savitzky-Golay smoothing, as in :meth:`generate`.
            style: one style clip for both people, or a pair ``(first, second)`` (either may be None).
            prev_motion: motion preceding the audio: one for both, or a pair.
            use_cache: key/value caching across scales, as in :meth:`generate`.
            progress: show a progress bar, as in :meth:`generate`.
            styles: deprecated name of ``style`` (a pair).
        """
        if styles is not None:
            warnings.warn(
                "generate_both(styles=...) is deprecated: use style=", DeprecationWarning, stacklevel=2
            )
            style = tuple(styles)  # type: ignore[assignment]
        options = self.options(temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache)
        channels = self._load_pair(audio, partner_audio, sample_rate)
        frames = frame_count(channels[0].shape[0], self.config.samples_per_frame)
        first, second = self._run(
            channels,
            [(0, 1), (1, 0)],
            [frames, frames],
            expand_seeds(seed, 2),
            per_person(style, 2, "style"),
            per_person(prev_motion, 2, "prev_motion"),
            options,
            smooth,
            progress,
        )
        return first, second

    def generate_batch(
        self,
        items: Sequence[AudioInput | tuple[AudioInput, AudioInput | None]],
        *,
        sample_rate: int | None = None,
        seed: int | Sequence[int | None] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        smooth: bool = True,
        style: MotionLike | Sequence[MotionLike | None] | None = None,
        prev_motion: MotionLike | Sequence[MotionLike | None] | None = None,
        use_cache: bool = True,
        progress: bool = False,
        seeds: Sequence[int | None] | int | None = None,
    ) -> list[Motion]:
        """Many independent generations in one batched pass (e.g. a folder of clips).

        Args:
            items: each an audio input, or an ``(audio, partner_audio)`` pair (partner may be None).
                Lengths may differ: every result has its own input's frame count.
            sample_rate: rate of array inputs (default 16000), as in :meth:`generate`.
            seed: one seed per item (a sequence), or an int ``s`` meaning ``s, s + 1, ...``.
            temperature: sampling temperature, as in :meth:`generate`.
            top_p: nucleus threshold, as in :meth:`generate`.
            cfg_scale: classifier-free guidance scale, as in :meth:`generate`.
            smooth: Savitzky-Golay smoothing, as in :meth:`generate`.
            style: one style clip for every item, or a list with one per item (None entries allowed).
            prev_motion: motion preceding each item's audio: one for all, or a list with one per item.
            use_cache: key/value caching across scales, as in :meth:`generate`.
            progress: show a progress bar, as in :meth:`generate`.
            seeds: deprecated name of ``seed``.

        Returns:
            One :class:`~unils.Motion` per item, equal to ``generate(audio, partner, seed=seed_i)``
            up to floating-point batch effects.
        """
        if seeds is not None:
            warnings.warn(
                "generate_batch(seeds=...) is deprecated: use seed=", DeprecationWarning, stacklevel=2
            )
            seed = seeds
        if not items:
            return []
        n = len(items)
        options = self.options(temperature=temperature, top_p=top_p, cfg_scale=cfg_scale, use_cache=use_cache)
        seed_list = expand_seeds(seed, n)
        channels: list[np.ndarray] = []
        rows: list[tuple[int, int | None]] = []
        frames: list[int] = []
        for item in items:
            audio, partner = item if isinstance(item, tuple) else (item, None)
            pair = self._load_pair(audio, partner, sample_rate)
            own = len(channels)
            channels.extend(pair)
            rows.append((own, own + 1 if len(pair) == 2 else None))
            frames.append(frame_count(pair[0].shape[0], self.config.samples_per_frame))
        return self._run(
            channels,
            rows,
            frames,
            seed_list,
            per_person(style, n, "style"),
            per_person(prev_motion, n, "prev_motion"),
            options,
            smooth,
            progress,
        )

    def stream(
        self,
        *,
        partner: bool = True,
        both: bool = False,
        sample_rate: int = 16000,
        seed: int | tuple[int | None, int | None] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        cfg_scale: float | None = None,
        smooth: bool = True,
        hop_frames: int | None = None,
        style: MotionLike | tuple[MotionLike | None, MotionLike | None] | None = None,
        prev_motion: MotionLike | tuple[MotionLike | None, MotionLike | None] | None = None,
        use_cache: bool = True,
    ) -> StreamSession:
        """Open a streaming session: push audio blocks, get the frames that became final.

        The options mean what they mean for :meth:`generate` (for ``both=True`` sessions, ``seed``,
        ``style`` and ``prev_motion`` work per person as in :meth:`generate_both`). In exact mode
        (``hop_frames=None``) the frames equal offline generation of the same audio and seed.

        Args:
            partner: whether partner audio is pushed with every block (False: the person talks to silence).
            both: generate both people (needs ``partner``); pushes then return a pair.
            sample_rate: rate of the pushed audio; other rates are resampled on the fly.
            seed: seed of the draws (``both``: an int ``s`` means ``s`` and ``s + 1``, or a pair).
            temperature: sampling temperature, as in :meth:`generate`.
            top_p: nucleus threshold, as in :meth:`generate`.
            cfg_scale: classifier-free guidance scale, as in :meth:`generate`.
            smooth: Savitzky-Golay smoothing with 4 frames of lookahead (equals offline smoothing).
            hop_frames: None for exact mode, or the low-latency hop in frames (1 .. window).
            style: style clip, as in :meth:`generate` (a pair for ``both``).
            prev_motion: motion preceding the audio, as in :meth:`generate` (a pair for ``both``).
            use_cache: key/value caching across scales.

        Example:
            ```python
            import numpy as np
            from unils import UniLS

            model = UniLS.from_pretrained("demo")
            with model.stream(seed=0) as session:
                for _ in range(50):                       # 50 blocks of 80 ms
                    mic, call = np.zeros(1280, np.float32), np.zeros(1280, np.float32)
                    frames = session.push(mic, call)      # a Motion, often empty
                rest = session.flush()
            ```
        """
        return StreamSession(
            self.engine,
            partner=partner,
            both=both,
            sample_rate=sample_rate,
            seed=seed,
            temperature=temperature,
            top_p=top_p,
            cfg_scale=cfg_scale,
            smooth=smooth,
            hop_frames=hop_frames,
            style=style,
            prev_motion=prev_motion,
            use_cache=use_cache,
        )
