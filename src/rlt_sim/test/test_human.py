import numpy as np
import pytest

from rlt_sim import PegInsertionEnv, ScriptedExpert
from rlt_sim.human import SimulatedHuman


def _jam_then_hand_over(rate, seed=0):
    env = PegInsertionEnv(render=False)
    obs, info = env.reset(seed=seed)
    robot = ScriptedExpert(0.0)
    robot.reset(info)
    robot.believed_hole[:2] += 0.003  # 3 mm off: it jams on the rim
    human = SimulatedHuman(rate=rate, patience=10)
    human.reset(info)
    took_over_at = None
    for step in range(200):
        if human.wants_control(info):
            took_over_at = took_over_at or step
            action = human.act(obs, info)
        else:
            action = robot.act(obs, info)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return took_over_at, info['success']


def test_attentive_human_takes_over_a_jam_and_inserts():
    took_over_at, success = _jam_then_hand_over(rate=1.0)
    assert took_over_at is not None and success


def test_inattentive_human_lets_it_fail():
    took_over_at, success = _jam_then_hand_over(rate=0.0)
    assert took_over_at is None and not success


def test_rate_is_the_fraction_of_attentive_episodes():
    human = SimulatedHuman(rate=0.3, seed=1)
    info = {'hole_pos': np.zeros(3), 'peg_tip_pos': np.zeros(3)}
    attentive = []
    for _ in range(2000):
        human.reset(info)
        attentive.append(human.attentive)
    assert abs(np.mean(attentive) - 0.3) < 0.03
    with pytest.raises(ValueError):
        SimulatedHuman(rate=1.5)
