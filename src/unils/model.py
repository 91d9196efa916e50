"""The public [`UniLS`][unils.model.UniLS] model: loading, saving and offline generation.

The class is thin on purpose: the math lives in `unils.nn`, the window step in
[`unils.generation`][unils.generation], audio handling in [`unils.audio`][unils.audio] and file resolution in
[`unils.hub`][unils.hub].
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from typing_extensions import Unpack

from .audio import AudioInput, load_audio, pad_to_same_length
from .checkpoint import load_state_dict_strict, read_checkpoint, save_checkpoint
from .config import UniLSConfig
from .errors import ConfigError
from .generation import DEFAULT_LOOKAHEAD, ChunkState, WindowEngine, frame_count, plan_windows
from .hub import resolve_checkpoint
from .motion import Motion, MotionLike
from .nn.build import UniLSModules, build_audio_encoder
from .options import GenerationOptions, OptionOverrides, Sampling, merge_options
from .precision import Precision, autocast_name, choose_precision, cpu_has_native
from .sampling import official_skipped_draws
from .smoothing import savgol_filter
from .streaming import SessionGroup, StreamSession

__all__ = ["UniLS", "build_audio_encoder", "cpu_has_native"]

logger = logging.getLogger("unils")

_DEPRECATED_ENGINE = "is the engine's: use model.engine.{name} (the model's own surface is generate/stream)"


class UniLS(UniLSModules):
    """UniLS: audio of a person (and optionally of their partner) -> that person's FLAME motion.

    Build one with [`from_pretrained`][unils.model.UniLS.from_pretrained]; it holds weights only, so one
    instance can serve many threads and streaming sessions at once (each call keeps its own state).

    Example:
        ```python
        from unils import UniLS

        model = UniLS.from_pretrained("demo")
        motion = model.generate("me.wav", partner_audio="you.wav", seed=0)
        print(motion.jaw.shape)  # (frames, 1)
        ```
    """

    def __init__(self, config: UniLSConfig) -> None:
        super().__init__(
            config
        )  # the weights: codec, audio encoder, generator (as the converter builds them)
        #: Runs windows for offline calls and streaming sessions alike (holds references, not copies),
        #: and holds the precision record.
        self.engine = WindowEngine(self.config, self.codec, self.generator, self.audio_encoder)
        self.eval()

    @property
    def precision(self) -> Precision:
        """The number formats the model computes in (decided at load; see
        [set_precision][unils.UniLS.set_precision])."""
        return self.engine.precision

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
        """Write ``config.json`` and ``model.safetensors`` (loadable with
        [`from_pretrained`][unils.model.UniLS.from_pretrained]).

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

        The one place the precision changes after loading: it refuses while streaming sessions are open
        (their state was computed in the old precision). ``model.half()``, ``model.bfloat16()``,
        ``model.float()`` and ``model.to(dtype)`` come here too.

        Args:
            dtype: ``"auto"`` (the fastest native precision of the model's device), ``"float32"``,
                ``"bfloat16"``, ``"float16"``, ``"int8"`` or a torch dtype; see
                [from_pretrained][unils.UniLS.from_pretrained].

        Raises:
            ConfigError: an unknown precision, int8 off the CPU, or leaving int8 (reload the model).
            StreamError: streaming sessions are open on this model.
        """
        self.engine.require_no_sessions("set_precision")
        chosen = choose_precision(dtype, self.device)
        current = self.engine.precision
        chosen = self.cast_to(chosen, current=current)
        if current.audio_autocast is not None and chosen.audio_autocast is None:
            chosen = dataclasses.replace(chosen, audio_autocast=current.audio_autocast)
        self.engine.set_precision(chosen)
        return self

    def set_audio_autocast(self, dtype: torch.dtype | str | None) -> UniLS:
        """Run the audio encoder under autocast (``"bfloat16"``/``"float16"``) or exactly (None).

        On CPUs with native bfloat16 (AVX512-BF16/AMX) this makes wav2vec2 about 3x faster at a
        relative feature error of about 1%; see the benchmarks page for the drift it causes. Part of the
        precision record (``model.precision.audio_autocast``); refused while sessions are open.

        Raises:
            ConfigError: a dtype other than bfloat16, float16 or None.
            StreamError: streaming sessions are open on this model.
        """
        name = autocast_name(dtype)
        self.engine.require_no_sessions("set_audio_autocast")
        if name is not None and self.device.type == "cpu" and not cpu_has_native(getattr(torch, name)):
            logger.warning(
                "this CPU has no native %s support (capability %s): autocast would be emulated and much "
                "slower than float32; keeping it as asked",
                name,
                torch.backends.cpu.get_cpu_capability(),
            )
        current = self.engine.precision
        self.engine.set_precision(dataclasses.replace(current, audio_autocast=name))
        return self

    @property
    def audio_autocast(self) -> torch.dtype | None:
        """Autocast dtype of the audio encoder (None: it runs in its own dtype); see
        [set_audio_autocast][unils.UniLS.set_audio_autocast]."""
        return self.engine.audio_autocast

    # ------------------------------------------------------------------ torch's own casts, routed
    def half(self) -> UniLS:
        """``set_precision("float16")``: the generator and audio encoder in float16, the codec float32."""
        return self.set_precision("float16")

    def bfloat16(self) -> UniLS:
        """``set_precision("bfloat16")``: the generator and audio encoder in bfloat16, the codec float32."""
        return self.set_precision("bfloat16")

    def float(self) -> UniLS:
        """``set_precision("float32")``: the exact reference precision."""
        return self.set_precision("float32")

    def double(self) -> UniLS:
        """Refused: unils computes in float32 at most (raises [`ConfigError`][unils.errors.ConfigError])."""
        raise ConfigError("float64 is not a unils precision: use model.set_precision('float32') (exact)")

    def to(self, *args: Any, **kwargs: Any) -> UniLS:  # type: ignore[override]
        """Move the model to a device; a dtype goes through [set_precision][unils.UniLS.set_precision].

        ``model.to("cuda")``, ``model.to(torch.bfloat16)`` and ``model.to("cuda", torch.bfloat16)`` work;
        the codec always stays float32.

        Raises:
            ConfigError: a dtype that is not a unils precision (e.g. float64).
            StreamError: a device change or a dtype while streaming sessions are open.
        """
        device, dtype, non_blocking, _fmt = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and torch.device(device) != self.device:
            self.engine.require_no_sessions("moving the model to another device")
            super().to(device=device, non_blocking=non_blocking)
            self.engine.clear_caches()
        if dtype is not None:
            self.set_precision(dtype)
        return self

    def compile(self, **kwargs: Any) -> UniLS:  # type: ignore[override]
        """Compile the audio encoder and the generator blocks with ``torch.compile`` (in place).

        Optional speed-up, mostly on GPUs: the first calls pay for compilation (seconds to minutes) and
        every new shape recompiles. On a CUDA device, [`cuda_graphs`][unils.model.UniLS.cuda_graphs]
        removes the launch overhead of a step without compiling anything. Weights, parameter names and ``save_pretrained`` are unchanged;
        results equal the eager model within float tolerance (kernels may sum in another order). On
        the CPU, compilation needs a C++ compiler. Refused while streaming sessions are open.

        Args:
            **kwargs: passed to ``torch.compile`` (default ``dynamic=True``).

        Raises:
            StreamError: streaming sessions are open on this model.
        """
        self.engine.require_no_sessions("compile")
        kwargs.setdefault("dynamic", True)
        self.audio_encoder.compile(**kwargs)
        for blk in self.generator.blocks:
            blk.compile(**kwargs)
        self.engine.clear_caches()
        logger.info(
            "compiled the audio encoder and %d generator blocks (%s)", len(self.generator.blocks), kwargs
        )
        return self

    def cuda_graphs(self, enabled: bool = True, *, max_rows: int = 256) -> UniLS:
        """Replay window steps from recorded CUDA graphs (in place): one launch per window on a GPU.

        A step of a live session (or a window of ``generate``) launches a few thousand small kernels;
        recorded as a CUDA graph ([`unils.graphs`][unils.graphs]) it is replayed with one launch. Each
        batch size is rounded up to a power of two (up to ``max_rows`` rows) and recorded the first time
        it occurs (about two steps' time). Rows that fill their bucket give the eager numbers bit for
        bit; padded buckets agree within the precision's drift. Steps with ``use_cache=False`` and
        batches over ``max_rows`` run eagerly. Refused while streaming sessions are open.

        Args:
            enabled: False returns to eager steps (and frees the recordings).
            max_rows: the largest recorded batch, in rows (people) per step.

        Raises:
            ConfigError: the model is not on a CUDA device, or a bad ``max_rows``.
            StreamError: streaming sessions are open on this model.
        """
        self.engine.use_graphs(enabled, max_rows=max_rows, capture=True)
        return self

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.codec.motion_mean.device

    @property
    def fps(self) -> int:
        """Motion frames per second (25 for the official models)."""
        return self.config.fps

    # ------------------------------------------------------------------ the engine's (deprecated here)
    def encode_windows(self, windows: Tensor, batch_size: int = 8) -> Tensor:
        """Deprecated: ``model.engine.encode``."""
        warnings.warn(
            "UniLS.encode_windows " + _DEPRECATED_ENGINE.format(name="encode"),
            DeprecationWarning,
            stacklevel=2,
        )
        return self.engine.encode(windows, batch_size)

    def silence_features(self) -> Tensor:
        """Deprecated: ``model.engine.silence``."""
        warnings.warn(
            "UniLS.silence_features " + _DEPRECATED_ENGINE.format(name="silence"),
            DeprecationWarning,
            stacklevel=2,
        )
        return self.engine.silence()

    def options(
        self,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        **overrides: Unpack[OptionOverrides],
    ) -> GenerationOptions:
        """``options`` merged with keyword overrides and checked: what every entry point does first.

        Raises:
            ConfigError: an unknown field or a bad value.
        """
        return merge_options(options, overrides)

    def initial_state(
        self,
        seeds: Sequence[int | None],
        styles: Sequence[MotionLike | None] | None = None,
        prev_motions: Sequence[MotionLike | None] | None = None,
    ) -> ChunkState:
        """Deprecated: ``model.engine.start``."""
        warnings.warn(
            "UniLS.initial_state " + _DEPRECATED_ENGINE.format(name="start"), DeprecationWarning, stacklevel=2
        )
        return self.engine.start(seeds, styles, prev_motions)

    def step(
        self, state: ChunkState, self_features: Tensor, other_features: Tensor, options: Sampling
    ) -> tuple[Tensor, ChunkState]:
        """Deprecated: ``model.engine.step``."""
        warnings.warn(
            "UniLS.step " + _DEPRECATED_ENGINE.format(name="step"), DeprecationWarning, stacklevel=2
        )
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
        people: list[GenerationOptions],
        progress: bool,
        *,
        skip_draws: int = 0,
        lookahead: int | None = 1,
    ) -> list[Motion]:
        first = people[0]
        state = self.engine.start_people(people, skip_draws=skip_draws)
        raw = self.engine.run(
            channels, rows, state, first.sampling(self.config), progress=progress, lookahead=lookahead
        )
        out = []
        for i, n in enumerate(frames):
            arr = raw[i, :n]
            out.append(
                Motion.from_array(savgol_filter(arr) if people[i].smooth else arr, fps=float(self.fps))
            )
        return out

    def generate(
        self,
        audio: AudioInput,
        partner_audio: AudioInput | None = None,
        *,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        sample_rate: int | None = None,
        progress: bool = False,
        official_rng: bool = False,
        **overrides: Unpack[OptionOverrides],
    ) -> Motion:
        """Generate the motion of the person speaking in ``audio``.

        Every entry point ([generate][unils.UniLS.generate], [generate_both][unils.UniLS.generate_both],
        [generate_batch][unils.UniLS.generate_batch], [stream][unils.UniLS.stream], the server and the CLI)
        takes the same options: a [GenerationOptions][unils.GenerationOptions] as ``options=`` and/or its
        fields as keywords (a keyword overrides the object's field).

        ``generate`` and a [stream][unils.UniLS.stream] session (exact mode) of the same person, audio and
        options run the same per-window computation with the same tensor shapes, so they agree bit for
        bit at every precision on a given device.

        Args:
            audio: the person's voice: a path, or a 1-D / [channels, samples] numpy array or tensor.
            partner_audio: the other person's voice, same forms; None = nobody else (silence).
            options: a [GenerationOptions][unils.GenerationOptions] (or a dict of its fields).
            sample_rate: rate of array inputs (default 16000); files carry their own. Audio at other
                rates is resampled to 16 kHz.
            progress: show a progress bar over windows.
            official_rng: reproduce, for the same ``seed``, the random draws of the official inference
                run in its pinned environment, whose wav2vec2 (transformers 5.3) consumes one draw per
                encoder layer per encoded window even in eval mode, from the CPU generator. On the CPU
                the sampling draws from that generator too, so those draws are skipped; on CUDA the
                sampling uses the CUDA generator and nothing is skipped. Without it the draws equal the
                official ones under transformers versions that do not draw (e.g. 5.24).
            **overrides: fields of [GenerationOptions][unils.GenerationOptions]: ``seed``,
                ``temperature``, ``top_p``, ``cfg_scale``, ``smooth``, ``style``, ``prev_motion``,
                ``use_cache``.

        Returns:
            [Motion][unils.Motion] with ``ceil(samples / 640)`` frames at 25 fps (for 16 kHz audio).

        Raises:
            AudioError: empty, NaN/inf, too short or malformed audio.
            AudioFileError: a path that does not exist or cannot be decoded.
            ConfigError: an unknown option, a value out of its range, or ``official_rng`` on a model
                without wav2vec2.
            MotionError: a style clip shorter than one window, or a malformed motion.

        Example:
            ```python
            from unils import UniLS

            model = UniLS.from_pretrained("demo")
            motion = model.generate("me.wav", partner_audio="you.wav", seed=0, cfg_scale=2.0)
            print(motion.jaw.shape)  # (frames, 1)
            ```
        """
        opts = merge_options(options, overrides)
        person = opts.people(1)
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
            # The official inference encodes both channels (K windows each) before sampling; its
            # wav2vec2 draws from the CPU generator, which the sampling uses only on the CPU.
            skip = official_skipped_draws(
                self.device, windows, self.config.audio_encoder.wav2vec2.num_hidden_layers
            )
        rows = [(0, 1 if partner_audio is not None else None)]
        return self._run(channels, rows, [frames], person, progress, skip_draws=skip)[0]

    def generate_both(
        self,
        audio: AudioInput,
        partner_audio: AudioInput,
        *,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        sample_rate: int | None = None,
        progress: bool = False,
        styles: tuple[MotionLike | None, MotionLike | None] | None = None,
        **overrides: Unpack[OptionOverrides],
    ) -> tuple[Motion, Motion]:
        """Both people of a conversation in one batched pass: ``(motion of audio, motion of partner)``.

        Each channel is encoded once and serves as one person's own voice and the other's partner.
        ``seed=s`` seeds the first person with ``s`` and the second with ``s + 1`` (or pass a pair);
        ``style`` and ``prev_motion`` take one value for both or a pair.

        What it equals: a ``stream(both=True)`` session of the same audio and options, bit for bit at
        every precision (same shapes). Against two single [generate][unils.UniLS.generate] calls
        (``seed=s`` and the swapped call with ``seed=s + 1``) the generator runs 2 rows instead of 1: bit
        for bit in float32 on CPU; within the precision's drift elsewhere (bfloat16 on an AVX512-BF16 CPU:
        see the drift table on the benchmarks page).

        Args:
            audio: the first person's voice (path, array or tensor).
            partner_audio: the second person's voice.
            options: a [GenerationOptions][unils.GenerationOptions] (or a dict of its fields).
            sample_rate: rate of array inputs, as in [generate][unils.UniLS.generate].
            progress: show a progress bar, as in [generate][unils.UniLS.generate].
            styles: deprecated name of ``style`` (a pair).
            **overrides: fields of [GenerationOptions][unils.GenerationOptions].
        """
        if styles is not None:
            warnings.warn(
                "generate_both(styles=...) is deprecated: use style=", DeprecationWarning, stacklevel=2
            )
            overrides["style"] = tuple(styles)
        opts = merge_options(options, overrides)
        channels = self._load_pair(audio, partner_audio, sample_rate)
        frames = frame_count(channels[0].shape[0], self.config.samples_per_frame)
        first, second = self._run(channels, [(0, 1), (1, 0)], [frames, frames], opts.people(2), progress)
        return first, second

    def generate_batch(
        self,
        items: Sequence[AudioInput | tuple[AudioInput, AudioInput | None]],
        *,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        sample_rate: int | None = None,
        progress: bool = False,
        seeds: Sequence[int | None] | int | None = None,
        **overrides: Unpack[OptionOverrides],
    ) -> list[Motion]:
        """Many independent generations in one batched pass (e.g. a folder of clips).

        What it equals: the same call with the same items in the same order, bit for bit (and so
        ``unils generate --batch`` under 1 or N processes, which plans its batches before sharding).
        Against single [generate][unils.UniLS.generate] calls of each item the encoder and generator run
        other batch shapes: bit for bit in float32 on CPU; within the precision's drift elsewhere.

        Args:
            items: each an audio input, or an ``(audio, partner_audio)`` pair (partner may be None).
                Lengths may differ: every result has its own input's frame count.
            options: a [GenerationOptions][unils.GenerationOptions] (or a dict of its fields); ``seed``
                may be a sequence (one per item) or an int ``s`` meaning ``s, s + 1, ...``; ``style`` and
                ``prev_motion`` one for all or a list with one per item.
            sample_rate: rate of array inputs (default 16000), as in [generate][unils.UniLS.generate].
            progress: show a progress bar, as in [generate][unils.UniLS.generate].
            seeds: deprecated name of ``seed``.
            **overrides: fields of [GenerationOptions][unils.GenerationOptions].

        Returns:
            One [Motion][unils.Motion] per item.
        """
        if seeds is not None:
            warnings.warn(
                "generate_batch(seeds=...) is deprecated: use seed=", DeprecationWarning, stacklevel=2
            )
            overrides["seed"] = seeds if isinstance(seeds, int) else tuple(seeds)
        for key in ("seed", "style", "prev_motion"):
            if isinstance(overrides.get(key), list):
                overrides[key] = tuple(overrides[key])  # type: ignore[literal-required]
        opts = merge_options(options, overrides)
        if not items:
            return []
        n = len(items)
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
        return self._run(channels, rows, frames, opts.people(n), progress, lookahead=DEFAULT_LOOKAHEAD)

    def stream(
        self,
        *,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        partner: bool = True,
        both: bool = False,
        sample_rate: int = 16000,
        hop_frames: int | None = None,
        **overrides: Unpack[OptionOverrides],
    ) -> StreamSession:
        """Open a streaming session: push audio blocks, get the frames that became final.

        The options mean what they mean for [generate][unils.UniLS.generate] (for ``both=True`` sessions,
        ``seed``, ``style`` and ``prev_motion`` work per person as in
        [generate_both][unils.UniLS.generate_both]). In exact mode (``hop_frames=None``) the frames equal
        ``generate`` of the same audio and options bit for bit, at every precision on a given device.

        Args:
            options: a [GenerationOptions][unils.GenerationOptions] (or a dict of its fields).
            partner: whether partner audio is pushed with every block (False: the person talks to silence).
            both: generate both people (needs ``partner``); pushes then return a pair.
            sample_rate: rate of the pushed audio; other rates are resampled on the fly.
            hop_frames: None for exact mode, or the low-latency hop in frames (1 .. window).
            **overrides: fields of [GenerationOptions][unils.GenerationOptions].

        Raises:
            ConfigError: an unknown option, a value out of range, ``both`` without ``partner``, a bad
                ``hop_frames`` or ``sample_rate``.

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
            options=merge_options(options, overrides),
            partner=partner,
            both=both,
            sample_rate=sample_rate,
            hop_frames=hop_frames,
        )

    def stream_group(self, *, max_batch: int = 64) -> SessionGroup:
        """A [SessionGroup][unils.SessionGroup]: many live sessions stepped together in batches.

        Args:
            max_batch: most sessions' windows in one batched step.
        """
        return SessionGroup(self.engine, max_batch=max_batch)
