import warnings

import pytest
import torch

from rlt_core.rl.actor import ActorConfig
from rlt_core.rl.td3 import Adam, RLTLearner, TD3Config, TwinCritic, chunked_td_target, soft_update


def test_chunked_td_target_by_hand():
    gamma = 0.5
    rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    n = torch.tensor([3.0, 2.0, 3.0])
    done = torch.tensor([1.0, 0.0, 0.0])
    next_q = torch.tensor([10.0, 4.0, 8.0])
    # row 0: 0.25 * 1 (terminal, no bootstrap); row 1: 1 + 0.5*2 + 0.5^2 * 4; row 2: 0.5^3 * 8
    expected = torch.tensor([0.25, 1.0 + 1.0 + 1.0, 1.0])
    torch.testing.assert_close(chunked_td_target(rewards, n, done, next_q, gamma), expected)


def test_polyak_update_by_hand():
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.fill_(1.0), a.bias.fill_(0.0), b.weight.fill_(3.0), b.bias.fill_(2.0)
    soft_update(a, b, 0.25)
    torch.testing.assert_close(a.weight, torch.full((1, 2), 1.5))
    torch.testing.assert_close(a.bias, torch.full((1,), 0.5))


def test_adam_steps_as_torch_adam_and_shares_its_state_dict():
    g = torch.Generator().manual_seed(0)
    ours, theirs = torch.randn(5, 3, generator=g), torch.nn.Parameter(torch.randn(5, 3, generator=g))
    ours.copy_(theirs.detach())
    adam, reference = Adam([ours], lr=0.1), torch.optim.Adam([theirs], lr=0.1)
    for _ in range(5):
        grad = torch.randn(5, 3, generator=g)
        adam.step([grad])
        theirs.grad = grad.clone()
        reference.step()
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-4, atol=1e-6)
    # a checkpoint of either loads into the other, and both then step alike
    again = Adam([ours.clone()], lr=0.1)
    again.load_state_dict(reference.state_dict())
    assert float(again.t) == 5.0
    torch.testing.assert_close(again.v[0], reference.state[theirs]['exp_avg_sq'])
    reference.load_state_dict(adam.state_dict())
    grad = torch.randn(5, 3, generator=g)
    again.step([grad])
    theirs.grad = grad
    reference.step()
    torch.testing.assert_close(again.params[0], theirs.detach(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match='another network'):
        Adam([ours, ours.clone()], lr=0.1).load_state_dict(adam.state_dict())


def _learner(**td3):
    cfg = ActorConfig(state_dim=4, chunk_len=2, action_dim=1, action_scale=(1.0,), hidden=(8,), std=0.0)
    return RLTLearner(cfg, TD3Config(critic_hidden=(8,), batch_size=4, **td3), seed=0)


def _batch(b=64):
    g = torch.Generator().manual_seed(1)
    return {'x': torch.randn(b, 4, generator=g), 'a': torch.rand(b, 2, generator=g) * 2 - 1,
            'ref': torch.rand(b, 2, generator=g) * 2 - 1, 'r': torch.zeros(b, 2), 'n': torch.full((b,), 2.0),
            'x2': torch.randn(b, 4, generator=g), 'ref2': torch.rand(b, 2, generator=g) * 2 - 1,
            'done': torch.zeros(b)}


def test_beta_term_is_squared_distance_to_reference():
    learner = _learner(beta=2.0, ref_dropout=0.0)
    batch = _batch()
    loss, q, bc = learner.actor_loss(batch)
    a = learner.actor(batch['x'], batch['ref'])
    torch.testing.assert_close(bc, ((a - batch['ref']) ** 2).sum(1))
    torch.testing.assert_close(loss, (-q + 2.0 * bc).mean())


def test_reference_dropout_zeroes_the_configured_fraction():
    learner = _learner(ref_dropout=0.5)
    seen = []
    original = learner.actor.forward

    def spy(x, ref):
        seen.append((ref == 0).all(1).float().mean().item())
        return original(x, ref)

    learner.actor.forward = spy
    batch = _batch(4000)
    learner.actor_loss(batch)
    assert abs(seen[0] - 0.5) < 0.03
    learner.config.ref_dropout = 0.0
    learner.actor_loss(batch)
    assert seen[1] == 0.0


def test_two_critic_updates_per_actor_update_and_targets_follow():
    learner = _learner(critic_updates_per_actor=2, tau=0.5)
    batch = _batch()
    actor_before = [p.clone() for p in learner.actor.parameters()]
    learner.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, learner.actor.parameters(), strict=True))
    assert 'losses/actor' not in learner.metrics
    learner.update(batch)
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, learner.actor.parameters(), strict=True))
    assert 'losses/actor' in learner.metrics
    # tau=0.5 moved the target critic half-way towards the (updated) critic.
    assert not torch.equal(learner.qf_target.out.weight, learner.qf.out.weight)


