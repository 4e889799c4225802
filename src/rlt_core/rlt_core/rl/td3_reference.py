"""Chunked TD3 for RLT written the plain way: the reading path of the learner's math.

`ReferenceTD3` is written like CleanRL's td3_continuous_action.py. Read it top to bottom, in the order
an update runs: the critics, the networks and optimisers, then `update()`, which computes the target,
takes a critic step and, on every `critic_updates_per_actor`-th call, an actor step and the Polyak targets.
`rlt_core.rl.td3.RLTLearner` computes the same update fast: its twin critics are batched, torch.func
gives the gradients, and it can compile the whole step into one function. `test_td3_reference.py` checks
that both give the same losses, Q values and weights. The benchmark (`rlt_train.benchmark_learner`) uses
this class as its baseline. The no-RL-token ablation (an image encoder in place of z_rl) exists only in
`RLTLearner`.

Names follow the RL Token paper. x = (z_rl, proprio) is the RL state. An action chunk a holds
C = chunk_len actions, flattened to C*A numbers in normalised action units (see `Actor.normalize`), and
ref_chunk (`ref`) is the VLA's reference chunk. One transition is one window of the episode:

  x, a, ref    the state, the executed chunk and the reference chunk at the window's start
  r            the rewards of the window's steps (B, C), zero past n
  n            the window's steps: C, or fewer when the episode's end cut the window short
  x2, ref2     the state and the reference chunk n steps later (the final state for a cut window)
  done         1 if the episode terminated in the window, 0 otherwise (truncated too: x2 is bootstrapped)

An update computes, with means over the batch:

  target action   a' = clip(pi'(x2, ref2) + clip(eps, -noise_clip, noise_clip)),  eps ~ N(0, target_noise^2),
                  clipped to the actor's output range
  critic target   Q_hat = clip(sum_{k<n} gamma^k r_k + (1 - done) gamma^n min_{i=1,2} Q_i'(x2, a'), target_range)
                  (n = C: gamma^C, the chunked target, one chunk one step of the MDP; no clip if target_range is None)
  critic loss     L_Q = sum_{i=1,2} mean (Q_i(x, a) - Q_hat)^2
  actor action    a_pi = pi(x, m * ref),  m ~ Bernoulli(1 - ref_dropout) per sample (reference dropout)
  actor loss      L_pi = mean(-Q_1(x, a_pi) + beta ||a_pi - ref||^2)
  targets         theta' <- tau theta + (1 - tau) theta' for pi', Q_1', Q_2'

Each update takes one critic step (Adam on L_Q). Every `critic_updates_per_actor`-th update then also takes
an actor step (Adam on L_pi, the critic just updated, its weights held) and updates the targets. The random
draws (eps, then m) come from `generator` on the CPU, in the same order as `RLTLearner.draws`.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from rlt_core.rl.actor import Actor, ActorConfig
from rlt_core.rl.td3 import TD3Config


def critic(in_dim: int, hidden: tuple[int, ...], layer_norm: bool) -> nn.Sequential:
    """Q(x, a) as an MLP on [x, a]. With `layer_norm`, a LayerNorm comes before each hidden ReLU (as in RLPD)."""
    layers, d = [], in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), *([nn.LayerNorm(h)] if layer_norm else []), nn.ReLU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, 1))


def soft_update(target: nn.Module, source: nn.Module, tau: float):
    """theta' <- tau theta + (1 - tau) theta'."""
    with torch.no_grad():
        for param, target_param in zip(source.parameters(), target.parameters(), strict=True):
            target_param.lerp_(param, tau)


class ReferenceTD3:
    """Chunked TD3 as CleanRL writes TD3: two `nn.Sequential` critics, autograd's `backward()`,
    `torch.optim.Adam`, a Polyak loop. The same update as `RLTLearner.update`."""

    def __init__(self, actor_config: ActorConfig, config: TD3Config | None = None, seed: int = 0,
                 device: str = 'cpu'):
        self.config = cfg = config or TD3Config()
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)  # the update's random draws, on the CPU
        in_dim = actor_config.state_dim + actor_config.chunk_size
        self.actor = Actor(actor_config).to(device)  # pi(x, ref): the network that acts
        self.qf1 = critic(in_dim, cfg.critic_hidden, cfg.critic_layer_norm).to(device)
        self.qf2 = critic(in_dim, cfg.critic_hidden, cfg.critic_layer_norm).to(device)
        self.target_actor = copy.deepcopy(self.actor)
        self.qf1_target = copy.deepcopy(self.qf1)
        self.qf2_target = copy.deepcopy(self.qf2)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.q_optimizer = torch.optim.Adam([*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.critic_lr)
        self.num_updates = 0
        self.metrics = {}

    def prepare(self, batch: dict) -> dict:
        """A replay batch (chunks in robot units, (B, C, A)) on the actor's device, chunks normalised and flat."""
        device = self.actor.action_scale.device
        batch = {k: v.to(device) for k, v in batch.items()}
        norm = self.actor.normalize
        return {**batch, 'a': norm(batch['a']), 'ref': norm(batch['ref']), 'ref2': norm(batch['ref2'])}

    def update(self, batch: dict) -> dict:
        """One critic step; on every `critic_updates_per_actor`-th call, also an actor step and the targets."""
        cfg = self.config
        x, a, ref, r, n, done = batch['x'], batch['a'], batch['ref'], batch['r'], batch['n'], batch['done']
        self.num_updates += 1

        # Critic target Q_hat, with the smoothing noise eps on the target action a'.
        with torch.no_grad():
            eps = (torch.randn(a.shape, generator=self.generator) * cfg.target_noise).clamp(
                -cfg.noise_clip, cfg.noise_clip).to(a.device)
            next_a = self.target_actor.clamp(self.target_actor(batch['x2'], batch['ref2']) + eps)
            next_in = torch.cat([batch['x2'], next_a], 1)
            min_next_q = torch.min(self.qf1_target(next_in), self.qf2_target(next_in)).view(-1)
            discounts = cfg.gamma ** torch.arange(r.shape[1], dtype=r.dtype, device=r.device)  # gamma^k, k < C
            q_hat = (r * discounts).sum(1) + (1 - done) * cfg.gamma ** n * min_next_q
            if cfg.target_range is not None:
                q_hat = q_hat.clamp(*cfg.target_range)

        # Critic loss and step.
        q1 = self.qf1(torch.cat([x, a], 1)).view(-1)
        q2 = self.qf2(torch.cat([x, a], 1)).view(-1)
        critic_loss = F.mse_loss(q1, q_hat) + F.mse_loss(q2, q_hat)
        self.q_optimizer.zero_grad()
        critic_loss.backward()
        self.q_optimizer.step()
        self.metrics.update({'losses/critic': critic_loss.detach(),
                             'values/q': torch.stack([q1, q2]).mean().detach()})

        if self.num_updates % cfg.critic_updates_per_actor == 0:
            # Actor loss and step. The reference is zeroed on a `ref_dropout` fraction of the batch. Only the
            # actor's optimiser steps; its backward also leaves gradients in qf1, cleared by the next zero_grad.
            keep = (torch.rand(a.shape[0], 1, generator=self.generator) >= cfg.ref_dropout).to(a)
            a_pi = self.actor(x, ref * keep)
            q_pi = self.qf1(torch.cat([x, a_pi], 1)).view(-1)
            bc = ((a_pi - ref) ** 2).sum(1)
            actor_loss = (-q_pi + cfg.beta * bc).mean()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()

            # Polyak targets.
            soft_update(self.qf1_target, self.qf1, cfg.tau)
            soft_update(self.qf2_target, self.qf2, cfg.tau)
            soft_update(self.target_actor, self.actor, cfg.tau)
            self.metrics.update({'losses/actor': actor_loss.detach(), 'values/q_pi': q_pi.mean().detach(),
                                 'losses/bc': bc.mean().detach()})
        return self.metrics
