"""A slow VLA in the node graph: the arbiter decides each chunk ahead of need, so once its latency estimate has
settled the robot never holds waiting for a chunk, and the recorded transitions hold what the robot executed."""

import json

import numpy as np
from conftest import write_profile
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Joy
from std_msgs.msg import String, UInt64

from rlt_bringup import embedded, graph
from rlt_bringup.tiny_models import make_tiny_models
from rlt_core.control.profile import RobotProfile
from rlt_core.control.teleop import JoyMapping
from rlt_interfaces.msg import ActionChunk, EpisodeEvent, Transition
from rlt_nodes.conversions import msg_to_chunk
from rlt_nodes.qos import EVENTS_QOS, LATCHED_QOS, STATS_QOS

PROFILE = RobotProfile.load()
C, A = PROFILE.actor_chunk_len, PROFILE.action_dim
EXTRA_LATENCY_MS = 1.3e3 * PROFILE.dt
"""Each inference takes more than a control period: deciding at the boundary, the robot would hold every chunk."""
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def executed_actions(chunks: list) -> dict:
    """The action the robot executed after each observation of an episode, by index: the rows of each chunk from
    its start step until the next chunk's (zero where none ran: a hold)."""
    chunks = sorted(chunks, key=lambda c: c.step_index)
    actions = {}
    for chunk, after in zip(chunks, [*chunks[1:], None], strict=True):
        rows = msg_to_chunk(chunk)
        end = chunk.step_index + C if after is None else min(after.step_index, chunk.step_index + C)
        for n in range(chunk.step_index, end):
            actions[n] = rows[n - chunk.step_index]
    return actions


def test_a_slow_vla_makes_the_robot_hold_only_until_the_lead_settles(processes, test_node, tmp_path):
    vla, token = make_tiny_models(tmp_path / 'models')
    # Windows every C steps: each inference takes longer than a period, and the server must keep up with them.
    short = write_profile(tmp_path / 'short.yaml', max_steps=60, stride=C)
    overrides = embedded.merge(graph.launch_overrides({'robot_profile': short}), {
        'vla_server': {'vla_path': vla, 'token_path': token, 'extra_latency_ms': EXTRA_LATENCY_MS},
        'actor': {'vla_path': vla},
        'arbiter': {'vla_path': vla, 'warmup_episodes': 1},
        'learner': {'replay_dir': str(tmp_path / 'replay'), 'batch_size': 16, 'min_transitions': 16,
                    'publish_every': 10, 'hidden': [32, 32], 'compile': False},
        'sim_human': {'rate': 0.0},
    })
    procs = {name: processes.spawn(*argv)
             for name, argv in embedded.commands(graph.nodes('sim', overrides), tmp_path / 'overrides.yaml')}
    node = test_node.node
    executed, transitions, stats, versions = [], {}, {}, []
    node.create_subscription(ActionChunk, 'rlt/executed_chunk', executed.append, RELIABLE)
    node.create_subscription(Transition, 'rlt/transitions',
                             lambda m: transitions.setdefault((m.writer_id, m.sequence), m), RELIABLE)
    node.create_subscription(String, 'rlt/episode_stats',
                             lambda m: stats.update({json.loads(m.data)['episode_id']: json.loads(m.data)}), STATS_QOS)
    node.create_subscription(UInt64, 'rlt/actor_version', lambda m: versions.append(m.data), LATCHED_QOS)
    joy = node.create_publisher(Joy, 'joy', 10)

    def enter_critical_phase(msg):  # the operator presses the phase button as each episode starts
        if msg.event == EpisodeEvent.EPISODE_START:
            for pressed in (1, 0):
                press = Joy(axes=[0.0] * 8, buttons=[0] * 12)
                press.buttons[JoyMapping.phase_button] = pressed
                joy.publish(press)
    node.create_subscription(EpisodeEvent, 'episode/events', enter_critical_phase, EVENTS_QOS)

    def fail(what):
        return what + ''.join(f'\n--- {n}\n{processes.stop(p)[-2000:]}' for n, p in procs.items())

    assert test_node.spin_until(lambda: len(stats) >= 9 and versions, timeout=300), \
        fail(f'{len(stats)} episodes, actor versions {versions[-1:]}')
    # The latency changes as the actor gets weights and the learner starts updating (the warmup episode, the next
    # ones): the lead settles after a few episodes.
    settled = sorted(stats)[-4:]

    held = {}
    for e in settled:
        chunks = [c for c in executed if c.episode_id == e]
        first = min(c.step_index for c in chunks)
        held[e] = stats[e]['steps_by_source']['hold'] - (first - 1)  # the steps at rest before the first chunk
    assert not any(held.values()), fail(f'held steps after the first chunk, by episode: {held}; leads by episode: '
                                        f'{ {e: s["lead_steps"] for e, s in sorted(stats.items())} }')
    assert any(c.source == ActionChunk.SOURCE_ACTOR for c in executed if c.episode_id in settled), \
        fail('no actor chunk executed')

    checked = 0
    for e in sorted(stats)[1:]:
        actions = executed_actions([c for c in executed if c.episode_id == e])
        for t in (t for t in transitions.values() if t.episode_id == e and not (t.done or t.truncated)):
            first = t.chunk_index * C + 1  # the window's first observation (the stride is C here)
            expected = np.stack([actions.get(n, np.zeros(A)) for n in range(first, first + C)])
            np.testing.assert_allclose(np.reshape(t.executed_chunk, (C, A)), expected, atol=1e-7)
            checked += 1
    assert checked >= 20, fail(f'{checked} transitions checked')
