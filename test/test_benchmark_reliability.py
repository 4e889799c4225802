"""The reliability benchmark's parts: the command checker, the recovery and loss figures, the fuzz messages."""

import json
import time

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from rlt_bringup.benchmark_reliability import (
    CommandChecker,
    FuzzMessages,
    hold_time,
    monotone_regressions,
    recovery_time,
    transitions_lost,
)
from rlt_core.control.profile import RobotProfile

PROFILE = RobotProfile.load()
NAMES = list(PROFILE.joint_names)
STEP = np.array(PROFILE.max_delta)
LEAD = 0.01


def walk(start, steps=4, step=None):
    """Points moving from `start` by `step` (half the per-step limit by default) per control step."""
    step = STEP / 2 if step is None else step
    return np.array([start + (k + 1) * step for k in range(steps)])


def test_checker_passes_a_command_within_limits():
    checker = CommandChecker(PROFILE, LEAD)
    measured = np.zeros(PROFILE.action_dim)
    # The first point may be up to the per-step limit plus the lead from the measured position.
    first = measured + STEP + 0.9 * LEAD
    assert checker.check(NAMES, np.vstack([first, walk(first, 3)]), [measured]) is None
    assert checker.checked == 1 and checker.outside_limits == 0


@pytest.mark.parametrize('make_points, reason', [
    (lambda m: np.vstack([walk(m, 3), [np.nan, 0.0, 0.0]]), 'non-finite command'),
    (lambda m: np.vstack([walk(m, 3), [np.inf, 0.0, 0.0]]), 'non-finite command'),
    (lambda m: walk(m, 4, step=np.array([0.004, 0.0, 0.0])) + np.array([PROFILE.joint_upper[0] - 0.012, 0, 0]),
     'a point outside the joint limits'),
    (lambda m: np.vstack([walk(m, 2), walk(m, 2)[-1] + 2 * STEP]), 'a step beyond the per-step limit'),
    (lambda m: walk(m + STEP + 2 * LEAD, 4), 'the command would start'),
])
def test_checker_flags_a_command_outside_limits(make_points, reason):
    checker = CommandChecker(PROFILE, LEAD)
    measured = np.zeros(PROFILE.action_dim)
    got = checker.check(NAMES, make_points(measured), [measured])
    assert got is not None and got.startswith(reason), got
    assert checker.outside_limits == 1 and checker.examples[0]['reason'] == got


def test_checker_flags_wrong_joint_names_and_accepts_either_measured_position():
    checker = CommandChecker(PROFILE, LEAD)
    measured, moved = np.zeros(3), np.array([0.02, 0.0, 0.0])
    assert checker.check(NAMES[::-1], walk(measured), [measured]).startswith('joint names')
    # Decided on the older of the two newest measurements: it passes.
    assert checker.check(NAMES, walk(measured), [moved, measured]) is None
    assert checker.check(NAMES, walk(measured), [moved]) is not None
    assert checker.outside_limits == 2


def test_hold_and_recovery_times():
    dt = 0.05
    chunks = [(0.0, 0.2), (0.21, 0.2), (0.42, 0.2)]  # back to back (gaps under one step), then nothing
    assert hold_time(0.3, chunks, dt) == pytest.approx(0.62)
    assert hold_time(1.0, chunks, dt) == 1.0  # already holding at the kill
    assert hold_time(0.3, chunks + [(0.9, 0.2)], dt) == pytest.approx(0.62)  # a new command after a hold
    kill_wall_ns = 10_000
    vla = [(0.35, kill_wall_ns - 1), (0.5, kill_wall_ns + 1)]  # decided before, then after the kill
    assert recovery_time(0.3, kill_wall_ns, chunks, vla, dt) == pytest.approx(0.2)
    assert recovery_time(0.3, kill_wall_ns, chunks, [], dt) == pytest.approx(0.32)


def test_monotone_regressions():
    assert monotone_regressions([1, 2, 2, 5]) == 0
    assert monotone_regressions([1, 5, 3, 6, 4]) == 2


