import json

import numpy as np
import pytest

from rlt_core.control.profile import Camera
from rlt_core.control.sync import Latest, StampSync, check_age, check_image, check_joint_state, joint_state_in_order
from rlt_core.control.teleop import ButtonEdges, JoyMapping, action_to_axes, joy_action
from rlt_core.rl.rl_state import ProprioNormalization, rl_state
from rlt_core.rl.schedule import updates_allowed


def test_rl_state_normalises_proprio_like_the_vla(tmp_path):
    (tmp_path / 'config.json').write_text(json.dumps({'proprio_mean': [1.0, 2.0], 'proprio_std': [2.0, 4.0]}))
    norm = ProprioNormalization.from_vla_checkpoint(tmp_path)
    x = rl_state([0.5, -0.5], [3.0, 6.0], norm)
    np.testing.assert_allclose(x, [0.5, -0.5, 1.0, 1.0])
    assert x.dtype == np.float32
    with pytest.raises(ValueError):
        rl_state([0.0], [1.0, 2.0, 3.0], norm)


def test_stamp_sync_pairs_exact_and_tolerant_stamps_in_order():
    sync = StampSync(['a', 'b'])
    assert sync.add_joint_state(100, 'j100') is None
    assert sync.add_image('a', 100, 'a100') is None
    assert sync.add_image('b', 100, 'b100') == (100, 'j100', {'a': 'a100', 'b': 'b100'})
    assert sync.add_image('a', 50, 'old') is None  # never older than what was emitted
    loose = StampSync(['a'], tolerance_ns=10)
    loose.add_image('a', 195, 'a195')
    loose.add_image('a', 207, 'a207')
    assert loose.add_joint_state(205, 'j') == (205, 'j', {'a': 'a207'})
    assert loose.add_joint_state(300, 'j300') is None


def test_input_checks():
    camera = Camera('top', encoding='mono8', width=6, height=4)  # the driver publishes mono8; the VLA gets rgb8
    assert check_image('rgb8', 4, 6, 18, 72, camera) is None
    assert "'mono8' is not rgb8" in check_image('mono8', 4, 6, 6, 24, camera)
    assert 'expected 4x6 (robot profile)' in check_image('rgb8', 6, 4, 12, 72, camera)
    assert 'does not match' in check_image('rgb8', 4, 6, 18, 70, camera)
    assert 'does not match' in check_image('rgb8', 4, 6, 20, 80, camera)
    assert check_joint_state(['x', 'y'], [0, 0], [0, 0], ['y', 'x']) is None
    assert 'NaN' in check_joint_state(['x'], [float('nan')], [0], ['x'])
    assert 'lack' in check_joint_state(['x'], [0], [0], ['z'])
    assert 'positions' in check_joint_state(['x', 'y'], [0], [0, 0], ['x'])
    # A joint_state_broadcaster's message: every joint, its own order, a gripper finger among them.
    names, pos, vel = ['finger', 'y', 'x'], [0.04, 2.0, 1.0], [0.0, -2.0, -1.0]
    assert joint_state_in_order(names, pos, vel, ['x', 'y']) == ([1.0, 2.0], [-1.0, -2.0])
    with pytest.raises(ValueError, match='NaN'):
        joint_state_in_order(names, [0.0, float('inf'), 1.0], vel, ['x', 'y'])
    assert check_age(0, int(0.1e9), 0.5) is None and 'old' in check_age(0, int(1e9), 0.5)


def test_joy_mapping_deadman_axes_and_edges():
    m = JoyMapping(deadman_button=4, axes=(0, 1, 4), axis_signs=(1, -1, 1), max_delta=(0.01, 0.01, 0.002))
    axes = [0.5, 0.25, 0, 0, -2.0]
    assert joy_action([0] * 6, axes, m) is None
    np.testing.assert_allclose(joy_action([0, 0, 0, 0, 1, 0], axes, m), [0.005, -0.0025, -0.002])
    np.testing.assert_allclose(joy_action([0, 0, 0, 0, 1], action_to_axes([0.004, 0.001, -0.001], m), m),
                               [0.004, 0.001, -0.001], atol=1e-7)
    edges = ButtonEdges(m)
    assert edges.update([1, 0, 0, 0, 0, 1]) == ['phase', 'success']
    assert edges.update([1, 0, 0, 0, 0, 1]) == []
    assert edges.update([0, 1]) == ['failure']


def test_update_budget_follows_the_utd_ratio():
    assert updates_allowed(0, 10, 10, 5, min_transitions=20) == 0
    assert updates_allowed(0, 20, 20, 5, min_transitions=20) == 100
    assert updates_allowed(98, 20, 20, 5, min_transitions=20) == 2
    assert updates_allowed(120, 20, 20, 5, min_transitions=20) == 0


def test_warmup_transitions_fill_the_buffer_but_earn_no_updates():
    assert updates_allowed(0, 0, 700, 5, min_transitions=256) == 0
    assert updates_allowed(0, 3, 703, 5, min_transitions=256) == 15
    assert updates_allowed(0, 300, 300, 5, min_transitions=256) == 1500


def test_latest_keeps_the_newest_entries_and_counts_those_it_drops():
    table = Latest(2)
    for stamp in (10, 20, 30):
        table[stamp] = str(stamp)
    table[20] = 'again'  # an update keeps its place: the oldest still
    table[40] = '40'
    assert list(table.items()) == [(30, '30'), (40, '40')] and table.dropped == 2
