"""ReferenceTD3, the plain reading of the update, and RLTLearner, the fast one, compute the same update: from the
same weights, on the same batches and with the same random draws, the same losses and Q values, and the same
weights after each critic step and each actor step."""

import pytest
import torch

from rlt_core.rl.actor import ActorConfig
from rlt_core.rl.td3 import RLTLearner, TD3Config, TwinCritic
from rlt_core.rl.td3_reference import ReferenceTD3

B, S, C, A, H = 8, 5, 3, 2, 16  # batch, state, chunk, action dims, hidden width
SCALE = 0.005  # robot units of one normalised action unit


def replay_batch(seed: int) -> dict:
    """A replay batch in robot units: full windows, windows the episode's end cut short (truncated, and
    terminated by a success), and a row whose returns exceed the target range."""
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor([C, C, C, 1, 2, 2, 1, C], dtype=torch.float32)
    done = torch.tensor([0, 0, 0, 0, 0, 1, 1, 0], dtype=torch.float32)
    r = torch.zeros(B, C)
    r[0] = 1.0                               # sum of gamma^k r_k above 1: Q_hat clipped to the range
    r[5, 1] = r[6, 0] = 1.0                  # successes ending the episode within a window cut short
    r[7] = torch.rand(C, generator=g)        # any rewards
    chunk = lambda: (torch.rand(B, C, A, generator=g) * 2 - 1) * SCALE  # noqa: E731
    return {'x': torch.randn(B, S, generator=g), 'a': chunk(), 'ref': chunk(), 'r': r, 'n': n,
            'x2': torch.randn(B, S, generator=g), 'ref2': chunk(), 'done': done}


def as_sequential(twin: TwinCritic, i: int) -> list:
    """Q_i of the learner's TwinCritic as the parameters of ReferenceTD3's nn.Sequential critic, in its order."""
    tensors = []
    for k, layer in enumerate(twin.hidden):
        tensors += [layer.weight[i].T, layer.bias[i, 0]]
        if twin.norms is not None:
            tensors += [twin.norms[k].weight[i, 0], twin.norms[k].bias[i, 0]]
    return tensors + [twin.out.weight[i].T, twin.out.bias[i, 0]]


def critics(learner: RLTLearner, reference: ReferenceTD3):
    """(learner's, reference's) parameters of Q_1, Q_2, Q_1', Q_2'."""
    for twin, nets in ((learner.qf, (reference.qf1, reference.qf2)),
                       (learner.qf_target, (reference.qf1_target, reference.qf2_target))):
        for i, net in enumerate(nets):
            yield as_sequential(twin, i), list(net.parameters())


def build(cfg: ActorConfig, td3: TD3Config, reference_td3: TD3Config | None = None):
    """Both learners with the learner's initial weights and random generator; the reference may get another config."""
    learner = RLTLearner(cfg, td3, seed=0, compile=False)
    reference = ReferenceTD3(cfg, reference_td3 or td3, seed=1)  # another seed: every weight must be copied
    reference.actor.load_state_dict(learner.actor.state_dict())
    reference.target_actor.load_state_dict(learner.target_actor.state_dict())
    with torch.no_grad():
        for theirs, ours in critics(learner, reference):
            for p, value in zip(ours, theirs, strict=True):
                p.copy_(value)
    # The same draws: both take the smoothing noise, then (actor steps) the dropout mask, from their generator.
    reference.generator.set_state(learner.generator.get_state())
    return learner, reference


def assert_same_weights(learner: RLTLearner, reference: ReferenceTD3):
    torch.testing.assert_close(dict(reference.actor.state_dict()), dict(learner.actor.state_dict()))
    torch.testing.assert_close(dict(reference.target_actor.state_dict()), dict(learner.target_actor.state_dict()))
    for theirs, ours in critics(learner, reference):
        torch.testing.assert_close(ours, theirs)


def run_both(learner: RLTLearner, reference: ReferenceTD3, updates: int = 4):
    """`updates` updates of both on the same batches, comparing metrics and weights after each."""
    for step in range(1, updates + 1):
        raw = replay_batch(step)
        batch = learner.prepare(raw)
        torch.testing.assert_close(reference.prepare(raw), batch)
        actor_before = {k: v.clone() for k, v in learner.actor.state_dict().items()}
        theirs = {k: v.clone() for k, v in learner.update(batch).items()}
        ours = reference.update(batch)
        actor_step = step % learner.config.critic_updates_per_actor == 0
        assert set(ours) == set(theirs)
        assert ('losses/actor' in ours) == (actor_step or step > learner.config.critic_updates_per_actor)
        torch.testing.assert_close(ours, theirs)  # losses/critic, values/q; losses/actor, values/q_pi, losses/bc
        assert_same_weights(learner, reference)
        if not actor_step:  # a critic step leaves the actor as it was
            torch.testing.assert_close(dict(learner.actor.state_dict()), actor_before, rtol=0, atol=0)
        assert torch.equal(reference.generator.get_state(), learner.generator.get_state())  # as many draws


# Learning and Polyak rates far above the defaults: each step moves the weights by ~1e-2, the targets by ~1e-3,
# well above the float tolerance of the comparison, so that a different step shows.
TD3 = dict(critic_hidden=(H, H), batch_size=B, actor_lr=1e-2, critic_lr=1e-2, tau=0.1)
ACTOR = dict(state_dim=S, chunk_len=C, action_dim=A, action_scale=(SCALE,) * A, hidden=(H, H))


@pytest.mark.parametrize('td3, actor', [
    ({}, {}),
    ({'critic_layer_norm': False, 'target_range': None}, {}),  # TD3's plain critics, an unclipped target
    ({'ref_dropout': 0.0, 'critic_updates_per_actor': 3, 'gamma': 0.9}, {}),
    ({'ref_dropout': 1.0, 'beta': 0.0}, {'action_limit': (2 * SCALE,) * A}),  # output range of 2 units
    ({}, {'residual': 0.5}),            # the residual-RL baseline's actor
    ({}, {'use_reference': False}),     # the no-reference ablation
], ids=['defaults', 'plain-critics', 'no-dropout', 'full-dropout', 'residual', 'no-reference'])
def test_reference_computes_the_learners_update(td3, actor):
    learner, reference = build(ActorConfig(**ACTOR, **actor), TD3Config(**{**TD3, **td3}))
    assert_same_weights(learner, reference)
    run_both(learner, reference, updates=2 * learner.config.critic_updates_per_actor)


@pytest.mark.parametrize('change', [{'beta': 0.2}, {'gamma': 0.9}, {'tau': 0.2}, {'target_noise': 0.3},
                                    {'ref_dropout': 0.9}, {'critic_updates_per_actor': 1}, {'target_range': None},
                                    {'critic_lr': 2e-2}],
                         ids=lambda change: next(iter(change)))
def test_the_comparison_detects_another_update(change):
    learner, reference = build(ActorConfig(**ACTOR), TD3Config(**TD3), TD3Config(**{**TD3, **change}))
    with pytest.raises(AssertionError):
        run_both(learner, reference)