def test_transitions_lost_reads_the_replay_from_disk(tmp_path):
    dtype = np.dtype([('episode_id', '<i8'), ('writer', '<u8'), ('sequence', '<u8')])
    records = np.array([(0, 1, 0), (0, 1, 1), (0, 1, 1), (1, 1, 2)], dtype)  # one duplicate
    records.tofile(tmp_path / 'transitions.bin')
    (tmp_path / 'layout.json').write_text(json.dumps({'descr': dtype.descr, 'itemsize': dtype.itemsize}))
    episodes = [{'episode_id': 0, 'transitions': 2}, {'episode_id': 1, 'transitions': 3},
                {'episode_id': 2, 'transitions': 1}]
    lost, by_episode = transitions_lost(episodes, tmp_path)
    assert by_episode == {1: 2, 2: 1} and lost == 0 + 2 + 1


def test_fuzz_messages_cover_every_kind_with_valid_messages():
    import rlt_interfaces.msg
    optional = ['rlt/emergency_stop'] + (['rlt/transitions_ack'] if hasattr(rlt_interfaces.msg, 'TransitionAck')
                                         else [])
    fuzzer = FuzzMessages(PROFILE, token_dim=8, seed=0, optional_topics=optional)
    pairs = fuzzer.pairs()
    seen = set()
    for item in fuzzer.messages(len(pairs)):
        msg_type = fuzzer.message_type(item.topic)
        assert isinstance(item.msg, msg_type), (item.topic, item.kind)
        deserialize_message(serialize_message(item.msg), msg_type)  # a well-formed ROS message
        seen.add((item.topic, item.kind))
    assert seen == set(pairs)
    topics = {topic for topic, _ in pairs}
    assert {'joint_states', 'rlt/observation', 'rlt/inference_request', 'rlt/rl_token', 'rlt/reference_chunk',
            'rlt/actor_chunk', 'joy',
            'episode/events', 'rlt/actor_weights', 'rlt/transitions', 'rlt/learner_stats', 'rlt/actor_version',
            'sim/privileged', f'{PROFILE.controller_name}/joint_trajectory',
            *optional, *(f'cameras/{c}/image_raw' for c in PROFILE.camera_names)} <= topics


def test_fuzz_kinds_are_what_they_say():
    fuzzer = FuzzMessages(PROFILE, token_dim=8, seed=0)
    js = fuzzer.make('joint_states', 'nan_position')
    assert np.isnan(js.position[0]) and list(js.name) == NAMES
    assert len(fuzzer.make('joint_states', 'short_positions').position) == PROFILE.action_dim - 1
    image = fuzzer.make(f'cameras/{PROFILE.camera_names[0]}/image_raw', 'short_data')
    assert len(image.data) < image.height * image.step
    assert len(fuzzer.make('rlt/rl_token', 'wrong_size').data) == 8 + 3
    chunk = fuzzer.make('rlt/actor_chunk', 'data_size_mismatch')
    assert len(chunk.data) != chunk.chunk_length * chunk.action_dim
    import hashlib
    weights = fuzzer.make('rlt/actor_weights', 'wrong_sha256')
    assert hashlib.sha256(bytes(weights.payload)).hexdigest() != weights.sha256
    for kind, problem in (('wrong_chunk_len', 'chunk_len'), ('other_profile', 'profile hash')):
        weights = fuzzer.make('rlt/actor_weights', kind)
        from rlt_core.rl.actor import unpack_weights
        actor = unpack_weights(weights.format, weights.sha256, weights.config_json, bytes(weights.payload))
        with pytest.raises(ValueError, match=problem):
            PROFILE.check_actor(actor.config)
    assert fuzzer.make('rlt/inference_request', 'zero_stamp').header.stamp.sec == 0
    assert fuzzer.make('rlt/inference_request', 'future_stamp').header.stamp.sec > time.time() + 3000
    transition = fuzzer.make('rlt/transitions', 'state_size_mismatch')
    assert len(transition.state) != len(transition.next_state)
    assert fuzzer.make('rlt/transitions', 'wrong_chunk_len').chunk_length != PROFILE.actor_chunk_len


def test_checker_without_a_fresh_measured_position_checks_all_but_the_start():
    checker = CommandChecker(PROFILE, LEAD)
    far = np.full(PROFILE.action_dim, 0.03)
    assert checker.check(NAMES, walk(far), []) is None
    assert checker.check(NAMES, np.vstack([walk(far, 2), walk(far, 2)[-1] + 2 * STEP]), []) is not None
    assert checker.start_unchecked == 2 and checker.outside_limits == 1
