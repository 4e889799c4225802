"""Chunked TD3 for RLT, read top to bottom: config, critics, the learner's update.

This is the fast learner. To read the math, start with `rlt_core.rl.td3_reference.ReferenceTD3`: the same
update written the plain way (as CleanRL writes TD3), in the order it runs, each loss's formula in its
docstring. `test_td3_reference.py` checks that both compute the same losses and weights.

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
  update          one function of tensors: the target, the losses' gradients (torch.func), Adam and the
                  Polyak targets; with `compile`, TorchInductor makes it one graph (random draws made outside)

With an `encoder` (the no-RL-token ablation, `rlt_core.models.image_encoder`), x is the encoder's features
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
from torch.func import functional_call, grad_and_value

from rlt_core.models.image_encoder import draw_shifts
from rlt_core.rl.actor import Actor, ActorConfig


@dataclass
class TD3Config:
    """Hyper-parameters of the chunked TD3 learner."""

    gamma: float = 0.96
    """Discount per control step. With the sparse reward it sets what a step saved is worth: 1 - gamma of the
    value, so a lower gamma rewards a shorter critical phase more (the choice of 0.96: docs/results.md)."""
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
    critic_only_updates: int = 0
    """Updates that train only the critics (and their targets) before the actor's first step: the actor acts as
    it began (the VLA, with ActorConfig.start_at_reference) while the critics learn from what it does."""
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
    plain MLPs; the comparison: docs/results.md)."""
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
        # The 1-wide output layer as a dot product: a fused reduction, where a (B, d) x (d, 1) matmul
        # runs at a few percent of the matmul peak.
        return (h * self.out.weight.transpose(1, 2)).sum(-1) + self.out.bias[:, :, 0]

    def q1_for_actor(self, x, a):
        """Q_1(x, a) with the critic's weights held constant: gradients reach `a` only."""
        h = torch.cat([x, a], dim=-1)
        for i, layer in enumerate(self.hidden):
            h = torch.addmm(layer.bias[0].detach(), h, layer.weight[0].detach())
            h = F.relu(h if self.norms is None else self.norms[i](h, member=0))
        return (h * self.out.weight[0, :, 0].detach()).sum(-1) + self.out.bias[0, 0, 0].detach()


def chunked_td_target(rewards, n_steps, done, next_q, gamma: float):
    """Q_hat = sum_{k<n} gamma^k r_k + (1 - done) gamma^n next_q; rewards (B, C) zero-padded."""
    discounts = gamma ** torch.arange(rewards.shape[1], dtype=rewards.dtype, device=rewards.device)
    return (rewards * discounts).sum(1) + (1.0 - done) * gamma ** n_steps * next_q


