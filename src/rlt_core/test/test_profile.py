"""The robot profile: loading, validation with clear messages, the hash, and the check of actor weights."""

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from rlt_core.control.profile import (
    DEFAULT_PROFILE,
    EE_DIM,
    ProfileError,
    RobotProfile,
    profiles_dir,
    resolve_profile_path,
)
from rlt_core.rl.actor import ActorConfig
from rlt_core.runtime import bringup_dir


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
        assert profile.action_dim == len(profile.max_delta) == len(profile.critical_max_delta)
        if profile.action_space == 'joint_delta':
            assert profile.action_dim == len(profile.joint_names)
        else:
            assert profile.action_dim == EE_DIM + profile.gripper and profile.urdf_path.is_file()
            assert len(profile.joint_velocity_limits) == len(profile.joint_names)
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
        ('any', 64, 48)
    assert (p.cameras[0].image_topic, p.cameras[0].compressed) == ('cameras/top/image_raw', False)


@pytest.mark.parametrize('edit, message', [
    (lambda d: d.update(colour='red'), r"unknown keys \['colour'\]"),
    (lambda d: d['joints'].update(lower=[-0.06, -0.06]), 'one lower and one upper limit per joint'),
    (lambda d: d['joints'].update(names=['x', 'x', 'z']), 'joint names must be distinct'),
    (lambda d: d['joints'].update(upper=[0.06, 0.06, -0.08]), 'lower < upper'),
    (lambda d: d['action'].update(max_delta=[0.005, 0.005]), 'max_delta and critical_max_delta need 3 entries'),
    (lambda d: d['action'].update(critical_max_delta=[0.001, 0.001, 0.006]),
     '0 <= critical_max_delta <= max_delta'),
    (lambda d: d['action'].update(critical_max_delta=[0.0, 0.0, 0.0]), 'one critical limit > 0'),
    (lambda d: d['action'].update(max_delta=[0.005, 0.0, 0.005], critical_max_delta=[0.001, 0.0, 0.001]),
     'per-step limits need 0 < max_delta'),
    (lambda d: d['chunks'].update(actor_chunk_len=5, stride=2),
     'actor_chunk_len must be a positive multiple of stride'),
    (lambda d: d['chunks'].update(vla_chunk_len=2), r'vla_chunk_len \(H\) must be >= actor_chunk_len \(C\)'),
    (lambda d: d.update(control_hz=0), r'control_hz must be in \(0, 1000\]'),
    (lambda d: d['cameras'].append(dict(d['cameras'][0])), 'cameras need distinct names'),
    (lambda d: d['cameras'][0].update(encoding='yuv'),
     r"camera 'scene': encoding 'yuv' is not any or one of \['rgb8', 'bgr8', 'mono8'\] \(transport raw\)"),
    (lambda d: d['cameras'][0].update(encoding='jpeg'), r"encoding 'jpeg' is not any or one of .* \(transport raw\)"),
    (lambda d: d['cameras'][0].update(topic='/wrist/compressed', encoding='bgr8'),
     r"encoding 'bgr8' is not any or one of \['jpeg', 'png'\] \(transport compressed\)"),
    (lambda d: d['cameras'][0].update(topic='/wrist/compressed', transport='raw'),
     'topic /wrist/compressed is a compressed image topic, but transport is raw'),
    (lambda d: d['cameras'][0].update(transport='theora'), r"transport 'theora' is not one of \['compressed', 'raw'\]"),
    (lambda d: d['cameras'][0].update(width=0), 'width and height must be positive: 0x96'),
    (lambda d: d['cameras'][0].update(fps=30), r"a camera is a mapping of \['encoding', 'height', 'name', 'topic'"),
    (lambda d: d['cameras'][1].update(topic='cameras/scene/image_raw'), 'cameras need distinct topics'),
    (lambda d: d['episode'].update(max_steps=0), 'max_steps must be positive'),
    (lambda d: d.pop('chunks'), "missing or malformed entry.*'chunks'"),
    (lambda d: d['action'].update(space='cartesian'), 'action space must be one of'),
])
def test_invalid_profiles_are_refused_with_a_clear_message(tmp_path, data, edit, message):
    assert_refused(tmp_path, data, edit, message)


def assert_refused(tmp_path, data, edit, message):
    """The profile `data` changed by `edit` fails to load with `message`, naming its file."""
    bad = copy.deepcopy(data)
    edit(bad)
    path = write(tmp_path, bad)
    with pytest.raises(ProfileError, match=message) as err:
        RobotProfile.load(path)
    assert str(path) in str(err.value)
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


# --- end-effector action space (ee_delta): the arm's profile ---

GANTRY_HASH = 'b63a18bf5ed84550'
"""The default profile's hash before ee_delta existed: weights trained for the gantry stay valid."""


@pytest.fixture
def arm_data() -> dict:
    return yaml.safe_load((profiles_dir() / 'ur5e_cell.yaml').read_text())


