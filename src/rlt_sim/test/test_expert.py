"""Tests of the scripted expert, the physical 1 mm clearance and the benchmark entry point."""

import numpy as np
import pytest

from rlt_core.control.profile import RobotProfile
from rlt_sim import IMPERFECT_SIGMA_MM, PegInsertionEnv, ScriptedExpert, benchmark, run_episode
from rlt_sim.episode import run_engine_episode


@pytest.fixture(scope="module")
def env():
    env = PegInsertionEnv(render=False)
    yield env
    env.close()


def run_with_belief_error(env, seed, error_xy_m):
    """Run the expert with a fixed error in its believed hole position; return the trace."""
    obs, info = env.reset(seed=seed)
    expert = ScriptedExpert()
    believed = dict(info, hole_pos=info["hole_pos"] + [*error_xy_m, 0.0])
    expert.reset(believed)
    infos = [info]
    for _ in range(env.config.max_steps):
        action = expert.act(obs, info)
        assert np.all(np.abs(action) <= np.asarray(env.config.max_delta_m) + 1e-9)
        obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        if terminated or truncated:
            break
    return infos


def test_perfect_expert_succeeds(env):
    for seed in range(6):
        result = run_episode(env, ScriptedExpert(), seed=seed)
        assert result["success"], seed
        assert result["reached_critical"] and 0 < result["critical_steps"] <= result["steps"]
        assert result["steps"] < env.config.max_steps


@pytest.mark.parametrize("error_xy_m", [(0.003, 0.0), (-0.0021, 0.0021), (0.0, -0.0015)])
def test_belief_error_beyond_clearance_jams_on_the_rim(env, error_xy_m):
    infos = run_with_belief_error(env, seed=2, error_xy_m=error_xy_m)
    final = infos[-1]
    assert not final["success"]
    assert len(infos) - 1 == env.config.max_steps  # truncated, never inserted
    assert final["critical_phase"]
    # The peg rests on the rim at the believed position; it neither searches nor sinks in.
    np.testing.assert_allclose(final["peg_hole_offset"], error_xy_m, atol=3e-4)
    lowest = min(i["peg_tip_pos"][2] - i["hole_pos"][2] for i in infos)
    assert lowest > -0.001


def test_belief_error_within_clearance_still_inserts(env):
    infos = run_with_belief_error(env, seed=2, error_xy_m=(0.0007, -0.0007))
    assert infos[-1]["success"]


def test_wider_clearance_admits_the_same_error():
    wide = PegInsertionEnv(render=False, clearance_mm=3.5)
    infos = run_with_belief_error(wide, seed=2, error_xy_m=(0.003, 0.0))
    assert infos[-1]["success"]
    wide.close()


def test_imperfect_expert_fails_in_the_critical_phase(env):
    results = [
        run_episode(env, ScriptedExpert(hole_error_sigma_mm=IMPERFECT_SIGMA_MM), seed=seed)
        for seed in range(30)
    ]
    success = np.mean([r["success"] for r in results])
    assert 0.2 <= success <= 0.8
    assert all(r["reached_critical"] for r in results)


def test_expert_belief_error_is_seeded():
    info = {"hole_pos": np.array([0.01, -0.02, 0.05])}
    a, b = ScriptedExpert(hole_error_sigma_mm=2.0), ScriptedExpert(hole_error_sigma_mm=2.0)
    a.reset(info, 5)
    b.reset(info, 5)
    np.testing.assert_array_equal(a.believed_hole, b.believed_hole)
    assert np.linalg.norm(a.hole_error) > 0
    perfect = ScriptedExpert(rng=0)
    perfect.reset(info)
    np.testing.assert_array_equal(perfect.believed_hole, info["hole_pos"])
    with pytest.raises(ValueError):
        ScriptedExpert(hole_error_sigma_mm=-1.0)


def test_run_episode_accepts_a_plain_function(env):
    result = run_episode(env, lambda obs, info: np.zeros(3, np.float32), seed=0)
    assert result == {
        "success": False,
        "steps": env.config.max_steps,
        "critical_steps": 0,
        "reached_critical": False,
    }


def test_benchmark_runs_on_a_tiny_budget(capsys):
    benchmark.main(["--episodes", "2", "--sigmas", "3", "--speed-steps", "10", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "steps/s, no rendering" in out and "3 cameras at 96px" in out
    assert "perfect expert" in out and "sigma 3 mm" in out


def test_through_the_engine_the_expert_executes_its_own_actions(env):
    """The engine (per-step and critical-phase limits, as on the robot) passes the expert's actions unchanged: the
    demonstrations are what the robot would execute."""
    profile = RobotProfile.load()
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        expert = ScriptedExpert(hole_error_sigma_mm=IMPERFECT_SIGMA_MM)
        expert.reset(info, seed)
        executed = []
        result = run_engine_episode(env, profile, obs, info, operator=expert.act,
                                    on_step=lambda obs, info, action, *_, out=executed: out.append(action))
        obs, info = env.reset(seed=seed)
        expert.reset(info, seed)
        own = []
        for _ in executed:
            own.append(expert.act(obs, info))
            obs, _, _, _, info = env.step(own[-1])
        np.testing.assert_array_equal(executed, own)
        assert result["steps"] == len(executed) and result["success"] == info["success"]


def test_the_engine_limits_what_an_operator_asks(env):
    profile = RobotProfile.load()
    obs, info = env.reset(seed=0)
    expert = ScriptedExpert()
    expert.reset(info, 0)
    steps = []
    run_engine_episode(env, profile, obs, info, operator=lambda o, i: 4 * expert.act(o, i),  # too fast
                       on_step=lambda obs, info, action, *_: steps.append((info["critical_phase"], action)))
    for critical, action in steps:
        limit = profile.critical_max_delta if critical else profile.max_delta
        assert np.all(np.abs(action) <= np.asarray(limit) + 1e-7)
    assert any(critical for critical, _ in steps) and max(abs(a[0]) for _, a in steps) > 0.004