def test_critic_only_updates_leave_the_actor_as_it_began_and_move_the_critic_targets():
    learner = _learner(critic_updates_per_actor=2, tau=0.5, critic_only_updates=4)
    batch = _batch()
    actor_before = [p.clone() for p in learner.actor.parameters()]
    target_before = learner.qf_target.out.weight.clone()
    for _ in range(4):
        learner.update(batch)
        assert all(torch.equal(a, b) for a, b in zip(actor_before, learner.actor.parameters(), strict=True))
    assert not torch.equal(target_before, learner.qf_target.out.weight)  # the critics' targets follow meanwhile
    assert 'losses/actor' not in learner.metrics
    learner.update(batch)  # the 5th: a critic step only (odd)
    learner.update(batch)  # the 6th: the actor's first step
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, learner.actor.parameters(), strict=True))


def test_targets_are_clipped_to_the_returns_an_episode_can_earn():
    learner = _learner(target_noise=0.0)
    with torch.no_grad():  # a target critic that extrapolates far above any return
        learner.qf_target.out.bias.fill_(50.0)
    batch = _batch()
    batch['r'][:8, 0] = 1.0
    q_hat = learner.td_target(batch)
    assert q_hat.max() == 1.0 and q_hat.min() >= 0.0
    learner.config.target_range = None
    assert learner.td_target(batch).min() > 40.0
    with pytest.raises(ValueError, match='target_range'):
        TD3Config(target_range=(1.0, 0.0))


def test_twin_critic_members_are_independent():
    critic = TwinCritic(3, 2, (5,))
    x, a = torch.randn(7, 3), torch.randn(7, 2)
    q = critic(x, a)
    assert q.shape == (2, 7)
    assert not torch.allclose(q[0], q[1])


@pytest.mark.parametrize('layer_norm', [False, True])
def test_actor_path_uses_q1_and_leaves_critic_gradients_alone(layer_norm):
    critic = TwinCritic(3, 2, (5, 4), layer_norm=layer_norm)
    with torch.no_grad():  # members differ in their norms too
        for p in critic.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x, a = torch.randn(7, 3), torch.randn(7, 2, requires_grad=True)
    q1 = critic.q1_for_actor(x, a)
    torch.testing.assert_close(q1, critic(x, a)[0])
    q1.sum().backward()
    assert a.grad is not None and all(p.grad is None for p in critic.parameters())


def test_critic_learns_a_fixed_target():
    learner = _learner(gamma=0.0, critic_lr=1e-2)
    batch = _batch()
    batch['r'] = torch.tensor([[1.0, 0.0]]).expand(64, 2).clone()
    first = float(learner.critic_loss(batch)[0].detach())
    for _ in range(300):
        learner.update(batch)
    assert float(learner.critic_loss(batch)[0].detach()) < 0.05 * first


def test_compiled_losses_update_as_the_eager_ones():
    learners = [RLTLearner(ActorConfig(state_dim=4, chunk_len=2, action_dim=1, action_scale=(1.0,), hidden=(8,)),
                           TD3Config(critic_hidden=(8,)), seed=0, compile=c) for c in (False, True)]
    batch = _batch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(4):  # two critic and two actor steps: both compiled graphs, forward and backward
            metrics = [dict(learner.update(batch)) for learner in learners]
    assert not [w for w in caught if 'running eagerly' in str(w.message)], 'TorchInductor failed to compile'
    for key in ('losses/critic', 'losses/actor', 'values/q'):
        torch.testing.assert_close(metrics[0][key], metrics[1][key], rtol=1e-4, atol=1e-5)
    for eager, compiled in zip(learners[0].state_dict()['qf'].values(), learners[1].state_dict()['qf'].values(),
                               strict=True):
        torch.testing.assert_close(eager, compiled, rtol=1e-4, atol=1e-5)


def test_a_failed_compile_falls_back_to_eager(monkeypatch):
    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError('no C++ compiler')
        return call
    monkeypatch.setattr(torch, 'compile', broken)
    learner = RLTLearner(ActorConfig(state_dim=4, chunk_len=2, action_dim=1, action_scale=(1.0,), hidden=(8,)),
                         TD3Config(critic_hidden=(8,)), seed=0, compile=True)
    with pytest.warns(UserWarning, match='no C.. compiler.*running eagerly'):
        learner.update(_batch())
    assert torch.isfinite(learner.metrics['losses/critic'])
