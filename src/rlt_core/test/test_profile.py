"""The robot profile: loading, validation with clear messages, the hash, and the check of actor weights."""

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from rlt_core.control.profile import DEFAULT_PROFILE, ProfileError, RobotProfile, profiles_dir, resolve_profile_path
from rlt_core.rl.actor import ActorConfig


@pytest.fixture
def data() -> dict:
    return yaml.safe_load((profiles_dir() / f'{DEFAULT_PROFILE}.yaml').read_text())


def write(tmp_path, data, name='cell.yaml') -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_default_is_loaded_by_name_path_or_nothing():
    default = RobotProfile.load()
    assert default == RobotProfile.load('') == RobotProfile.load(DEFAULT_PROFILE)
    assert default == RobotProfile.load(str(profiles_dir() / f'{DEFAULT_PROFILE}.yaml'))
    assert resolve_profile_path('other') == profiles_dir() / 'other.yaml'
    assert resolve_profile_path('/x/y.yaml') == Path('/x/y.yaml')


def test_every_profile_in_the_folder_loads_and_is_consistent():
    paths = sorted(profiles_dir().glob('*.yaml'))
    assert paths
    for path in paths:
        profile = RobotProfile.load(path)
        assert profile.name == path.stem
        assert profile.action_dim == len(profile.joint_names) == len(profile.max_delta)
        assert tuple(profile.limits.high) == profile.max_delta
        assert tuple(profile.critical_limits.high) == profile.critical_max_delta
        assert profile.dt == pytest.approx(1.0 / profile.control_hz)
        assert profile.camera_names == tuple(c.name for c in profile.cameras)


def test_save_and_load_round_trip(tmp_path):
    default = RobotProfile.load()
    assert RobotProfile.load(default.save(tmp_path / 'copy.yaml')) == default
    shorter = replace(default, max_steps=40, cameras=tuple(replace(c, width=64, height=64) for c in default.cameras))
    back = RobotProfile.load(shorter.save(tmp_path / 'short.yaml'))
    assert back == shorter and back.max_steps == 40 and back.hash != default.hash
    with pytest.raises(ProfileError, match='max_steps must be positive'):
        replace(default, max_steps=0)


def test_a_profile_states_its_facts(tmp_path, data):
    data['joints'] = {'names': ['a', 'b'], 'lower': [-1.0, -2.0], 'upper': [1.0, 2.0]}
    data['action'] = {'space': 'joint_delta', 'max_delta': [0.1, 0.2], 'critical_max_delta': [0.05, 0.2]}
    data['control_hz'] = 50
    data['chunks'] = {'vla_chunk_len': 50, 'actor_chunk_len': 10, 'stride': 5}
    data['cameras'] = [{'name': 'top', 'width': 64, 'height': 48}]
    data['episode'] = {'max_steps': 300}
    p = RobotProfile.load(write(tmp_path, data))
    assert (p.joint_names, p.joint_lower, p.joint_upper) == (('a', 'b'), (-1.0, -2.0), (1.0, 2.0))
    assert (p.max_delta, p.critical_max_delta, p.control_hz, p.dt) == ((0.1, 0.2), (0.05, 0.2), 50.0, 0.02)
    assert (p.vla_chunk_len, p.actor_chunk_len, p.stride, p.max_steps) == (50, 10, 5, 300)
    assert p.camera_names == ('top',) and (p.cameras[0].encoding, p.cameras[0].width, p.cameras[0].height) == \
        ('rgb8', 64, 48)


@pytest.mark.parametrize('edit, message', [
    (lambda d: d.update(colour='red'), r"unknown keys \['colour'\]"),
    (lambda d: d['joints'].update(lower=[-0.06, -0.06]), 'one lower and one upper limit per joint'),
    (lambda d: d['joints'].update(names=['x', 'x', 'z']), 'joint names must be distinct'),
    (lambda d: d['joints'].update(upper=[0.06, 0.06, -0.08]), 'lower < upper'),
    (lambda d: d['action'].update(max_delta=[0.005, 0.005]), 'max_delta and critical_max_delta need 3 entries'),
    (lambda d: d['action'].update(critical_max_delta=[0.001, 0.001, 0.006]),
     '0 < critical_max_delta <= max_delta'),
    (lambda d: d['chunks'].update(actor_chunk_len=5, stride=2),
     'actor_chunk_len must be a positive multiple of stride'),
    (lambda d: d['chunks'].update(vla_chunk_len=2), r'vla_chunk_len \(H\) must be >= actor_chunk_len \(C\)'),
    (lambda d: d.update(control_hz=0), r'control_hz must be in \(0, 1000\]'),
    (lambda d: d['cameras'].append(dict(d['cameras'][0])), 'cameras need distinct names'),
    (lambda d: d['cameras'][0].update(encoding='yuv'), 'camera scene: encoding or size'),
    (lambda d: d['episode'].update(max_steps=0), 'max_steps must be positive'),
    (lambda d: d.pop('chunks'), "missing or malformed entry.*'chunks'"),
    (lambda d: d['action'].update(space='cartesian'), 'action space must be one of'),
])
def test_invalid_profiles_are_refused_with_a_clear_message(tmp_path, data, edit, message):
    bad = copy.deepcopy(data)
    edit(bad)
    path = write(tmp_path, bad)
    with pytest.raises(ProfileError, match=message) as err:
        RobotProfile.load(path)
    assert str(path) in str(err.value)  # the message names the file
    assert isinstance(err.value, ValueError)


