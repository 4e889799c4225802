"""Tests of the peg-in-hole environment: interface, seeding, limits, cameras, hidden state."""

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

import rlt_sim
from rlt_core.control.profile import RobotProfile, profiles_dir
from rlt_sim import CAMERA_NAMES, JOINT_NAMES, PegInsertionEnv, SimConfig
from rlt_sim.cell import JOINT_RANGES_M

INFO_KEYS = {
    "success",
    "critical_phase",
    "peg_hole_offset",
    "hole_pos",
    "peg_tip_pos",
    "step",
    "instruction",
}


@pytest.fixture(scope="module")
def headless_env():
    env = PegInsertionEnv(render=False)
    yield env
    env.close()


@pytest.mark.parametrize("kwargs", [{}, {"render": False}, {"render_mode": "rgb_array"}])
def test_check_env_passes(kwargs):
    env = gym.make("rlt/PegInsertion-v0", **kwargs)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_registered_with_gymnasium():
    assert rlt_sim.ENV_ID == "rlt/PegInsertion-v0"
    env = gym.make("rlt/PegInsertion-v0", render=False, max_steps=7)
    assert isinstance(env.unwrapped, PegInsertionEnv)
    assert env.unwrapped.config.max_steps == 7
    env.reset(seed=0)
    for step in range(7):
        _, _, terminated, truncated, info = env.step(np.zeros(3, np.float32))
        assert not terminated
        assert truncated == (step == 6)
    assert info["step"] == 7
    env.close()


def test_constants_match_the_model(headless_env):
    profile = RobotProfile.load()
    assert JOINT_NAMES == profile.joint_names
    assert CAMERA_NAMES == profile.camera_names
    assert JOINT_RANGES_M == tuple(zip(profile.joint_lower, profile.joint_upper, strict=True))
    for name in JOINT_NAMES:
        assert headless_env.model.joint(name).type == 2  # mjJNT_SLIDE
    for name in CAMERA_NAMES:
        headless_env.model.camera(name)


def test_defaults_are_the_default_profile():
    profile, cfg = RobotProfile.load(), SimConfig()
    assert cfg == SimConfig.from_profile(profile) == SimConfig.from_profile("")
    assert (cfg.joint_names, cfg.camera_names, cfg.control_hz, cfg.max_steps, cfg.max_delta_m) == (
        profile.joint_names, profile.camera_names, profile.control_hz, profile.max_steps, profile.max_delta)
    assert cfg.image_size == profile.cameras[0].width == profile.cameras[0].height


def test_the_cell_is_the_robot_its_profile_describes(tmp_path):
    data = yaml.safe_load((profiles_dir() / "gantry_cell.yaml").read_text())
    data.update(name="other_cell", control_hz=25.0, episode={"max_steps": 9})
    data["joints"] = {"names": ["ax", "ay", "az"], "lower": [-0.03, -0.04, -0.05], "upper": [0.02, 0.03, 0.01]}
    data["action"].update(max_delta=[0.002, 0.003, 0.004], critical_max_delta=[0.001, 0.001, 0.001])
    data["cameras"] = [{"name": "top", "width": 32, "height": 32}, {"name": "hand", "width": 32, "height": 32}]
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(data))
    cfg = SimConfig.from_profile(str(tmp_path / "other.yaml"), clearance_mm=2.0)
    assert cfg.clearance_mm == 2.0 and cfg.substeps == 20  # 25 Hz at 2 ms
    env = PegInsertionEnv(cfg)
    for name in ("ax", "ay", "az"):
        assert env.model.joint(name).type == 2  # mjJNT_SLIDE
    np.testing.assert_allclose(env.model.jnt_range[[env.model.joint(n).id for n in ("ax", "ay", "az")]],
                               [[-0.03, 0.02], [-0.04, 0.03], [-0.05, 0.01]])
    np.testing.assert_allclose(env.action_space.high, [0.002, 0.003, 0.004])
    assert env.metadata["render_fps"] == 25.0
    obs, _ = env.reset(seed=0)
    assert set(obs["images"]) == {"top", "hand"} and obs["images"]["top"].shape == (32, 32, 3)
    env.step(np.array([1.0, -1.0, 1.0]))
    before = env.data.ctrl.copy()
    env.step(np.array([1.0, -1.0, -1.0]))
    np.testing.assert_allclose(env.data.ctrl - before, [0.002, -0.003, -0.004], atol=1e-9)
    steps = 2
    truncated = False
    while not truncated:
        truncated = env.step(np.zeros(3))[3]
        steps += 1
    assert steps == 9
    env.close()


