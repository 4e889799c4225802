"""Chunked TD3 for RLT, read top to bottom: config, critics, the learner's update.

Names follow the RL Token paper: x = (z_rl, proprio) is the RL state, a is an action chunk of
C = chunk_len actions, ref_chunk is the VLA's reference chunk.

  critics         twin MLPs Q_1, Q_2 (x, a), LayerNorm after each hidden layer (as in RLPD)
  critic target   Q_hat = sum_{t'=1..n} gamma^(t'-1) r_t' + (1 - done) gamma^n min_i Q_i'(x', a')
                  with a' = pi'(x', ref') + clipped noise and n = C unless the episode ended,
                  clipped to `target_range`, the returns an episode can earn
  critic loss     sum_i (Q_i(x, a) - Q_hat)^2
  actor loss      -Q_1(x, pi(x, ref_in)) + beta ||pi(x, ref_in) - ref_chunk||^2
                  ref_in = ref_chunk, zeroed on a `ref_dropout` fraction of the batch
  schedule        `critic_updates_per_actor` critic updates per actor update; Polyak targets
  compile         optionally, the losses' tensor math (random draws made outside) compiled by TorchInductor

With an `encoder` (the no-RL-token ablation, `rlt_core.image_encoder`), x is the encoder's features
of the stored camera frames plus proprio: the critic loss trains the encoder, the actor reads
its features without gradients, a Polyak copy of it encodes x'.

Chunks are in normalised action units here (see `Actor.normalize`).
"""

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlt_core.actor import Actor, ActorConfig


@dataclass
class TD3Config:
    """Hyper-parameters of the chunked TD3 learner."""

    gamma: float = 0.99
    """Discount per control step."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    beta: float = 0.1
    """Weight of the ||a - ref_chunk||^2 term in the actor loss (0: the beta=0 ablation)."""
    ref_dropout: float = 0.5
    """Fraction of actor-update samples whose reference input is zeroed."""
    critic_updates_per_actor: int = 2
    """Critic updates per actor (and target) update."""
    target_noise: float = 0.2
    """Std of the smoothing noise on a' in the critic target (normalised units)."""
    noise_clip: float = 0.5
    """Clip of that smoothing noise."""
    target_range: tuple[float, float] | None = (0.0, 1.0)
    """Returns an episode can earn: the reward is sparse, +1 on success, and success ends the episode.
    Q_hat is clipped to it, so a critic extrapolating upward cannot feed on itself through
    bootstrapping (None: no clipping, for other rewards)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of each Q-network."""
    critic_layer_norm: bool = True
    """LayerNorm after each hidden layer of the Q-networks (before the ReLU), as in RLPD (False: TD3's
    plain MLPs). In the sim cell it lifted RLT's median final success over 3 seeds from 76 % to 88 %."""
    batch_size: int = 256
    """Transitions per update."""
    utd_ratio: int = 5
    """G: gradient updates per transition added to the replay buffer."""

    def __post_init__(self):
        if self.target_range is not None and (len(self.target_range) != 2
                                              or not self.target_range[0] < self.target_range[1]):
            raise ValueError(f'target_range must be (low, high) with low < high, got {self.target_range}')


class EnsembleLinear(nn.Module):
    """`n` independent linear layers applied in one batched matmul: (n, B, in) -> (n, B, out)."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        layers = [nn.Linear(in_dim, out_dim) for _ in range(n)]  # PyTorch's default init, per member
        self.weight = nn.Parameter(torch.stack([lin.weight.detach().T for lin in layers]))
        self.bias = nn.Parameter(torch.stack([lin.bias.detach()[None] for lin in layers]))

    def forward(self, h):
        return torch.baddbmm(self.bias, h, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a scale and shift per ensemble member: (n, B, d)."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))

    def forward(self, h, member: int | None = None):
        """All members on (n, B, d), or one member's constants (no gradients to them) on (B, d)."""
        weight, bias = (self.weight, self.bias) if member is None else \
            (self.weight[member].detach(), self.bias[member].detach())
        return torch.addcmul(bias, F.layer_norm(h, h.shape[-1:]), weight)


class TwinCritic(nn.Module):
    """Q_1, Q_2 (x, a_chunk) evaluated together; returns (2, B)."""

    def __init__(self, state_dim: int, chunk_size: int, hidden: tuple[int, ...], layer_norm: bool = False):
        super().__init__()
        dims = [state_dim + chunk_size, *hidden]
        self.hidden = nn.ModuleList(EnsembleLinear(2, i, o) for i, o in zip(dims[:-1], dims[1:], strict=True))
        self.norms = nn.ModuleList(EnsembleLayerNorm(2, o) for o in hidden) if layer_norm else None
        self.out = EnsembleLinear(2, dims[-1], 1)

    def forward(self, x, a):
        h = torch.cat([x, a], dim=-1).expand(2, -1, -1)
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            h = F.relu(h if self.norms is None else self.norms[i](h))
        return self.out(h).squeeze(-1)

    def q1_for_actor(self, x, a):
        """Q_1(x, a) with the critic's weights held constant: gradients reach `a` only."""
        h = torch.cat([x, a], dim=-1)
        for i, layer in enumerate(self.hidden):
            h = torch.addmm(layer.bias[0].detach(), h, layer.weight[0].detach())
            h = F.relu(h if self.norms is None else self.norms[i](h, member=0))
        return torch.addmm(self.out.bias[0].detach(), h, self.out.weight[0].detach()).squeeze(-1)


