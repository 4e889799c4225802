"""A learner killed (SIGKILL) and restarted on its replay_dir resumes its checkpoint: every transition reloaded,
its updates resumed, and the first weights it publishes are the checkpoint's actor, newer than all before."""

import json
import os
import signal
import sys

from conftest import replay_records
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from test_learner_node import PROFILE, STATE, transition

from rlt_core.rl.actor import Actor, pack_weights
from rlt_core.rl.checkpoint import Checkpoints
from rlt_interfaces.msg import ActorWeights, Transition
from rlt_nodes.qos import TRANSITIONS_QOS

HIDDEN = [16, 16]
META = {'state_dim': STATE, 'chunk_len': PROFILE.actor_chunk_len, 'action_dim': PROFILE.action_dim,
        'profile_hash': PROFILE.hash, 'hidden': HIDDEN, 'critic_layer_norm': True}
# Every weights message, however fast they come (the learner's own writer keeps the last one for late readers).
ALL_WEIGHTS_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)


def checkpoint_actor_sha256(replay_dir) -> tuple[int, str]:
    """The updates and the packed actor's SHA-256 of the newest checkpoint in `replay_dir`."""
    state = Checkpoints(replay_dir, META).load()['learner']
    actor = Actor(PROFILE.actor_config(STATE, hidden=tuple(HIDDEN)))
    actor.load_state_dict(state['actor'])
    return state['num_updates'], pack_weights(actor)['sha256']


def test_learner_killed_resumes_its_checkpoint_and_republishes_its_actor(processes, test_node, tmp_path):
    replay_dir = tmp_path / 'replay'

    def start(*params):
        args = ['replay_dir:=' + str(replay_dir), 'min_transitions:=8', 'batch_size:=8', f'hidden:={HIDDEN}',
                'compile:=false', 'utd_ratio:=5', *params]
        return processes.spawn(sys.executable, '-u', '-m', 'rlt_nodes.learner', '--ros-args',
                               *[a for p in args for a in ('-p', p)])

    node = test_node.node
    stats, weights = [], []
    node.create_subscription(String, 'rlt/learner_stats', lambda m: stats.append(json.loads(m.data)), 10)
    node.create_subscription(ActorWeights, 'rlt/actor_weights', weights.append, ALL_WEIGHTS_QOS)
    pub = node.create_publisher(Transition, 'rlt/transitions', TRANSITIONS_QOS)

    # Checkpoints at 70, 140, 210 updates; weights every 10: the last published (240) is newer than the checkpoint.
    learner = start('publish_every:=10', 'checkpoint_every:=70')
    assert test_node.spin_until(lambda: pub.get_subscription_count() > 0 and stats, timeout=30), \
        processes.stop(learner)
    for i in range(48):
        pub.publish(transition(i))
    done = lambda: stats and stats[-1]['updates'] == 5 * 48 and stats[-1]['checkpoint_updates'] == 210 \
        and stats[-1]['transitions'] == 48 and weights and weights[-1].version == stats[-1]['weights_version']  # noqa: E731
    assert test_node.spin_until(done, timeout=60), (stats[-1:], len(weights), processes.stop(learner))
    before = [w.version for w in weights]
    assert len(before) == 24 and before == sorted(set(before))

    os.kill(learner.pid, signal.SIGKILL)
    learner.wait(10)
    assert learner.returncode == -signal.SIGKILL
    assert replay_records(replay_dir) == 48
    updates, sha256 = checkpoint_actor_sha256(replay_dir)
    assert updates == 210 and sha256 != weights[-1].sha256  # the checkpoint's actor is not the last published

    # Restarted: no publication but the re-published checkpoint (publish_every beyond its remaining updates).
    stats.clear()
    n_before = len(weights)
    learner = start('publish_every:=100000', 'checkpoint_every:=70')
    assert test_node.spin_until(lambda: pub.get_subscription_count() > 0 and stats, timeout=30), \
        processes.stop(learner)
    pub.publish(transition(48))  # the first transition sets the learner up (its state_dim)
    assert test_node.spin_until(lambda: len(weights) > n_before, timeout=30), processes.stop(learner)
    first = weights[n_before]
    assert first.version > max(before)
    assert first.sha256 == sha256, 'the first weights after the restart are not the checkpoint\'s actor'
    # Every transition reloaded; the updates go on from the checkpoint's to the budget, 5 per transition.
    assert test_node.spin_until(lambda: stats[-1]['transitions'] == 49 and stats[-1]['updates'] == 5 * 49,
                                timeout=30), (stats[-1], processes.stop(learner))
    assert len(weights) == n_before + 1
    out = processes.stop(learner)
    assert learner.returncode == 0, out
    assert '48 transitions loaded' in out and 'resumed checkpoint' in out, out
    # Stopped cleanly: the last checkpoint is written as it stops.
    assert checkpoint_actor_sha256(replay_dir)[0] == 5 * 49
    assert replay_records(replay_dir) == 49
