"""The RL state x = (z_rl, normalised proprio), as every consumer of the RL token builds it.

The proprio normalisation is the frozen VLA's own (its checkpoint's `config.json` holds
`proprio_mean` and `proprio_std`), so that the actor, the arbiter that stores transitions and
the in-process trainer all see the same x for the same observation.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ProprioNormalization:
    mean: np.ndarray
    """Per-dimension mean of the proprioception (robot units)."""
    std: np.ndarray
    """Per-dimension std of the proprioception (robot units)."""

    @classmethod
    def from_vla_checkpoint(cls, directory) -> 'ProprioNormalization':
        """Read `proprio_mean` / `proprio_std` from a VLA checkpoint's `config.json`."""
        path = Path(directory) / 'config.json'
        if not path.exists():
            raise FileNotFoundError(f'no VLA checkpoint in {directory} (config.json missing)')
        config = json.loads(path.read_text())
        return cls(np.asarray(config['proprio_mean'], np.float32), np.asarray(config['proprio_std'], np.float32))

    @property
    def dim(self) -> int:
        return int(self.mean.size)


def rl_state(z_rl, proprio, norm: ProprioNormalization) -> np.ndarray:
    """x = concat(z_rl, (proprio - mean) / std), float32."""
    proprio = np.asarray(proprio, np.float32).reshape(-1)
    if proprio.size != norm.dim:
        raise ValueError(f'proprio has {proprio.size} values, the VLA expects {norm.dim}')
    return np.concatenate([np.asarray(z_rl, np.float32).reshape(-1), (proprio - norm.mean) / norm.std])
