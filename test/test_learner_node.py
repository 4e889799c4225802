"""The learner node in its own process: it receives, stores and reports while an update runs."""

import json

import numpy as np
from conftest import HELPERS, replay_records
from std_msgs.msg import String

from rlt_core.control.profile import RobotProfile
from rlt_core.rl.replay import ChunkTransition
from rlt_interfaces.msg import Transition
from rlt_nodes.conversions import transition_to_msg
from rlt_nodes.qos import TRANSITIONS_QOS

PROFILE = RobotProfile.load()  # the learner's robot: chunks of C actions of A joints
STATE, C, A = 8, PROFILE.actor_chunk_len, PROFILE.action_dim


def transition(i: int) -> Transition:
    rng = np.random.default_rng(i)
    chunk = lambda: rng.uniform(-0.001, 0.001, (C, A)).astype(np.float32)  # noqa: E731
    return transition_to_msg(ChunkTransition(
        state=rng.standard_normal(STATE).astype(np.float32), executed_chunk=chunk(), reference_chunk=chunk(),
        rewards=np.zeros(C, np.float32), next_state=rng.standard_normal(STATE).astype(np.float32),
        next_reference_chunk=chunk(), done=False, source=1, episode_id=i // 10, chunk_index=i % 10))


def test_learner_receives_stores_and_reports_while_an_update_runs(processes, test_node, tmp_path):
    """The first update compiles for ~30 s (longer on a loaded machine) while the arbiter keeps recording:
    every transition sent meanwhile is received, reported and stored before that update ends."""
    learner = processes.python(HELPERS / 'slow_first_update_learner.py', '--ros-args',
                               '-p', f'replay_dir:={tmp_path / "replay"}', '-p', 'min_transitions:=8',
                               '-p', 'batch_size:=8', '-p', 'hidden:=[16, 16]', '-p', 'compile:=false')
    node = test_node.node
    stats = []
    node.create_subscription(String, 'rlt/learner_stats', lambda m: stats.append(json.loads(m.data)), 10)
    pub = node.create_publisher(Transition, 'rlt/transitions', TRANSITIONS_QOS)
    assert test_node.spin_until(lambda: pub.get_subscription_count() > 0 and stats, timeout=30), \
        processes.stop(learner)
    for i in range(8):
        pub.publish(transition(i))
    out = processes.read_until(learner, 'first update started', timeout=30)
    assert 'first update started' in out, out + processes.stop(learner)
    for i in range(8, 48):
        pub.publish(transition(i))
    # Within the held update (8 s): all 48 received and reported, no update finished yet.
    assert test_node.spin_until(lambda: stats[-1]['received'] == 48, timeout=5), (stats[-1], processes.stop(learner))
    assert stats[-1]['updates'] == 0 and stats[-1]['transitions'] == 48
    # Then the updates catch up on the budget (G = 5 per transition) and the replay holds every record.
    assert test_node.spin_until(lambda: stats[-1]['updates'] == 5 * 48, timeout=30), stats[-1]
    out = processes.stop(learner)
    assert learner.returncode == 0, out
    assert replay_records(tmp_path / 'replay') == 48