def chunked_td_target(rewards, n_steps, done, next_q, gamma: float):
    """Q_hat = sum_{k<n} gamma^k r_k + (1 - done) gamma^n next_q; rewards (B, C) zero-padded."""
    discounts = gamma ** torch.arange(rewards.shape[1], dtype=rewards.dtype, device=rewards.device)
    return (rewards * discounts).sum(1) + (1.0 - done) * gamma ** n_steps * next_q


def soft_update(target: nn.Module, source: nn.Module, tau: float):
    """target <- tau * source + (1 - tau) * target, parameter by parameter."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def _adam(params, lr):
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def compiled(fn, enabled: bool = True):
    """`fn` compiled by TorchInductor (its ops fused, no Python between them; backward too), or `fn` itself
    when not `enabled` or when compiling fails (no C++ compiler, say): then it warns once and runs eagerly."""
    if not enabled:
        return fn
    current = torch.compile(fn, dynamic=False)

    def call(*args):
        nonlocal current
        try:
            return current(*args)
        except Exception as err:  # noqa: BLE001 -- any compiler failure; eager re-raises real errors
            if current is fn:
                raise
            warnings.warn(f'torch.compile failed ({type(err).__name__}: {str(err)[:200]}); running eagerly',
                          stacklevel=2)
            current = fn
            return fn(*args)
    return call


class RLTLearner:
    """What learns: twin critics, targets, optimisers and `update()`; the `Actor` is what acts."""

    def __init__(self, actor_config: ActorConfig, config: TD3Config | None = None, seed: int = 0,
                 device: str = 'cpu', encoder: nn.Module | None = None, frames=None, shift: int = 4,
                 compile: bool = False):
        self.config = config or TD3Config()
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)  # sampling stays on the CPU: reproducible anywhere
        self.actor = Actor(actor_config).to(self.device)
        self.target_actor = copy.deepcopy(self.actor)
        self.qf = TwinCritic(actor_config.state_dim, actor_config.chunk_size, self.config.critic_hidden,
                             self.config.critic_layer_norm).to(self.device)
        self.qf_target = copy.deepcopy(self.qf)
        for p in [*self.target_actor.parameters(), *self.qf_target.parameters()]:
            p.requires_grad_(False)
        # The ablation's image encoder: replay states are [proprio, frame id] into `frames` (a FrameStore).
        self.encoder, self.frames, self.shift = encoder, frames, shift
        q_params = list(self.qf.parameters())
        if encoder is not None:
            self.encoder = encoder.to(self.device)
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            q_params += list(self.encoder.parameters())
        self.actor_optimizer = _adam(self.actor.parameters(), self.config.actor_lr)
        self.q_optimizer = _adam(q_params, self.config.critic_lr)
        self._critic_step = compiled(self._critic_loss, compile)
        self._actor_step = compiled(self._actor_loss, compile)
        self.num_updates = 0
        self.metrics = {}

    def prepare(self, batch: dict) -> dict:
        """A replay batch (chunks in robot units, (B, C, A)) on the learner's device, in normalised flat units."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        norm = self.actor.normalize
        batch = {**batch, 'a': norm(batch['a']), 'ref': norm(batch['ref']), 'ref2': norm(batch['ref2'])}
        if self.encoder is not None:  # [proprio, frame id] -> proprio, and the frames
            for key, frames in (('x', 'obs'), ('x2', 'obs2')):
                batch[frames] = self.frames.get(batch[key][:, -1]).to(self.device)
                batch[key] = batch[key][:, :-1]
        return batch

    def encode(self, batch):
        """(x, x') of a prepared batch: as stored, or with the encoder x = [features(frames), proprio]
        (gradients reach the encoder through x) and x' from the target encoder."""
        if self.encoder is None:
            return batch['x'], batch['x2']
        x = torch.cat([self.encoder(batch['obs'], self.shift, self.generator), batch['x']], dim=-1)
        with torch.no_grad():
            x2 = torch.cat([self.target_encoder(batch['obs2'], self.shift, self.generator), batch['x2']], dim=-1)
        return x, x2

    @torch.no_grad()
    def select_chunk(self, x, ref_chunk, explore: bool = False, generator=None) -> torch.Tensor:
        """`Actor.select_chunk` on a replay state (with the encoder: [proprio, frame id])."""
        if self.encoder is not None:
            x = torch.as_tensor(x, dtype=torch.float32)
            features = self.encoder(self.frames.get(x[-1:]).to(self.device))[0].cpu()
            x = torch.cat([features, x[:-1]])
        return self.actor.select_chunk(x, ref_chunk, explore=explore, generator=generator)

    def td_target(self, batch, x2=None):
        """Q_hat of a batch (no gradients), clipped to `target_range`; x' is batch['x2'] unless given."""
        return self._q_hat(batch['r'], batch['n'], batch['done'], batch['x2'] if x2 is None else x2, batch['ref2'],
                           self._smoothing_noise(batch['a']))

    def critic_loss(self, batch, x=None, x2=None):
        """Critic loss and Q (2, B); x and x' are the batch's unless given (see `encode`)."""
        return self._critic_step(batch['x'] if x is None else x, batch['a'], batch['r'], batch['n'], batch['done'],
                                 batch['x2'] if x2 is None else x2, batch['ref2'], self._smoothing_noise(batch['a']))

    def actor_loss(self, batch, x=None):
        """Actor loss, Q_1(x, pi) and the beta term per sample."""
        ref = batch['ref']
        keep = (torch.rand(ref.shape[0], 1, generator=self.generator) >= self.config.ref_dropout).to(ref)
        return self._actor_step(batch['x'] if x is None else x, ref, keep)

    # The losses' tensor math, random draws given: what `compile` hands to TorchInductor.

    def _smoothing_noise(self, a):
        cfg = self.config
        noise = torch.randn(a.shape, generator=self.generator) * cfg.target_noise
        return noise.clamp(-cfg.noise_clip, cfg.noise_clip).to(self.device)

    def _q_hat(self, r, n, done, x2, ref2, noise):
        cfg = self.config
        with torch.no_grad():
            next_a = (self.target_actor(x2, ref2) + noise).clamp(-1.0, 1.0)
            next_q = self.qf_target(x2, next_a).min(0).values
            q_hat = chunked_td_target(r, n, done, next_q, cfg.gamma)
            return q_hat if cfg.target_range is None else q_hat.clamp(*cfg.target_range)

    def _critic_loss(self, x, a, r, n, done, x2, ref2, noise):
        q_hat = self._q_hat(r, n, done, x2, ref2, noise)
        q = self.qf(x, a)
        return F.mse_loss(q, q_hat.expand_as(q), reduction='none').mean(1).sum(), q

    def _actor_loss(self, x, ref, keep):
        a = self.actor(x, ref * keep)
        q = self.qf.q1_for_actor(x, a)
        bc = ((a - ref) ** 2).sum(1)
        return (-q + self.config.beta * bc).mean(), q, bc

    def update(self, batch) -> dict:
        """One critic step; every `critic_updates_per_actor`-th call also an actor step and targets."""
        x, x2 = self.encode(batch)
        q_loss, q = self.critic_loss(batch, x, x2)
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()
        self.num_updates += 1
        self.metrics['losses/critic'] = q_loss.detach()
        self.metrics['values/q'] = q.detach().mean()

        if self.num_updates % self.config.critic_updates_per_actor == 0:
            actor_loss, q_pi, bc = self.actor_loss(batch, x.detach())
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.qf_target, self.qf, self.config.tau)
            soft_update(self.target_actor, self.actor, self.config.tau)
            if self.encoder is not None:
                soft_update(self.target_encoder, self.encoder, self.config.tau)
            self.metrics['losses/actor'] = actor_loss.detach()
            self.metrics['values/q_pi'] = q_pi.detach().mean()
            self.metrics['losses/bc'] = bc.detach().mean()
        return self.metrics

    def scalar_metrics(self) -> dict:
        return {k: float(v) for k, v in self.metrics.items()}

    def state_dict(self) -> dict:
        return {'actor': self.actor.state_dict(), 'target_actor': self.target_actor.state_dict(),
                'qf': self.qf.state_dict(), 'qf_target': self.qf_target.state_dict(),
                'actor_optimizer': self.actor_optimizer.state_dict(),
                'q_optimizer': self.q_optimizer.state_dict(), 'num_updates': self.num_updates,
                'generator': self.generator.get_state(),
                'encoder': None if self.encoder is None else self.encoder.state_dict(),
                'target_encoder': None if self.encoder is None else self.target_encoder.state_dict()}

    def load_state_dict(self, state: dict):
        self.actor.load_state_dict(state['actor'])
        self.target_actor.load_state_dict(state['target_actor'])
        self.qf.load_state_dict(state['qf'])
        self.qf_target.load_state_dict(state['qf_target'])
        self.actor_optimizer.load_state_dict(state['actor_optimizer'])
        self.q_optimizer.load_state_dict(state['q_optimizer'])
        self.num_updates = state['num_updates']
        self.generator.set_state(state['generator'])
        if self.encoder is not None:
            self.encoder.load_state_dict(state['encoder'])
            self.target_encoder.load_state_dict(state['target_encoder'])
