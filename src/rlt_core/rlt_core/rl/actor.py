"""The RLT actor pi_theta(a | x, ref_chunk): the policy that refines the VLA's chunk.

x = (z_rl, proprio) is the RL state; ref_chunk is the VLA's reference chunk. The actor is a
Gaussian with a small fixed std around an MLP's mean. It works in normalised action units:
a chunk in robot units is `a * action_scale`. Only this network travels between learner and
actor (`pack_weights` / `unpack_weights`); the frozen VLA never does.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import nn

WEIGHTS_FORMAT = 'safetensors'


@dataclass(frozen=True)
class ActorConfig:
    """Shape of the actor; travels with its weights.

    The robot's facts (C, the action dimension, its scale and limits) come from the robot profile:
    `RobotProfile.actor_config(state_dim)` fills them in and stamps the profile's hash; the defaults here
    are generic."""

    state_dim: int
    """Dimension of x = (z_rl, proprio)."""
    chunk_len: int = 1
    """C: actions per refined chunk (the profile's actor_chunk_len)."""
    action_dim: int = 1
    """Dimension of one action."""
    action_scale: tuple[float, ...] | None = None
    """Robot units of one normalised action unit, per action dimension (the profile's max_delta; None: 1.0)."""
    action_limit: tuple[float, ...] | None = None
    """Largest |action| per dimension in robot units: the range of the actor's output, the per-step limits of
    the critical phase where it acts (None: one normalised unit, `action_scale`; 0: a dimension it leaves at 0)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the MLP (the paper: 2x256; 3x512 for the hardest task)."""
    std: float = 0.2
    """Fixed std of the Gaussian, in normalised action units (0.2: 1 mm per step, the critical phase's sideways
    limit). In the sim cell (C = 4, 5 seeds) it lifted RLT's median final success from 89 to 92 % against 0.1
    and shortened its critical phase from 0.52x to 0.50x the base's (docs/results.md)."""
    use_reference: bool = True
    """Give the reference chunk to the actor (False: the no-reference ablation)."""
    residual: float = 0.0
    """> 0: the actor outputs ref_chunk + residual * tanh(MLP) instead (the residual-RL baseline)."""
    start_at_reference: bool = False
    """The mean is the reference chunk plus a learned correction of up to twice the output range (every action in
    the range stays reachable from any reference) whose last layer starts at zero: the untrained actor acts as
    the VLA, and leaves it only as far as its updates take it."""
    profile_hash: str = ''
    """`RobotProfile.hash` of the robot the actor was made for; an actor node refuses weights of another."""
    extra: dict = field(default_factory=dict)
    """Free-form notes saved with the weights (e.g. token and proprio dimensions)."""

    def __post_init__(self):
        if self.state_dim <= 0 or self.chunk_len <= 0 or self.action_dim <= 0:
            raise ValueError(f'actor dimensions must be positive: {self}')
        if self.action_scale is None:
            object.__setattr__(self, 'action_scale', (1.0,) * self.action_dim)
        if len(self.action_scale) != self.action_dim or min(self.action_scale) <= 0:
            raise ValueError(
                f'action_scale needs {self.action_dim} positive entries, got {self.action_scale}')
        if self.action_limit is not None and (len(self.action_limit) != self.action_dim
                                              or min(self.action_limit) < 0 or max(self.action_limit) <= 0):
            raise ValueError(f'action_limit needs {self.action_dim} entries >= 0, one of them > 0, got '
                             f'{self.action_limit}')
        if self.std < 0 or self.residual < 0:
            raise ValueError('std and residual must be >= 0')
        if self.start_at_reference and (not self.use_reference or self.residual > 0):
            raise ValueError('start_at_reference needs the reference as input and no residual')

    @property
    def chunk_size(self) -> int:
        return self.chunk_len * self.action_dim

    @property
    def bound(self) -> tuple[float, ...]:
        """The output range per action dimension, in normalised units."""
        limit = self.action_limit or self.action_scale
        return tuple(lim / scale for lim, scale in zip(limit, self.action_scale, strict=True))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> 'ActorConfig':
        d = json.loads(text)
        d['action_scale'] = tuple(d['action_scale'])
        if d.get('action_limit') is not None:
            d['action_limit'] = tuple(d['action_limit'])
        d['hidden'] = tuple(d['hidden'])
        return cls(**d)


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers, d = [], in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """pi_theta(a | x, ref_chunk): mean = bound * tanh(MLP([x, ref_chunk])) (with `start_at_reference`:
    clip(ref_chunk + 2 bound * tanh(MLP([x, ref_chunk])), its last layer zero at the start)), fixed std; samples
    stay in the bound."""

    def __init__(self, config: ActorConfig):
        super().__init__()
        self.config = config
        in_dim = config.state_dim + (config.chunk_size if config.use_reference else 0)
        self.net = mlp(in_dim, config.hidden, config.chunk_size)
        self.register_buffer('action_scale', torch.tensor(config.action_scale, dtype=torch.float32))
        # (C*A,) output range in normalised units; from the config, so not part of the weights
        self.register_buffer('bound', torch.tensor(config.bound, dtype=torch.float32).repeat(config.chunk_len),
                             persistent=False)
        if config.start_at_reference:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, ref_chunk: torch.Tensor) -> torch.Tensor:
        """Mean chunk (B, C*A) in normalised units, from x (B, state_dim) and ref (B, C*A)."""
        h = torch.cat([x, ref_chunk], dim=-1) if self.config.use_reference else x
        if self.config.residual > 0:
            return self.clamp(ref_chunk + self.config.residual * torch.tanh(self.net(h)))
        if self.config.start_at_reference:
            return self.clamp(ref_chunk + 2 * self.bound * torch.tanh(self.net(h)))
        return self.bound * torch.tanh(self.net(h))

    def clamp(self, a: torch.Tensor) -> torch.Tensor:
        """Normalised chunks (..., C*A) clipped to the actor's output range."""
        return torch.minimum(torch.maximum(a, -self.bound), self.bound)

    def sample(self, x, ref_chunk, generator=None) -> torch.Tensor:
        mean = self(x, ref_chunk)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device) * self.config.std
        return self.clamp(mean + noise)

    def normalize(self, chunk: torch.Tensor) -> torch.Tensor:
        """Robot-unit chunks (..., C, A) -> normalised flat chunks (..., C*A)."""
        return (chunk / self.action_scale).flatten(-2)

    def denormalize(self, a: torch.Tensor) -> torch.Tensor:
        """Normalised flat chunks (..., C*A) -> robot-unit chunks (..., C, A)."""
        return a.unflatten(-1, (self.config.chunk_len, self.config.action_dim)) * self.action_scale

    @torch.no_grad()
    def select_chunk(self, x, ref_chunk, explore: bool = False, generator=None) -> torch.Tensor:
        """The refined chunk in robot units (C, A), on the CPU, for one state; the reference is always given.

        Inputs may live anywhere; exploration noise comes from `generator` on the CPU, as in training."""
        device = self.action_scale.device
        x = torch.as_tensor(x, dtype=torch.float32).to(device).unsqueeze(0)
        ref = self.normalize(torch.as_tensor(ref_chunk, dtype=torch.float32).to(device)).unsqueeze(0)
        a = self.sample(x, ref, generator) if explore else self(x, ref)
        return self.denormalize(a)[0].cpu()


