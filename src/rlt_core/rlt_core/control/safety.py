"""Validation and clipping of commanded actions: the last check before anything moves a robot.

An action chunk is a float array of shape (chunk_length, action_dim) in robot units. Every
chunk that reaches a robot passes `validate_chunk` (shape and finiteness) and then
`clip_chunk` (configured per-dimension limits).
"""

from dataclasses import dataclass

import numpy as np


class InvalidChunkError(ValueError):
    """A chunk that must never reach the robot (wrong shape, NaN or infinite values)."""


@dataclass(frozen=True)
class ActionLimits:
    """Per-dimension bounds of one action, in robot units."""

    low: tuple[float, ...]
    """Lower bound of each action dimension."""
    high: tuple[float, ...]
    """Upper bound of each action dimension."""

    def __post_init__(self):
        low = np.asarray(self.low, dtype=np.float64)
        high = np.asarray(self.high, dtype=np.float64)
        if low.ndim != 1 or low.shape != high.shape or low.size == 0:
            raise ValueError(f'limits need equal-length 1-D low/high, got {low.shape} and {high.shape}')
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError('limits must be finite')
        if np.any(low > high):
            raise ValueError(f'limits need low <= high, got low={self.low} high={self.high}')

    @classmethod
    def symmetric(cls, bound):
        """Limits [-bound, +bound] for each entry of `bound`."""
        bound = [abs(float(b)) for b in bound]
        return cls(low=tuple(-b for b in bound), high=tuple(bound))

    @property
    def action_dim(self) -> int:
        return len(self.low)


def validate_chunk(data, action_dim: int, chunk_length: int | None = None) -> np.ndarray:
    """Return `data` as a float32 (chunk_length, action_dim) array, or raise InvalidChunkError."""
    chunk = np.asarray(data, dtype=np.float32)
    if chunk.ndim == 1:
        if action_dim <= 0 or chunk.size % action_dim:
            raise InvalidChunkError(f'{chunk.size} values do not form rows of action_dim={action_dim}')
        chunk = chunk.reshape(-1, action_dim)
    if chunk.ndim != 2 or chunk.shape[1] != action_dim:
        raise InvalidChunkError(f'chunk shape {chunk.shape} does not match action_dim={action_dim}')
    if chunk.shape[0] == 0:
        raise InvalidChunkError('empty chunk')
    if chunk_length is not None and chunk.shape[0] != chunk_length:
        raise InvalidChunkError(f'chunk has {chunk.shape[0]} steps, expected {chunk_length}')
    if not np.all(np.isfinite(chunk)):
        raise InvalidChunkError('chunk contains NaN or infinite values')
    return chunk


def clip_chunk(chunk: np.ndarray, limits: ActionLimits) -> tuple[np.ndarray, bool]:
    """Clip every action of a validated chunk to `limits`; also say whether anything changed."""
    if chunk.shape[-1] != limits.action_dim:
        raise InvalidChunkError(f'chunk action_dim {chunk.shape[-1]} != limits {limits.action_dim}')
    low = np.asarray(limits.low, dtype=chunk.dtype)
    high = np.asarray(limits.high, dtype=chunk.dtype)
    clipped = np.clip(chunk, low, high)
    return clipped, bool(np.any(clipped != chunk))


def within_lead(target, measured, lead, keep_direction: bool = False) -> np.ndarray:
    """`target` brought within `lead` (per joint, or one number) of the `measured` joint positions: each joint
    clipped on its own, or (`keep_direction`) the whole offset from `measured` scaled down until every joint is
    within its lead, so that the joints keep their proportions: an arm's tool stays on the way between the two
    configurations instead of bending off it."""
    target, measured = np.asarray(target, np.float64), np.asarray(measured, np.float64)
    lead = np.broadcast_to(np.asarray(lead, np.float64), measured.shape)
    if not keep_direction:
        return np.clip(target, measured - lead, measured + lead)
    offset = target - measured
    excess = np.max(np.abs(offset) / lead)
    return target.copy() if excess <= 1.0 else measured + offset / excess
