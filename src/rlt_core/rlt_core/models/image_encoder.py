"""The no-RL-token ablation: the RL state from a small CNN trained from scratch on the wrist cameras.

As HIL-SERL's image encoder, without pretraining: the critic loss trains it (with random-shift
augmentation), the actor reads its features without gradients, and a Polyak copy encodes x' for
the TD target. The replay stores proprio plus the id of the state's frame in a `FrameStore`
(x = [proprio, frame id]); `RLTLearner` swaps the id for the encoder's features.
"""

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ImageEncoder(nn.Module):
    """uint8 frames (B, cameras, H, W, 3) -> features (B, feature_dim) in [-1, 1]."""

    def __init__(self, cameras: int = 2, size: int = 48, channels: int = 32, feature_dim: int = 64):
        super().__init__()
        self.cameras, self.size = cameras, size
        self.conv = nn.Sequential(
            nn.Conv2d(3 * cameras, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU())
        if size < 24:
            raise ValueError(f'the image encoder needs images of at least 24 px, got {size}')
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 3 * cameras, size, size)).numel()
        self.head = nn.Sequential(nn.Linear(flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.feature_dim = feature_dim

    def forward(self, frames: torch.Tensor, shift: int = 0, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Features of `frames`; with `offsets` from `draw_shifts(B, shift, …)`, each image moved by up to
        `shift` pixels first (augmentation)."""
        img = frames.permute(0, 1, 4, 2, 3).flatten(1, 2).float() / 255.0 - 0.5
        if shift and offsets is not None:
            img = random_shift(img, shift, offsets)
        return self.head(self.conv(img).flatten(1))


def draw_shifts(n: int, pad: int, generator=None) -> torch.Tensor:
    """(n, 2) random whole-pixel offsets in [0, 2 pad] for `random_shift`."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)


def random_shift(img: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Translate each image of (B, C, H, W) by `offsets` - pad pixels (rows, columns), edges replicated."""
    b, _, h, w = img.shape
    padded = F.pad(img, (pad, pad, pad, pad), mode='replicate')
    rows = (torch.arange(h, device=img.device)[None, :] + offsets[:, :1])  # (B, H)
    cols = (torch.arange(w, device=img.device)[None, :] + offsets[:, 1:])  # (B, W)
    index = rows[:, None, :, None] * padded.shape[-1] + cols[:, None, None, :]  # (B, 1, H, W)
    flat = padded.flatten(2)
    return flat.gather(2, index.flatten(2).expand(-1, img.shape[1], -1)).view_as(img)


def downsample(frame: np.ndarray, size: int) -> np.ndarray:
    """A (H, W, 3) uint8 image averaged down to (size, size, 3); H and W must be multiples of size."""
    h, w, c = frame.shape
    if h % size or w % size:
        raise ValueError(f'a {h}x{w} image does not reduce to {size}x{size}')
    return frame.reshape(size, h // size, size, w // size, c).mean((1, 3)).round().astype(np.uint8)


class FrameStore:
    """uint8 frames of one shape, by id; with `path`, appended to `path` as they come (flushed per frame)
    and reloaded on start, so the replay's frame ids stay valid across a restart."""

    def __init__(self, shape: tuple[int, ...], capacity: int = 100_000, path=None):
        self.shape = tuple(shape)
        self.frames = torch.empty((capacity, *self.shape), dtype=torch.uint8)  # only [0, size) is read
        self.size = 0
        self._file = None
        if path is not None:
            path = Path(path)
            frame_bytes = int(np.prod(self.shape))
            if path.exists():
                whole = path.stat().st_size // frame_bytes
                os.truncate(path, whole * frame_bytes)  # drop a frame cut short by a crash
                saved = np.fromfile(path, np.uint8).reshape(whole, *self.shape)
                self.frames[:whole] = torch.from_numpy(saved)
                self.size = whole
            self._file = open(path, 'ab')  # noqa: SIM115 - kept open for appends

    def add(self, frame: np.ndarray) -> int:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f'frame of shape {frame.shape} and dtype {frame.dtype}, expected {self.shape} uint8')
        if self.size >= len(self.frames):
            raise RuntimeError(f'frame store full ({len(self.frames)} frames)')
        self.frames[self.size] = torch.from_numpy(frame)
        if self._file is not None:
            self._file.write(frame.tobytes())
            self._file.flush()
        self.size += 1
        return self.size - 1

    def get(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.round().long().cpu()
        if len(ids) and (ids.min() < 0 or ids.max() >= self.size):
            raise IndexError(f'frame ids outside [0, {self.size})')
        return self.frames[ids]

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
