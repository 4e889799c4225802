import pytest
import torch

from rlt_core.rl.actor import Actor, ActorConfig, load_actor, pack_weights, save_actor, unpack_weights


def _actor(**kw):
    return Actor(ActorConfig(state_dim=5, chunk_len=4, action_dim=3, **{'action_scale': (0.005,) * 3, **kw}))


def test_outputs_are_bounded_chunks_in_robot_units():
    actor = _actor(action_scale=(0.01, 0.02, 0.03))
    chunk = actor.select_chunk(torch.randn(5), torch.zeros(4, 3))
    assert chunk.shape == (4, 3)
    assert torch.all(chunk.abs() <= torch.tensor([0.01, 0.02, 0.03]))


@pytest.mark.parametrize('residual', [0.0, 0.5])
def test_action_limit_bounds_mean_and_samples_and_travels_with_the_weights(residual):
    actor = _actor(action_limit=(0.001, 0.001, 0.005), std=1.0, residual=residual)
    with torch.no_grad():
        for layer in actor.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(50)  # saturate the tanh
    x, ref = torch.randn(256, 5), torch.zeros(256, 12)
    bound = torch.tensor([0.2, 0.2, 1.0]).repeat(4)
    mean, sample = actor(x, ref), actor.sample(x, ref, torch.Generator().manual_seed(0))
    assert torch.all(mean.abs() <= bound + 1e-6) and torch.all(sample.abs() <= bound + 1e-6)
    assert sample[:, 0].abs().max().item() == pytest.approx(0.2)  # the std of 1 reaches the bound
    chunk = actor.select_chunk(x[0], torch.zeros(4, 3), explore=True, generator=torch.Generator().manual_seed(1))
    assert torch.all(chunk.abs() <= torch.tensor([0.001, 0.001, 0.005]) + 1e-9)
    packed = pack_weights(actor)
    back = unpack_weights(packed['format'], packed['sha256'], packed['config_json'], packed['payload'])
    assert back.config.action_limit == (0.001, 0.001, 0.005)
    torch.testing.assert_close(back(x, ref), mean)
    with pytest.raises(ValueError):
        _actor(action_limit=(0.001, 0.001))


@pytest.mark.parametrize('kind', [{}, {'residual': 0.5}, {'start_at_reference': True}])
def test_a_zero_limit_holds_its_dimension_still_in_means_samples_and_chunks(kind):
    actor = _actor(action_limit=(0.001, 0.001, 0.0), std=1.0, **kind)
    x, ref = torch.randn(64, 5), torch.rand(64, 12) - 0.5
    mean, sample = actor(x, ref), actor.sample(x, ref, torch.Generator().manual_seed(0))
    assert torch.all(mean[:, 2::3] == 0) and torch.all(sample[:, 2::3] == 0)
    assert sample[:, 0::3].abs().max().item() > 0
    chunk = actor.select_chunk(x[0], torch.zeros(4, 3), explore=True, generator=torch.Generator().manual_seed(1))
    assert torch.all(chunk[:, 2] == 0)
    with pytest.raises(ValueError, match='one of them > 0'):
        _actor(action_limit=(0.0, 0.0, 0.0))


def test_exploration_noise_has_the_fixed_std():
    actor = _actor(std=0.1)
    x, ref = torch.zeros(20000, 5), torch.zeros(20000, 12)
    noise = actor.sample(x, ref, torch.Generator().manual_seed(0)) - actor(x, ref)
    assert abs(noise.std().item() - 0.1) < 0.005


def test_no_reference_ablation_ignores_the_reference():
    actor = _actor(use_reference=False)
    x = torch.randn(2, 5)
    torch.testing.assert_close(actor(x, torch.zeros(2, 12)), actor(x, torch.ones(2, 12)))


def test_pack_unpack_roundtrip_and_checks(tmp_path):
    actor = _actor(hidden=(16, 16))
    packed = pack_weights(actor)
    back = unpack_weights(packed['format'], packed['sha256'], packed['config_json'], packed['payload'])
    x, ref = torch.randn(3, 5), torch.randn(3, 12)
    torch.testing.assert_close(back(x, ref), actor(x, ref))
    with pytest.raises(ValueError, match='sha256'):
        unpack_weights('safetensors', packed['sha256'], packed['config_json'], packed['payload'][:-1] + b'x')
    with pytest.raises(ValueError, match='format'):
        unpack_weights('pickle', packed['sha256'], packed['config_json'], packed['payload'])
    save_actor(actor, tmp_path / 'actor.safetensors')
    torch.testing.assert_close(load_actor(tmp_path / 'actor.safetensors')(x, ref), actor(x, ref))


def test_profile_hash_travels_with_the_weights(tmp_path):
    actor = _actor(profile_hash='0123456789abcdef')
    packed = pack_weights(actor)
    assert unpack_weights(packed['format'], packed['sha256'], packed['config_json'],
                          packed['payload']).config.profile_hash == '0123456789abcdef'
    save_actor(actor, tmp_path / 'actor.safetensors')
    assert load_actor(tmp_path / 'actor.safetensors').config.profile_hash == '0123456789abcdef'


def test_generic_defaults_scale_by_one_unit():
    assert ActorConfig(state_dim=5, action_dim=2).action_scale == (1.0, 1.0)
    assert ActorConfig(state_dim=5).chunk_len == 1


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        ActorConfig(state_dim=5, action_dim=3, action_scale=(0.1, 0.1))


def test_an_actor_started_at_the_reference_acts_as_the_vla_and_can_reach_the_whole_range():
    config = ActorConfig(state_dim=5, chunk_len=2, action_dim=3, action_scale=(1.0, 1.0, 1.0),
                         action_limit=(0.2, 0.2, 1.0), hidden=(16, 16), start_at_reference=True)
    actor = Actor(config)
    x, ref = torch.randn(4, 5), torch.rand(4, 6) * 0.4 - 0.2
    ref[:, 2] = 0.5
    torch.testing.assert_close(actor(x, ref), actor.clamp(ref))  # the untrained actor is the reference
    with torch.no_grad():
        actor.net[-1].bias.fill_(-10.0)  # a saturated correction reaches the bottom of the range from any ref
    torch.testing.assert_close(actor(x, ref), -actor.bound.expand(4, 6))
    loss = actor(x, ref).sum()
    with torch.no_grad():
        actor.net[-1].bias.zero_()
    actor(x, ref).sum().backward()
    assert actor.net[-1].weight.grad.abs().sum() > 0 and loss.item() < 0  # it learns from the start
    with pytest.raises(ValueError, match='start_at_reference'):
        ActorConfig(state_dim=5, use_reference=False, start_at_reference=True)
