"""The interface every frozen VLA backbone implements.

One forward pass over a batch of observations returns what RLT needs from a VLA: the
final-layer token embeddings z_1..z_M (with a validity mask) that the RL token reads, and a
reference action chunk of H >= C steps in robot units. Everything else in rlt adapts to this.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class VLAInput:
    """A batch of observations. Images are uint8 (B, H, W, 3) per camera name."""

    images: dict[str, torch.Tensor]
    proprio: torch.Tensor
    """(B, P) float32 proprioception in robot units (joint positions, then velocities)."""
    instruction: list[str]
    """One language instruction per batch element."""

    @property
    def batch_size(self) -> int:
        return self.proprio.shape[0]

    @classmethod
    def from_env(cls, obs: dict, instruction: str) -> 'VLAInput':
        """A batch of one from a `rlt_sim` observation dict."""
        images = {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in obs['images'].items()}
        return cls(images=images,
                   proprio=torch.as_tensor(obs['proprio'], dtype=torch.float32)[None],
                   instruction=[instruction])


@dataclass
class VLAOutput:
    embeddings: torch.Tensor
    """(B, M, D) final-layer token embeddings z_1..z_M."""
    mask: torch.Tensor
    """(B, M) bool, True where a token is valid."""
    chunk: torch.Tensor
    """(B, H, A) reference action chunk in robot units."""


class VLABackbone(nn.Module):
    """A frozen VLA: `forward(obs) -> VLAOutput`. Subclasses set the dimensions and cameras below,
    which are checked against the robot profile before the backbone serves (`spec.check_backbone`).

    Named by a backbone spec `module.path:ClassName[:/path]` (`rlt_core.models.vla.spec`), a subclass
    is built by its classmethod `load(path)` when the spec names a path, else by `ClassName()`; to serve
    the graph's actor and arbiter it also implements `proprio_stats(path)`.
    """

    token_dim: int
    """D, the width of the final-layer embeddings."""
    chunk_len: int
    """H, the number of actions in a predicted chunk."""
    action_dim: int
    """A, the dimension of one action."""
    proprio_dim: int
    """P, the dimension of the proprioception it reads (joint positions, then velocities)."""
    camera_names: tuple[str, ...]
    """The cameras it reads, by name."""
    image_shape: tuple[int, int] | None = None
    """(height, width) every camera image must have; None where the backbone resizes images itself."""

    def forward(self, obs: VLAInput, generator: torch.Generator | None = None) -> VLAOutput:
        """Embeddings and a chunk for a batch; `generator` seeds a stochastic action head."""
        raise NotImplementedError

    @classmethod
    def proprio_stats(cls, path) -> tuple[list[float], list[float]]:
        """Mean and std of the proprioception as the checkpoint at `path` normalises it, read without
        building the model: the RL state x = (z_rl, normalised proprio) uses the same normalisation."""
        raise NotImplementedError(f'{cls.__name__} does not say how it normalises proprioception '
                                  '(implement the classmethod proprio_stats(path))')

    def to_dtype(self, dtype: torch.dtype) -> 'VLABackbone':
        """Compute in `dtype` (bfloat16 or float16 on a GPU); outputs stay float32. The default casts every
        floating-point parameter and buffer, so `forward` must cast its inputs to the weights' dtype."""
        return self.to(dtype)

    def freeze(self) -> 'VLABackbone':
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