def soft_update(target: nn.Module, source: nn.Module, tau: float):
    """target <- tau * source + (1 - tau) * target, parameter by parameter."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class Adam:
    """Adam as `torch.optim.Adam` computes it (and with its state_dict), stepped with given gradients.

    Plain tensor math, the step count a tensor: a compiled update holds the whole step, gradients to
    parameters, in one graph. The bias corrections come from running powers beta^t, multiplied once
    per step: a compiled kernel evaluates scalar terms inside its loop, where a pow is costly."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        device = self.params[0].device
        self.t = torch.zeros((), device=device)
        self.b1_t, self.b2_t = torch.ones((), device=device), torch.ones((), device=device)  # beta_1^t, beta_2^t
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def step(self, grads):
        b1, b2 = self.betas
        self.t.add_(1)
        self.b1_t.mul_(b1)
        self.b2_t.mul_(b2)
        bias1, bias2 = 1 - self.b1_t, (1 - self.b2_t).sqrt()
        torch._foreach_lerp_(self.m, grads, 1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - b2)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            p.sub_(self.lr / bias1 * m / (v.sqrt() / bias2 + self.eps))

    def state_dict(self) -> dict:
        state = {i: {'step': self.t.clone(), 'exp_avg': m.clone(), 'exp_avg_sq': v.clone()}
                 for i, (m, v) in enumerate(zip(self.m, self.v, strict=True))}
        return {'state': state, 'param_groups': [{'lr': self.lr, 'betas': self.betas, 'eps': self.eps,
                                                  'weight_decay': 0.0, 'amsgrad': False,
                                                  'params': list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict):
        state = state_dict['state']
        if len(state_dict['param_groups'][0]['params']) != len(self.params):
            raise ValueError('optimizer state of another network')
        self.t.fill_(float(state[0]['step']) if state else 0.0)
        self.b1_t.fill_(self.betas[0] ** float(self.t))
        self.b2_t.fill_(self.betas[1] ** float(self.t))
        for i, (m, v) in enumerate(zip(self.m, self.v, strict=True)):
            m.copy_(state[i]['exp_avg'] if state else 0.0)
            v.copy_(state[i]['exp_avg_sq'] if state else 0.0)


def compiled(fn, enabled: bool = True):
    """`fn` compiled by TorchInductor (its ops fused, no Python between them; backward too), or `fn` itself
    when not `enabled` or when compiling fails (no C++ compiler, say): then it warns once and runs eagerly.
    The kernels are called from a C++ wrapper, which costs less per call than TorchInductor's Python one."""
    if not enabled:
        return fn
    current = torch.compile(fn, dynamic=False, options={'cpp_wrapper': True})

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


def _leaves(params: dict) -> list:
    return [p for group in params.values() for p in group.values()]


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
        # The ablation's image encoder: replay states are [proprio, frame id] into `frames` (a FrameStore).
        self.encoder, self.frames, self.shift = encoder, frames, shift
        if encoder is not None:
            self.encoder = encoder.to(self.device)
            self.target_encoder = copy.deepcopy(self.encoder)
        targets = [self.target_actor, self.qf_target] + ([self.target_encoder] if encoder is not None else [])
        for p in (p for net in targets for p in net.parameters()):
            p.requires_grad_(False)
        # What each loss differentiates, by name (torch.func), and the optimisers stepping it.
        self.actor_params = {'actor': dict(self.actor.named_parameters())}
        self.critic_params = {'qf': dict(self.qf.named_parameters()),
                              'encoder': {} if encoder is None else dict(self.encoder.named_parameters())}
        self.actor_optimizer = Adam(_leaves(self.actor_params), self.config.actor_lr)
        self.q_optimizer = Adam(_leaves(self.critic_params), self.config.critic_lr)
        self._critic_update = compiled(self._critic_step, compile)
        self._critic_and_actor_update = compiled(self._critic_and_actor_step, compile)
        self._critic_and_target_update = compiled(self._critic_and_target_step, compile)
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

    @torch.no_grad()
    def select_chunk(self, x, ref_chunk, explore: bool = False, generator=None) -> torch.Tensor:
        """`Actor.select_chunk` on a replay state (with the encoder: [proprio, frame id])."""
        if self.encoder is not None:
            x = torch.as_tensor(x, dtype=torch.float32)
            features = self.encoder(self.frames.get(x[-1:]).to(self.device))[0].cpu()
            x = torch.cat([features, x[:-1]])
        return self.actor.select_chunk(x, ref_chunk, explore=explore, generator=generator)

    @torch.no_grad()
    def chunk_values(self, x, chunks) -> torch.Tensor:
        """min(Q_1, Q_2)(x, a) of each robot-unit chunk (N, C, A) at one replay state x: the pessimistic value a
        critic-gated hand-over compares (not with the image encoder's states)."""
        chunks = torch.as_tensor(chunks, dtype=torch.float32).to(self.device)
        x = torch.as_tensor(x, dtype=torch.float32).to(self.device).expand(len(chunks), -1)
        return self.qf(x, self.actor.normalize(chunks)).min(0).values.cpu()

    # The random draws of an update, made on the CPU from the learner's generator (so that compiling
    # changes no result), then the losses and the update as functions of tensors.

    def draws(self, batch: dict, actor_step: bool = True) -> dict:
        """Smoothing noise for a' and, for an actor step, the reference-dropout mask `keep`; with the encoder,
        the random shifts of the frames of x and x'."""
        cfg = self.config
        a = batch['a']
        noise = torch.randn(a.shape, generator=self.generator) * cfg.target_noise
        draws = {'noise': noise.clamp(-cfg.noise_clip, cfg.noise_clip).to(self.device)}
        if self.encoder is not None:
            draws['shifts'], draws['shifts2'] = (draw_shifts(len(a), self.shift, self.generator).to(self.device)
                                                 for _ in range(2))
        if actor_step:
            keep = torch.rand(a.shape[0], 1, generator=self.generator) >= cfg.ref_dropout
            draws['keep'] = keep.to(a)
        return draws

    def _x2(self, batch, draws):
        if self.encoder is None:
            return batch['x2']
        return torch.cat([self.target_encoder(batch['obs2'], self.shift, draws['shifts2']), batch['x2']], dim=-1)

    def _q_hat(self, batch, draws):
        cfg = self.config
        with torch.no_grad():
            x2 = self._x2(batch, draws)
            next_a = self.target_actor.clamp(self.target_actor(x2, batch['ref2']) + draws['noise'])
            next_q = self.qf_target(x2, next_a).min(0).values
            q_hat = chunked_td_target(batch['r'], batch['n'], batch['done'], next_q, cfg.gamma)
            return q_hat if cfg.target_range is None else q_hat.clamp(*cfg.target_range)

    def _critic_loss(self, params, batch, draws, q_hat):
        """sum_i mean (Q_i(x, a) - Q_hat)^2, with (Q, x) as aux; with the encoder, x = [features, proprio]."""
        x = batch['x']
        if self.encoder is not None:
            features = functional_call(self.encoder, params['encoder'], (batch['obs'], self.shift, draws['shifts']))
            x = torch.cat([features, x], dim=-1)
        q = functional_call(self.qf, params['qf'], (x, batch['a']))
        return F.mse_loss(q, q_hat.expand_as(q), reduction='none').mean(1).sum(), (q, x)

    def _actor_loss(self, params, x, ref, keep):
        """mean(-Q_1(x, a) + beta ||a - ref||^2), a = pi(x, ref * keep), with (Q_1, the beta term) as aux."""
        a = functional_call(self.actor, params['actor'], (x, ref * keep))
        q = self.qf.q1_for_actor(x, a)
        bc = ((a - ref) ** 2).sum(1)
        return (-q + self.config.beta * bc).mean(), (q, bc)

    def _critic_step(self, batch, draws):
        """Q_hat, the critic loss's gradient (torch.func) and an Adam step of the critics (and encoder)."""
        q_hat = self._q_hat(batch, draws)
        grads, (loss, (q, x)) = grad_and_value(self._critic_loss, has_aux=True)(self.critic_params, batch, draws,
                                                                                  q_hat)
        self.q_optimizer.step(_leaves(grads))
        return {'losses/critic': loss, 'values/q': q.mean()}, x

    def _critic_and_actor_step(self, batch, draws):
        """A critic step, then an actor step on the updated critic, then the Polyak targets."""
        metrics, x = self._critic_step(batch, draws)
        grads, (loss, (q, bc)) = grad_and_value(self._actor_loss, has_aux=True)(self.actor_params, x, batch['ref'],
                                                                                  draws['keep'])
        self.actor_optimizer.step(_leaves(grads))
        soft_update(self.qf_target, self.qf, self.config.tau)
        soft_update(self.target_actor, self.actor, self.config.tau)
        if self.encoder is not None:
            soft_update(self.target_encoder, self.encoder, self.config.tau)
        return {**metrics, 'losses/actor': loss, 'values/q_pi': q.mean(), 'losses/bc': bc.mean()}

    def _critic_and_target_step(self, batch, draws):
        """A critic step, then the critics' Polyak targets; the actor stays as it is (`critic_only_updates`)."""
        metrics, _ = self._critic_step(batch, draws)
        soft_update(self.qf_target, self.qf, self.config.tau)
        if self.encoder is not None:
            soft_update(self.target_encoder, self.encoder, self.config.tau)
        return metrics

    def update(self, batch) -> dict:
        """One critic step; every `critic_updates_per_actor`-th call also an actor step (none in the first
        `critic_only_updates`) and targets."""
        self.num_updates += 1
        delayed = self.num_updates % self.config.critic_updates_per_actor == 0
        actor_step = delayed and self.num_updates > self.config.critic_only_updates
        draws = self.draws(batch, actor_step)
        with torch.no_grad():  # the gradients come from torch.func, not from autograd's tape
            if actor_step:
                self.metrics.update(self._critic_and_actor_update(batch, draws))
            elif delayed:
                self.metrics.update(self._critic_and_target_update(batch, draws))
            else:
                self.metrics.update(self._critic_update(batch, draws)[0])
        return self.metrics

    # The losses at the current weights, for inspection and tests.

    def td_target(self, batch) -> torch.Tensor:
        """Q_hat of a batch (no gradients), clipped to `target_range`."""
        return self._q_hat(batch, self.draws(batch, actor_step=False))

    def critic_loss(self, batch):
        """Critic loss and Q (2, B)."""
        draws = self.draws(batch, actor_step=False)
        loss, (q, _) = self._critic_loss(self.critic_params, batch, draws, self._q_hat(batch, draws))
        return loss, q

    def actor_loss(self, batch):
        """Actor loss, Q_1(x, pi) and the beta term per sample (x as stored: no encoder)."""
        loss, (q, bc) = self._actor_loss(self.actor_params, batch['x'], batch['ref'], self.draws(batch)['keep'])
        return loss, q, bc

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