def test_the_gantry_profile_is_unchanged_by_the_end_effector_fields(tmp_path):
    default = RobotProfile.load()
    assert default.hash == GANTRY_HASH and default.action_space == 'joint_delta' and default.action_dim == 3
    assert not default.urdf and default.urdf_path is None and default.joint_velocity_limits == ()
    assert set(default.to_dict()) == {'name', 'description', 'joints', 'controller_name', 'control_hz', 'action',
                                      'cameras', 'chunks', 'episode'}
    assert set(default.to_dict()['action']) == {'space', 'max_delta', 'critical_max_delta'}
    assert RobotProfile.load(default.save(tmp_path / 'copy.yaml')).hash == GANTRY_HASH


def test_the_arm_profile_acts_in_end_effector_space(tmp_path):
    arm = RobotProfile.load('ur5e_cell')
    assert arm.action_space == 'ee_delta' and arm.action_dim == 6 and not arm.gripper
    assert (arm.base_frame, arm.tool_frame) == ('base_link', 'tool0')
    assert arm.urdf_path == bringup_dir() / 'description' / 'ur5e.urdf'
    assert arm.joint_velocity_limits == pytest.approx((3.1415927,) * 6)  # the URDF's, not the YAML's
    assert all(lo < hi for lo, hi in zip(arm.workspace_lower, arm.workspace_upper, strict=True))
    assert all(m <= 0.005 for m in arm.max_delta[:3]) and all(m <= 0.01 for m in arm.max_delta[3:])
    assert tuple(arm.limits.high) == arm.max_delta and arm.actor_config(state_dim=9).action_dim == 6
    kinematics = arm.kinematics()
    assert kinematics.joint_names == arm.joint_names and tuple(kinematics.lower) == arm.joint_lower
    back = RobotProfile.load(arm.save(tmp_path / 'arm.yaml'))
    assert back == arm and back.hash == arm.hash and back.hash != GANTRY_HASH
    with_gripper = replace(arm, gripper=True, max_delta=arm.max_delta + (0.1,),
                           critical_max_delta=arm.critical_max_delta + (0.05,))
    assert with_gripper.action_dim == 7 and RobotProfile.load(with_gripper.save(tmp_path / 'g.yaml')) == with_gripper
    assert with_gripper.hash != arm.hash


def test_an_absolute_urdf_path_and_its_content_are_part_of_the_arm(tmp_path, arm_data):
    urdf = (bringup_dir() / 'description' / 'ur5e.urdf').read_text()
    (tmp_path / 'arm.urdf').write_text(urdf)
    arm_data['kinematics']['urdf'] = str(tmp_path / 'arm.urdf')
    arm = RobotProfile.load(write(tmp_path, arm_data))
    assert arm.urdf_path == tmp_path / 'arm.urdf' and arm.hash != RobotProfile.load('ur5e_cell').hash  # another path
    before = arm.hash
    (tmp_path / 'arm.urdf').write_text(urdf.replace('xyz="-0.425 0 0"', 'xyz="-0.426 0 0"'))
    assert arm.hash != before  # a longer upper arm is another robot


@pytest.mark.parametrize('edit', [
    lambda d: d['action']['workspace'].update(lower=[-0.71, -0.4, 0.1]),
    lambda d: d['action']['workspace'].update(upper=[-0.25, 0.2, 0.66]),
    lambda d: d['kinematics'].update(tool_frame='peg_tip'),
    lambda d: d['action'].update(max_delta=[0.005, 0.005, 0.005, 0.01, 0.01, 0.02]),
    lambda d: d['joints'].update(upper=[3.0, 0.0, 3.1415927, 6.2831853, 6.2831853, 6.2831853]),
])
def test_the_arm_hash_changes_with_any_end_effector_fact(tmp_path, arm_data, edit):
    changed = copy.deepcopy(arm_data)
    edit(changed)
    original = RobotProfile.load(write(tmp_path, arm_data, 'a.yaml'))
    assert RobotProfile.load(write(tmp_path, changed)).hash != original.hash


@pytest.mark.parametrize('edit, message', [
    (lambda d: d['action'].update(max_delta=[0.005, 0.005, 0.005]), 'max_delta and critical_max_delta need 6 entries'),
    (lambda d: d['action'].update(gripper=True), 'max_delta and critical_max_delta need 7 entries'),
    (lambda d: d['action'].update(gripper='yes'), "gripper must be true or false, got 'yes'"),
    (lambda d: d['action'].update(frame='base'), r"unknown keys \['frame'\] in action"),
    (lambda d: d['kinematics'].update(srdf='x'), r"unknown keys \['srdf'\] in kinematics"),
    (lambda d: d.pop('kinematics'), 'ee_delta needs kinematics: urdf, base_frame and tool_frame'),
    (lambda d: d['kinematics'].pop('tool_frame'), 'kinematics needs urdf, base_frame and tool_frame together'),
    (lambda d: d['action'].pop('workspace'), r'ee_delta needs a workspace box: lower and upper \(x, y, z\)'),
    (lambda d: d['action']['workspace'].update(lower=[-0.7, -0.4]), 'ee_delta needs a workspace box'),
    (lambda d: d['action']['workspace'].update(upper=[-0.8, 0.2, 0.65]), 'workspace box needs lower < upper'),
    (lambda d: d['kinematics'].update(tool_frame='gripper_tcp'),
     r"ur5e.urdf: frame 'gripper_tcp' is not in the robot description"),
    (lambda d: d['kinematics'].update(base_frame='world'), "frame 'world' is not in the robot description"),
    (lambda d: d['kinematics'].update(base_frame='tool0'), "base frame 'tool0' moves with joint"),
    (lambda d: d['kinematics'].update(urdf='no_such_arm.urdf'), 'no_such_arm.urdf: cannot read robot description'),
    (lambda d: d['joints']['names'].__setitem__(5, 'wrist_4_joint'),
     "joint 'wrist_4_joint' is not in the robot description"),
    (lambda d: d['joints']['lower'].__setitem__(2, -3.2), r"joint limits of \['elbow_joint'\] go beyond"),
])
def test_invalid_arm_profiles_are_refused_with_a_clear_message(tmp_path, arm_data, edit, message):
    assert_refused(tmp_path, arm_data, edit, message)