def test_bad_yaml_and_missing_files_are_refused(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('name: [unclosed\n')
    with pytest.raises(ProfileError, match='not valid YAML'):
        RobotProfile.load(path)
    path.write_text('- a list\n')
    with pytest.raises(ProfileError, match='a robot profile is a mapping'):
        RobotProfile.load(path)
    with pytest.raises(ProfileError, match='cannot read robot profile'):
        RobotProfile.load(tmp_path / 'absent.yaml')
    with pytest.raises(ProfileError, match='cannot read robot profile'):
        RobotProfile.load('no_such_robot')


def test_the_hash_ignores_comments_layout_and_description(tmp_path, data):
    default = RobotProfile.load()
    text = (profiles_dir() / f'{DEFAULT_PROFILE}.yaml').read_text()
    commented = tmp_path / 'commented.yaml'
    commented.write_text('# another comment\n' + text.replace('description:', 'description: changed,'))
    assert RobotProfile.load(commented).hash == default.hash
    assert RobotProfile.load(write(tmp_path, data, 'flow.yaml')).hash == default.hash  # re-dumped layout
    assert len(default.hash) == 16 and int(default.hash, 16) >= 0


@pytest.mark.parametrize('edit', [
    lambda d: d.update(name='other_cell'),
    lambda d: d['joints'].update(names=['x', 'y', 'z']),
    lambda d: d['joints'].update(upper=[0.06, 0.06, 0.05]),
    lambda d: d.update(controller_name='arm_controller'),
    lambda d: d.update(control_hz=25.0),
    lambda d: d['action'].update(max_delta=[0.006, 0.005, 0.005]),
    lambda d: d['action'].update(critical_max_delta=[0.001, 0.002, 0.005]),
    lambda d: d['cameras'][1].update(width=128),
    lambda d: d['cameras'].pop(),
    lambda d: d['chunks'].update(vla_chunk_len=12),
    lambda d: d['chunks'].update(actor_chunk_len=2),
    lambda d: d['chunks'].update(stride=1),
    lambda d: d['episode'].update(max_steps=121),
])
def test_the_hash_changes_with_any_fact(tmp_path, data, edit):
    changed = copy.deepcopy(data)
    edit(changed)
    assert RobotProfile.load(write(tmp_path, changed)).hash != RobotProfile.load(write(tmp_path, data, 'a.yaml')).hash


def test_actor_config_takes_the_robot_facts_and_the_hash():
    profile = RobotProfile.load()
    config = profile.actor_config(state_dim=7, hidden=(16,))
    assert (config.chunk_len, config.action_dim) == (profile.actor_chunk_len, profile.action_dim)
    assert config.action_scale == profile.max_delta and config.action_limit == profile.critical_max_delta
    assert config.profile_hash == profile.hash and config.hidden == (16,)
    profile.check_actor(config)
    profile.check_actor(ActorConfig.from_json(config.to_json()))  # the hash survives the weights' JSON


def test_check_actor_refuses_weights_of_another_robot(tmp_path, data):
    profile = RobotProfile.load()
    other_data = copy.deepcopy(data)
    other_data['action']['critical_max_delta'] = [0.002, 0.002, 0.005]
    other = RobotProfile.load(write(tmp_path, other_data))
    with pytest.raises(ValueError, match=f'profile hash {other.hash} != {profile.hash}'):
        profile.check_actor(other.actor_config(state_dim=7))
    unstamped = ActorConfig(state_dim=7, chunk_len=profile.actor_chunk_len, action_dim=profile.action_dim)
    with pytest.raises(ValueError, match=r'profile hash \(none\)'):
        profile.check_actor(unstamped)
    longer = ActorConfig(state_dim=7, chunk_len=profile.actor_chunk_len * 2, action_dim=profile.action_dim,
                         profile_hash=profile.hash)
    with pytest.raises(ValueError, match=f'chunk_len {2 * profile.actor_chunk_len} != actor_chunk_len'):
        profile.check_actor(longer)
    wider = ActorConfig(state_dim=7, chunk_len=profile.actor_chunk_len, action_dim=profile.action_dim + 1,
                        profile_hash=profile.hash)
    with pytest.raises(ValueError, match=f'action_dim {profile.action_dim + 1} != {profile.action_dim} joints'):
        profile.check_actor(wider)