def pack_weights(actor: Actor) -> dict:
    """The actor's weights as a message-ready dict: format, sha256, config_json, payload."""
    state = {k: v.detach().cpu().contiguous() for k, v in actor.state_dict().items()}
    payload = save(state)
    return {'format': WEIGHTS_FORMAT, 'sha256': hashlib.sha256(payload).hexdigest(),
            'config_json': actor.config.to_json(), 'payload': payload}


def unpack_weights(fmt: str, sha256: str, config_json: str, payload: bytes) -> Actor:
    """Rebuild an actor from packed weights; raises ValueError on any mismatch."""
    if fmt != WEIGHTS_FORMAT:
        raise ValueError(f'unsupported weights format {fmt!r}')
    payload = bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise ValueError(f'sha256 mismatch: payload {digest[:12]}…, message says {sha256[:12]}…')
    try:
        config = ActorConfig.from_json(config_json)
        actor = Actor(config)
        actor.load_state_dict(load(payload))
    except Exception as err:  # malformed config or tensors: one clear error for the caller
        raise ValueError(f'weights do not load: {err}') from err
    return actor.eval()


def save_actor(actor: Actor, path) -> None:
    """The weights (safetensors) and, beside them, `<path>.json` with their config and SHA-256; each file written
    atomically, the JSON last, so that a crash between the two is caught by the checksum on loading."""
    from rlt_core.rl.checkpoint import atomic_write
    packed = pack_weights(actor)
    atomic_write(Path(path), packed['payload'])
    meta = {'config': json.loads(packed['config_json']), 'sha256': packed['sha256']}
    atomic_write(Path(str(path) + '.json'), json.dumps(meta, indent=1).encode())


def load_actor(path) -> Actor:
    with open(str(path) + '.json') as f:
        meta = json.load(f)
    with open(path, 'rb') as f:
        payload = f.read()
    return unpack_weights(WEIGHTS_FORMAT, meta['sha256'], json.dumps(meta['config']), payload)

