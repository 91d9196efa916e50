"""A small log-mel + convolution audio front end for small and low-latency models.

wav2vec2-XLS-R costs about 35 GFLOP per channel-second; this encoder costs a few MFLOP, which is what
the bundled demo model and real-time CPU use need. Same interface as the wav2vec2 encoder: a batch of
16 kHz windows [B, N] -> features [B, frames, out_dim] at about 50 frames per second.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MelConfig

__all__ = ["MelEncoder", "mel_filterbank"]


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """HTK-style triangular mel filters [n_mels, n_fft // 2 + 1], area-normalised (Slaney)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mels = np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2)
    hz = _mel_to_hz(mels)
    fb = np.zeros((n_mels, freqs.shape[0]))
    for i in range(n_mels):
        lo, mid, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


class MelEncoder(nn.Module):
    """Per-window normalised waveform -> log-mel (10 ms hop) -> 1-D convolutions (stride 2) -> features."""

    # Buffers, declared so that the type checker sees tensors instead of ``Module.__getattr__``'s union.
    window: Tensor
    filters: Tensor

    def __init__(self, config: MelConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.register_buffer(
            "filters",
            torch.from_numpy(mel_filterbank(sample_rate, config.n_fft, config.n_mels)),
            persistent=False,
        )
        layers: list[nn.Module] = []
        in_ch = config.n_mels
        for i in range(config.num_layers):
            layers.append(
                nn.Conv1d(in_ch, config.channels, kernel_size=3, stride=2 if i == 0 else 1, padding=1)
            )
            layers.append(nn.GELU())
            in_ch = config.channels
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(config.channels, config.out_dim)
        self.norm = nn.LayerNorm(config.out_dim)

    def _apply(self, fn: Any, recurse: bool = True) -> MelEncoder:
        # The STFT window and the mel filters are signal processing, computed in float32 whatever the
        # model's precision (as wav2vec2's front end): a cast moves them, never lowers them.
        window, filters = self.window, self.filters
        super()._apply(fn, recurse)
        self.window = window.to(device=self.window.device)
        self.filters = filters.to(device=self.filters.device)
        return self

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a window of ``num_samples`` samples."""
        stft_frames = num_samples // self.config.hop_length + 1
        return math.floor((stft_frames + 2 - 3) / 2) + 1

    def log_mel(self, waveform: Tensor) -> Tensor:
        """[B, N] -> [B, n_mels, stft frames] log-mel energies."""
        spec = torch.stft(
            waveform.float(),
            self.config.n_fft,
            self.config.hop_length,
            window=self.window,
            return_complex=True,
        )
        power = spec.real**2 + spec.imag**2
        return torch.log(torch.matmul(self.filters, power) + 1e-6)

    def forward(self, waveform: Tensor, normalize: bool = True) -> Tensor:
        if normalize:
            # Same per-window normalisation as the wav2vec2 path, so loudness does not matter.
            mean = waveform.mean(dim=-1, keepdim=True)
            std = waveform.std(dim=-1, keepdim=True)
            waveform = (waveform - mean) / (std + 1e-6)
        feats = self.log_mel(waveform).to(self.proj.weight.dtype)
        h = self.convs(feats).transpose(1, 2)
        return self.norm(F.gelu(self.proj(h)))