def test_profiles_with_cameras_the_sim_cannot_render_are_refused(tmp_path):
    data = yaml.safe_load((profiles_dir() / "gantry_cell.yaml").read_text())
    data["cameras"][0].update(width=64)
    (tmp_path / "odd.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="square images of one size"):
        SimConfig.from_profile(str(tmp_path / "odd.yaml"))


def _rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    trace = [(obs, info)]
    for action in actions:
        obs, _, _, _, info = env.step(action)
        trace.append((obs, info))
    return trace


def test_same_seed_gives_identical_observations():
    actions = [np.array([0.004, -0.003, -0.005], np.float32)] * 4
    env_a, env_b = PegInsertionEnv(image_size=48), PegInsertionEnv(image_size=48)
    trace_a, trace_b = _rollout(env_a, 11, actions), _rollout(env_b, 11, actions)
    for (obs_a, info_a), (obs_b, info_b) in zip(trace_a, trace_b, strict=True):
        np.testing.assert_array_equal(obs_a["proprio"], obs_b["proprio"])
        for name in CAMERA_NAMES:
            np.testing.assert_array_equal(obs_a["images"][name], obs_b["images"][name])
        np.testing.assert_array_equal(info_a["hole_pos"], info_b["hole_pos"])
        np.testing.assert_array_equal(info_a["peg_tip_pos"], info_b["peg_tip_pos"])
    other = _rollout(env_b, 12, actions)
    assert not np.array_equal(other[0][1]["hole_pos"], trace_a[0][1]["hole_pos"])
    env_a.close()
    env_b.close()


def test_episodes_are_randomized(headless_env):
    holes, grips = [], []
    for seed in range(20):
        _, info = headless_env.reset(seed=seed)
        holes.append(info["hole_pos"][:2])
        grips.append(info["grip_offset"])
    holes, grips = np.array(holes), np.array(grips)
    cfg = headless_env.config
    assert np.all(np.abs(holes) <= cfg.hole_range_m) and holes.std(axis=0).min() > 0.005
    assert np.all(np.abs(grips) <= cfg.grip_offset_range_m) and grips.std(axis=0).min() > 0.0005


def test_actions_are_clipped_to_step_and_workspace_limits(headless_env):
    cfg = headless_env.config
    headless_env.reset(seed=0)
    before = headless_env.data.ctrl.copy()
    headless_env.step(np.array([1.0, -1.0, 0.0]))
    np.testing.assert_allclose(
        headless_env.data.ctrl - before, [cfg.max_delta_m[0], -cfg.max_delta_m[1], 0]
    )
    for _ in range(40):  # push far past the x and z limits
        headless_env.step(np.array([1.0, 0.0, 1.0]))
    x_high, z_high = JOINT_RANGES_M[0][1], JOINT_RANGES_M[2][1]
    assert headless_env.data.ctrl[0] == pytest.approx(x_high)
    assert headless_env.data.ctrl[2] == pytest.approx(z_high)
    proprio = headless_env.step(np.zeros(3))[0]["proprio"]
    assert proprio[0] == pytest.approx(x_high, abs=1e-3)
    with pytest.raises(ValueError):
        headless_env.step(np.array([np.nan, 0.0, 0.0]))


def test_observation_and_info_contents():
    env = PegInsertionEnv(image_size=40)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"proprio", "images"}
    assert obs["proprio"].shape == (6,) and obs["proprio"].dtype == np.float32
    assert INFO_KEYS <= set(info)
    assert info["peg_hole_offset"].shape == (2,) and info["peg_hole_offset"].dtype == np.float64
    assert info["instruction"] == env.instruction == "insert the peg into the hole"
    assert not info["success"] and not info["critical_phase"]
    np.testing.assert_allclose(
        info["peg_hole_offset"], info["peg_tip_pos"][:2] - info["hole_pos"][:2]
    )
    env.close()
    assert "images" not in PegInsertionEnv(render=False).observation_space.spaces


def test_images_have_configured_size_and_follow_the_peg():
    env = PegInsertionEnv(image_size=64)
    obs, _ = env.reset(seed=5)
    for name in CAMERA_NAMES:
        image = obs["images"][name]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5  # not a blank frame
    for _ in range(3):
        moved, *_ = env.step(np.array([0.005, 0.005, -0.005]))
    for name in CAMERA_NAMES:
        changed = np.abs(moved["images"][name].astype(int) - obs["images"][name]).mean()
        assert changed > 1.0, name
    env.close()


def test_grip_offset_is_hidden_from_proprio_but_seen_by_cameras():
    env = PegInsertionEnv(image_size=64)
    actions = [np.array([0.003, 0.0, -0.004], np.float32)] * 3
    traces = []
    for grip in ([0.0, 0.0], [0.003, -0.003]):
        obs, info = env.reset(seed=7, options={"grip_offset": grip})
        trace = [(obs, info)] + [env.step(a)[::4] for a in actions]
        traces.append(trace)
    for (obs_a, info_a), (obs_b, info_b) in zip(*traces, strict=True):
        # The offset shifts the peg's weight a little, so proprio may differ by far less than it.
        np.testing.assert_allclose(obs_a["proprio"], obs_b["proprio"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            info_b["peg_tip_pos"][:2] - info_a["peg_tip_pos"][:2], [0.003, -0.003], atol=1e-4
        )
        for name in ("wrist_left", "wrist_right"):
            assert not np.array_equal(obs_a["images"][name], obs_b["images"][name])
    env.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"clearance_mm": 0.0},
        {"clearance_mm": -1.0},
        {"clearance_mm": 6.0},
        {"image_size": 0},
        {"image_size": 96.5},
        {"max_delta_m": 0.0},
        {"max_delta_m": (0.005, 0.005)},
        {"joint_names": ("a", "b")},
        {"joint_ranges_m": ((0.1, -0.1), (-0.06, 0.06), (-0.07, 0.04))},
        {"camera_names": ()},
        {"camera_names": ("a", "b", "c", "d")},
        {"max_steps": 0},
        {"control_hz": 1000.0},
        {"hole_range_m": -0.01},
        {"insert_depth_m": 0.05},
        {"critical_radius_m": float("nan")},
    ],
)
def test_config_validation_raises(bad):
    with pytest.raises(ValueError):
        SimConfig(**bad)


def test_config_is_frozen_and_substeps_follow_rates():
    cfg = SimConfig()
    with pytest.raises(AttributeError):
        cfg.clearance_mm = 2.0
    assert cfg.substeps == 25
    assert SimConfig(control_hz=50.0).substeps == 10


def test_control_rate_must_be_a_whole_number_of_timesteps():
    with pytest.raises(ValueError, match="whole number"):
        SimConfig(control_hz=30.0)
    assert SimConfig(control_hz=30.0, timestep_s=1 / 600).substeps == 20