def test_end_effector_fields_belong_to_ee_delta(tmp_path, data, arm_data):
    gantry = copy.deepcopy(data)
    gantry['action']['workspace'] = {'lower': [0, 0, 0], 'upper': [1, 1, 1]}
    with pytest.raises(ProfileError, match='workspace and gripper belong to the ee_delta action space'):
        RobotProfile.load(write(tmp_path, gantry))
    gantry = copy.deepcopy(data)
    gantry['action']['gripper'] = True
    with pytest.raises(ProfileError, match='workspace and gripper belong to the ee_delta action space'):
        RobotProfile.load(write(tmp_path, gantry))
    # An arm may act in joint space and still name its description: velocity limits and kinematics from the URDF.
    joints = copy.deepcopy(arm_data)
    joints['action'] = {'space': 'joint_delta', 'max_delta': [0.05] * 6, 'critical_max_delta': [0.01] * 6}
    arm = RobotProfile.load(write(tmp_path, joints))
    assert arm.action_dim == 6 and arm.joint_velocity_limits == pytest.approx((3.1415927,) * 6)
    assert RobotProfile.load(arm.save(tmp_path / 'joints.yaml')) == arm


def test_action_names_and_proprio_follow_the_action_space():
    gantry, arm = RobotProfile.load(), RobotProfile.load('ur5e_cell')
    assert gantry.action_names == gantry.joint_names and gantry.proprio_dim == 6
    assert arm.action_names == ('x', 'y', 'z', 'rx', 'ry', 'rz') and arm.proprio_dim == 2 * len(arm.joint_names)
    from rlt_core.data.lerobot import profile_features
    features = profile_features(arm)
    assert features['action']['names'][:2] == ['x.delta', 'y.delta'] and features['observation.state']['shape'] == [12]


def test_a_camera_states_its_driver_topic_and_what_the_vla_sees(tmp_path, data):
    data['cameras'] = [
        {'name': 'scene', 'encoding': 'bgr8', 'width': 96, 'height': 96},  # cameras/scene/image_raw
        {'name': 'wrist_left', 'topic': '/wrist_cam/color/image_raw/compressed', 'width': 96, 'height': 96},
        {'name': 'wrist_right', 'topic': 'right/image', 'transport': 'compressed', 'encoding': 'png',
         'width': 64, 'height': 48}]
    profile = RobotProfile.load(write(tmp_path, data))
    scene, left, right = profile.cameras
    assert (scene.image_topic, scene.compressed, scene.encoding) == ('cameras/scene/image_raw', False, 'bgr8')
    assert (left.image_topic, left.compressed, left.encoding) == ('/wrist_cam/color/image_raw/compressed', True, 'any')
    assert (right.image_topic, right.compressed, right.encoding, right.width, right.height) == \
        ('right/image', True, 'png', 64, 48)
    assert replace(scene, name='top').image_topic == 'cameras/top/image_raw'  # the default follows the name
    assert scene.accepts('bgr8') and not scene.accepts('rgb8') and left.accepts('jpeg') and left.accepts('png')
    assert RobotProfile.load(profile.save(tmp_path / 'copy.yaml')) == profile
    assert profile.to_dict()['cameras'][0] == {'name': 'scene', 'encoding': 'bgr8', 'width': 96, 'height': 96}
    assert 'transport' not in profile.to_dict()['cameras'][1] and profile.to_dict()['cameras'][2]['transport']


def test_where_a_camera_publishes_does_not_change_the_hash():
    default = RobotProfile.load()
    scene = default.cameras[0]
    remapped = replace(default, cameras=(replace(scene, topic='/scene_cam/color/image_raw'), *default.cameras[1:]))
    assert remapped.cameras[0].image_topic == '/scene_cam/color/image_raw'
    assert remapped.hash == default.hash == GANTRY_HASH
    compressed = replace(default, cameras=(replace(scene, topic='/scene_cam/color/image_raw/compressed',
                                                   encoding='jpeg'), *default.cameras[1:]))
    assert compressed.cameras[0].compressed and compressed.hash != default.hash  # another encoding
