"""The RL state x = (z_rl, normalised proprio), as every consumer of the RL token builds it.

The proprio normalisation is the frozen VLA's own, read from its checkpoint whatever its kind,
so that the actor, the arbiter that stores transitions and the in-process trainer all see the
same x for the same observation. `RLInputJoin` is how the
graph's nodes (actor, arbiter) put the token, the reference chunk and the joint state of one
observation together.
"""

from dataclasses import dataclass

import numpy as np

from rlt_core.control.sync import Latest


@dataclass(frozen=True)
class ProprioNormalization:
    mean: np.ndarray
    """Per-dimension mean of the proprioception (robot units)."""
    std: np.ndarray
    """Per-dimension std of the proprioception (robot units)."""

    @classmethod
    def from_vla_checkpoint(cls, spec, proprio_dim: int | None = None) -> 'ProprioNormalization':
        """The normalisation of the VLA that the backbone spec `spec` names (a SmallVLA folder, `pi0:/folder`,
        `module:Class[:/path]`; see `rlt_core.models.vla.spec`), read from its files without loading it.
        ValueError if it is not of `proprio_dim` values (a VLA of another robot)."""
        from rlt_core.models.vla.spec import proprio_stats
        mean, std = proprio_stats(spec)
        if proprio_dim is not None and len(mean) != proprio_dim:
            raise ValueError(f'the VLA {spec} reads {len(mean)} proprio values; this robot has {proprio_dim} '
                             '(joint positions and velocities): a VLA of another robot profile')
        return cls(np.asarray(mean, np.float32), np.asarray(std, np.float32))

    @property
    def dim(self) -> int:
        return int(self.mean.size)


def rl_state(z_rl, proprio, norm: ProprioNormalization) -> np.ndarray:
    """x = concat(z_rl, (proprio - mean) / std), float32."""
    proprio = np.asarray(proprio, np.float32).reshape(-1)
    if proprio.size != norm.dim:
        raise ValueError(f'proprio has {proprio.size} values, the VLA expects {norm.dim}')
    return np.concatenate([np.asarray(z_rl, np.float32).reshape(-1), (proprio - norm.mean) / norm.std])


class RLInputJoin:
    """The RL token, the VLA's reference chunk and the proprio of one observation, matched by stamp.

    Each `add_*` returns (stamp, x, reference, reference_extra) once all three of a stamp have arrived
    (and forgets them), else None. At most `keep` stamps of each kind wait; older ones are dropped.
    """

    def __init__(self, norm: ProprioNormalization, keep: int = 100):
        self.norm, self.keep = norm, keep
        self.tables = {'token': Latest(keep), 'reference': Latest(keep), 'proprio': Latest(keep)}

    def add_token(self, stamp: int, z_rl):
        return self._add('token', stamp, np.asarray(z_rl, np.float32).copy())

    def add_reference(self, stamp: int, chunk, extra=None):
        return self._add('reference', stamp, (chunk, extra))

    def add_proprio(self, stamp: int, proprio):
        return self._add('proprio', stamp, np.asarray(proprio, np.float32))

    def _add(self, kind: str, stamp: int, value):
        table = self.tables[kind]
        table[int(stamp)] = value
        if not all(int(stamp) in t for t in self.tables.values()):
            return None
        z_rl, (chunk, extra), proprio = (t.pop(int(stamp)) for t in self.tables.values())
        return int(stamp), rl_state(z_rl, proprio, self.norm), chunk, extra
