"""The simulated arm cell: MuJoCo's compile of the description agrees with the kinematics layer, tool moves
execute as commanded or are refused, and the scripted expert inserts the peg through the episode engine."""

from dataclasses import replace

import numpy as np
import pytest

from rlt_core.control.profile import RobotProfile
from rlt_sim.arm_cell import ArmCellConfig
from rlt_sim.arm_env import ArmPegInsertionEnv
from rlt_sim.episode import check_profile
from rlt_sim.expert import ScriptedExpert, run_episode


@pytest.fixture(scope='module')
def env():
    env = ArmPegInsertionEnv(render=False)
    yield env
    env.close()


def test_the_cells_tool_frame_is_where_the_kinematics_puts_it(env):
    """MuJoCo's compile of the description inside the cell (servos, compliant mount and cameras added) and
    Pinocchio's reading of the same file agree on the tool frame's pose."""
    import mujoco
    rng = np.random.default_rng(0)
    low, high = np.array(env.profile.joint_lower), np.array(env.profile.joint_upper)
    tool = env.model.body(env.profile.tool_frame).id
    for q in rng.uniform(np.maximum(low, -np.pi), np.minimum(high, np.pi), size=(200, len(low))):
        env.data.qpos[env._joint_qpos] = q
        mujoco.mj_kinematics(env.model, env.data)
        pose = env.kinematics.fk(q)
        np.testing.assert_allclose(env.data.xpos[tool], pose[:3, 3], atol=1e-5)  # 0.01 mm
        np.testing.assert_allclose(env.data.xmat[tool].reshape(3, 3), pose[:3, :3], atol=1e-6)


def test_a_tool_move_moves_the_peg_tip_by_it_and_the_arm_holds_still_without_one(env):
    _, info = env.reset(seed=3)
    start = info['peg_tip_pos']
    for _ in range(10):
        obs, _, _, _, info = env.step(np.zeros(6))
    np.testing.assert_allclose(info['peg_tip_pos'], start, atol=1e-6)
    move = np.array([0.004, -0.003, 0.002, 0.0, 0.0, 0.0])
    for _ in range(5):
        env.step(move)
    for _ in range(10):  # let the servos settle
        obs, _, _, _, info = env.step(np.zeros(6))
    np.testing.assert_allclose(info['peg_tip_pos'] - start, 5 * move[:3], atol=1e-4)
    np.testing.assert_allclose(env.kinematics.fk(obs['proprio'][:6])[:3, :3],
                               env.kinematics.fk(env.position_target)[:3, :3], atol=1e-4)  # orientation held
    assert info['refused'] == ''


def test_a_move_out_of_the_workspace_is_refused_and_the_arm_holds(env):
    _, info = env.reset(seed=4)
    target = env.position_target
    for _ in range(200):  # up at 5 mm per step: the box's top is 0.65 m
        obs, _, _, _, info = env.step([0.0, 0.0, 0.005, 0.0, 0.0, 0.0])
        if info['refused']:
            break
    assert info['refused'].startswith('workspace'), info['refused']
    held = env.position_target
    obs, _, _, _, info = env.step([0.0, 0.0, 0.005, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(env.position_target, held)
    assert not np.array_equal(held, target)
    with pytest.raises(ValueError, match='finite'):
        env.step_to([np.nan] * 6)


def test_the_scripted_expert_inserts_through_the_engine_and_an_imperfect_one_sometimes_jams(env):
    profile = env.profile
    perfect = [run_episode(env, ScriptedExpert.for_profile(profile), seed=s, profile=profile) for s in range(10)]
    assert all(r['success'] and r['reached_critical'] for r in perfect), perfect
    imperfect = ScriptedExpert.for_profile(profile, hole_error_sigma_mm=1.0)
    results = [run_episode(env, imperfect, seed=s, profile=profile)['success'] for s in range(30)]
    assert 0.3 <= np.mean(results) <= 0.9  # beliefs off by more than the clearance land on the rim


class OnTheRimThenSteered:
    """The scripted expert aiming 1.6 mm off the hole (its peg lands on the rim), then, once the peg has stopped
    for 5 steps, steering it towards the true hole while it pushes down: the correction a policy must be able to
    make after contact, as on the gantry."""

    def __init__(self, profile, seed):
        self.expert = ScriptedExpert.for_profile(profile)
        self.angle = np.random.default_rng(seed).uniform(0, 2 * np.pi)
        self.stopped, self.last_z = 0, None

    def reset(self, info, rng=None):
        self.expert.reset(info)
        self.hole = self.expert.believed_hole.copy()
        self.expert.believed_hole[:2] += 0.0016 * np.array([np.cos(self.angle), np.sin(self.angle)])

    def act(self, obs, info):
        z = info['peg_tip_pos'][2]
        if self.expert.descending and self.last_z is not None and abs(z - self.last_z) < 2e-4:
            self.stopped += 1
            if self.stopped == 5:
                self.expert.believed_hole = self.hole
        self.last_z = z
        return self.expert.act(obs, info)


def test_a_peg_pressed_on_the_rim_can_be_steered_into_the_hole(env):
    results = [run_episode(env, OnTheRimThenSteered(env.profile, s), seed=s, profile=env.profile) for s in range(6)]
    assert all(r['success'] for r in results), results


def test_the_arm_cell_needs_an_arm_profile_and_the_engine_the_cells_profile(env):
    with pytest.raises(ValueError, match='ee_delta'):
        ArmCellConfig.from_profile('gantry_cell')
    with pytest.raises(ValueError, match='not the simulated arm'):
        check_profile(env, replace(RobotProfile.load('ur5e_cell'), control_hz=25.0))
    check_profile(env, RobotProfile.load('ur5e_cell').with_chunks(actor_chunk_len=2, stride=1))  # not the robot's


def test_the_cameras_render_the_profiles_images():
    env = ArmPegInsertionEnv()
    obs, _ = env.reset(seed=0)
    for camera in env.profile.cameras:
        image = obs['images'][camera.name]
        assert image.shape == (camera.height, camera.width, 3) and image.dtype == np.uint8
        assert image.std() > 10  # a view of the cell, not a blank frame
    env.close()


def test_the_wrist_cameras_resolve_the_hole_clearance_and_see_the_painted_tip():
    env = ArmPegInsertionEnv()
    obs, info = env.reset(seed=0)
    tip = np.asarray(info['peg_tip_pos'])
    for camera in env.profile.cameras[1:]:
        model_camera = env.model.camera(camera.name)
        distance = np.linalg.norm(env.data.camera(camera.name).xpos - tip)
        mm_per_px = 2000 * distance * np.tan(np.radians(model_camera.fovy[0]) / 2) / camera.height
        assert mm_per_px < 0.7  # the 1 mm clearance spans more than a pixel
        image = obs['images'][camera.name].astype(int)
        band = (image[..., 2] - image[..., 0] > 50) & (image[..., 2] - image[..., 1] > 30)  # blue, not the grey table
        assert band.sum() > 20, f'{camera.name} does not see the peg tip band'
    env.close()
