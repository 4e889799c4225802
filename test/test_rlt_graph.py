"""The whole sim graph in separate processes: online RL episodes, takeover, learner crash, a late learner.

One run (short episodes, 1 warmup episode, a tiny learner batch) checks in order: the graph's
topics close; transitions reach the learner and are persisted (the warmup episode's earn no
updates); weights reach the actor and its version increments; a joystick takeover makes the
executed source human with the stored reference equal to the executed chunk; after the learner
crashes, the actor keeps refining on its last weights; once it restarts, every transition of every reported
episode is in its replay exactly once; every command stays within the joint and per-step limits.
"""

import json
import os
import re
import signal
import sys
import time

import numpy as np
import pytest
from conftest import replay_file, replay_records, write_profile
from rclpy.qos import QoSCompatibility, QoSProfile, ReliabilityPolicy, qos_check_compatible
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String, UInt64
from trajectory_msgs.msg import JointTrajectory

from rlt_bringup import embedded, graph
from rlt_bringup.tiny_models import make_tiny_models
from rlt_core.control.profile import RobotProfile
from rlt_interfaces.msg import ActionChunk, EpisodeEvent, Transition
from rlt_nodes.qos import EVENTS_QOS, LATCHED_QOS, STATS_QOS

PROFILE = RobotProfile.load()
"""The graph's robot: the default profile (with shorter episodes in these tests)."""
LOW, HIGH, MAX_DELTA = np.array(PROFILE.joint_lower), np.array(PROFILE.joint_upper), np.array(PROFILE.max_delta)
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
IGNORED_TOPICS = {'/parameter_events', '/rosout', '/rlt/emergency_stop'}
"""Subscribed topics no graph node publishes: ROS's own, and the emergency stop (a button or safety system)."""
C = PROFILE.actor_chunk_len


def shm_files():
    return {f for f in os.listdir('/dev/shm') if f.startswith('fastdds')} if os.path.isdir('/dev/shm') else set()


def left_by_unclosed_participants(files: set) -> set:
    """The shared-memory files that only a participant which never closed leaves: its segment
    (fastdds_<GUID prefix>) and the listener locks of its segment and ports (*_el). A bare port file
    (fastdds_port<N>) is not among them: a sender re-creates the port of a peer that closed a moment
    before it did, and Fast DDS checks and reuses such a port on its next open."""
    return {f for f in files if f.endswith('_el') or not f.startswith('fastdds_port')}


@pytest.fixture
def sim_graph(processes, tmp_path):
    vla, token = make_tiny_models(tmp_path / 'models')
    short = write_profile(tmp_path / 'short.yaml', max_steps=40)
    overrides = embedded.merge(graph.launch_overrides({'robot_profile': short}), {
        'vla_server': {'vla_path': vla, 'token_path': token},
        'actor': {'vla_path': vla},
        'arbiter': {'vla_path': vla, 'warmup_episodes': 1},
        'learner': {'replay_dir': str(tmp_path / 'replay'), 'batch_size': 16, 'min_transitions': 16,
                    'publish_every': 10, 'hidden': [32, 32]},
        'sim_human': {'rate': 0.0},  # the test is the human here
    })
    specs = graph.nodes('sim', overrides)
    procs = {name: processes.spawn(*argv) for name, argv in
             embedded.commands(specs, tmp_path / 'overrides.yaml')}
    return procs, tmp_path


def test_online_rl_graph_takeover_and_learner_crash(sim_graph, processes, test_node):
    procs, tmp_path = sim_graph
    learner_argv = procs['learner'].args
    node = test_node.node
    traj, executed, transitions, versions, events, joints, actor_chunks = [], [], [], [], [], [], []
    stats, learner_stats = [], []
    node.create_subscription(JointTrajectory, 'gantry_controller/joint_trajectory', traj.append, 100)
    node.create_subscription(ActionChunk, 'rlt/executed_chunk', executed.append, RELIABLE)
    node.create_subscription(ActionChunk, 'rlt/actor_chunk', actor_chunks.append, RELIABLE)
    node.create_subscription(Transition, 'rlt/transitions', transitions.append, RELIABLE)
    node.create_subscription(UInt64, 'rlt/actor_version', lambda m: versions.append(m.data), LATCHED_QOS)
    node.create_subscription(JointState, 'joint_states', joints.append, 100)
    # Latched (the last 100): the warmup episode's line can be published before this node is discovered.
    node.create_subscription(String, 'rlt/episode_stats', lambda m: stats.append(json.loads(m.data)), STATS_QOS)
    node.create_subscription(String, 'rlt/learner_stats', lambda m: learner_stats.append(json.loads(m.data)), 10)
    joy = node.create_publisher(Joy, 'joy', 10)

    def press(buttons=(), axes=None):
        msg = Joy(buttons=[0] * 8, axes=axes or [0.0] * 8)
        for b in buttons:
            msg.buttons[b] = 1
        msg.header.stamp = node.get_clock().now().to_msg()
        joy.publish(msg)

    # The operator enters the critical phase once per episode. A press can reach the arbiter before
    # the episode's start does (and be undone by it): the arbiter's PHASE_ENTER_CRITICAL echo carries
    # the episode it applied to, so the press is repeated until the echo names the current episode.
    phase = {'episode': None, 'critical': False, 'pressed': 0.0, 'takeover': False}

    def toggle_phase():
        phase['pressed'] = time.monotonic()
        press([5])
        press([])

    def on_event(msg):
        events.append(msg)
        if msg.event == EpisodeEvent.EPISODE_START:
            phase.update(episode=msg.episode_id, critical=False)
            toggle_phase()
        elif msg.event == EpisodeEvent.PHASE_ENTER_CRITICAL and msg.detail == 'human':
            phase['critical'] = phase['critical'] or msg.episode_id == phase['episode']

    def keep_phase():
        if (phase['episode'] is not None and not phase['critical'] and not phase['takeover']
                and time.monotonic() - phase['pressed'] > 0.5):
            toggle_phase()
    node.create_subscription(EpisodeEvent, 'episode/events', on_event, EVENTS_QOS)
    node.create_timer(0.1, keep_phase)

    def fail(what):
        out = {name: processes.stop(p)[-3000:] for name, p in procs.items()}
        return f'{what}\n' + '\n'.join(f'--- {n}\n{o}' for n, o in out.items())

    # 1. Episodes run, transitions reach the learner, weights reach the actor and get newer. The learner's
    # first update compiles its two graphs: ~30 s on a quiet machine, over 90 s beside other work.
    assert test_node.spin_until(lambda: len(set(versions)) >= 2 and len(stats) >= 2, timeout=240), \
        fail(f'versions {versions[-3:]}, episodes {len(stats)}, transitions {len(transitions)}')
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert stats[0]['warmup'] and not stats[1]['warmup']
    assert any(s['critical_steps'] > 0 and s['transitions'] > 0 for s in stats)
    assert all(t.critical_phase and t.chunk_length == C and t.action_dim == 3 for t in transitions)

    # Topics close: every topic a graph node subscribes has a publisher among the graph's nodes.
    names = {s.name for s in graph.nodes('sim')}
    published = {t for n in names for t, _ in node.get_publisher_names_and_types_by_node(n, '/')}
    for n in names:
        subscribed = {t for t, _ in node.get_subscriber_names_and_types_by_node(n, '/')} - IGNORED_TOPICS
        assert subscribed <= published, f'{n} subscribes {sorted(subscribed - published)} that no node publishes'
    # QoS agree (rlt_nodes/qos.py): every subscription matches every publisher of its topic.
    for topic in published:
        for sub in (s for s in node.get_subscriptions_info_by_topic(topic) if s.node_name in names):
            for pub in (p for p in node.get_publishers_info_by_topic(topic) if p.node_name in names):
                compatible, why = qos_check_compatible(pub.qos_profile, sub.qos_profile)
                assert compatible != QoSCompatibility.ERROR, f'{topic}: {pub.node_name} -> {sub.node_name}: {why}'

    # 2. The actor drives in the critical phase once it has weights (after the warmup episode).
    assert test_node.spin_until(lambda: any(e.source == ActionChunk.SOURCE_ACTOR for e in executed), timeout=30), \
        fail('no actor chunk executed')

    # 3. Takeover: hold the dead-man (LB) and push z down for a second.
    n_exec = len(executed)
    n_trans = len(transitions)
    # Take over at the start of an episode's critical phase (transitions are recorded only there).
    current = phase['episode']
    assert test_node.spin_until(lambda: phase['episode'] != current and phase['critical'], timeout=15), \
        fail('no critical phase entered')
    phase['takeover'] = True  # the dead-man stays held: no phase presses in between
    for _ in range(20):
        press([4], axes=[0.0, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0])
        test_node.spin_until(lambda: False, timeout=0.05)
    press([])
    phase['takeover'] = False
    human = [e for e in executed[n_exec:] if e.source == ActionChunk.SOURCE_HUMAN]
    assert human, fail('takeover did not change the executed source')
    np.testing.assert_allclose(np.frombuffer(human[0].data, np.float32).reshape(C, 3)[0], [0, 0, -0.0025],
                               atol=1e-6)
    assert test_node.spin_until(lambda: any(t.intervention for t in transitions[n_trans:]), timeout=20), \
        fail('no intervention transition')
    for t in transitions:
        if t.intervention:
            assert t.source == ActionChunk.SOURCE_HUMAN
            np.testing.assert_array_equal(np.asarray(t.reference_chunk), np.asarray(t.executed_chunk))

    # 4. Persisted: every transition the learner received is a record in its replay file. (This node also sees
    # those sent again while the learner was not yet acknowledging: each counts once.)
    sent = {(t.writer_id, t.sequence) for t in transitions}
    assert test_node.spin_until(lambda: learner_stats and learner_stats[-1]['received'] >= len(sent) > 0,
                                timeout=30), fail('the learner did not report every transition')
    assert replay_records(tmp_path / 'replay') >= learner_stats[-1]['received'] and learner_stats[-1]['updates'] > 0
    # The warmup episode's transitions are flagged: they fill the replay but earn no updates (G = 5 per
    # later transition). The first transitions may go out before this node has discovered the arbiter.
    warmup_id = stats[0]['episode_id']
    assert all(t.warmup == (t.episode_id == warmup_id) for t in transitions)
    last = learner_stats[-1]
    assert 0 < last['learning_transitions'] <= last['transitions']
    assert last['updates'] <= 5 * last['learning_transitions']

    # 5. The learner crashes (SIGKILL: nothing of it runs after the signal).
    processes.kill(procs['learner'])
    assert procs['learner'].returncode == -signal.SIGKILL
    test_node.spin_until(lambda: False, timeout=1.0)  # weights still in flight arrive
    last_version = versions[-1]
    n_actor, n_traj = len(actor_chunks), len(traj)
    assert test_node.spin_until(lambda: len(actor_chunks) >= n_actor + 5 and len(traj) >= n_traj + 5, timeout=30), \
        fail('the actor stopped after the learner')
    assert versions[-1] == last_version
    assert procs['actor'].poll() is None and procs['arbiter'].poll() is None

    # 6. The learner restarts: what the arbiter recorded meanwhile, and what the killed learner had received but
    # not yet stored, reaches the replay; every transition of every reported episode is stored exactly once.
    ended_before = len(stats)
    assert test_node.spin_until(lambda: len(stats) >= ended_before + 1, timeout=60), fail('no episode ended')
    procs['learner'] = processes.spawn(*learner_argv)
    assert test_node.spin_until(lambda: len(stats) >= ended_before + 2, timeout=60), fail('no episode ended')
    reported = {s['episode_id']: s['transitions'] for s in stats}

    def stored():
        records = replay_file(tmp_path / 'replay')
        return {e: int(np.sum(records['episode_id'] == e)) for e in reported}, records
    assert test_node.spin_until(lambda: stored()[0] == reported, timeout=60), \
        fail(f'reported {reported}, stored {stored()[0]}')
    records = stored()[1]
    assert len({(int(r['writer']), int(r['sequence'])) for r in records}) == len(records)  # none twice

    # Every command of the run stayed within the joint limits and the per-step limits.
    for msg in traj:
        assert tuple(msg.joint_names) == PROFILE.joint_names
        points = np.array([p.positions for p in msg.points])
        assert points.shape in ((C, 3), (1, 3))  # a chunk, or a hold where one was cut short
        assert np.all(points >= LOW - 1e-9) and np.all(points <= HIGH + 1e-9)
        assert np.all(np.abs(np.diff(points, axis=0)) <= MAX_DELTA + 1e-9)

    # Everything stops cleanly on SIGINT. (Shared-memory files are checked in the runner test: this
    # process's own participant keeps the nodes' port segments open until the test node closes.)
    for name, proc in procs.items():
        out = processes.stop(proc)
        assert proc.returncode == 0, f'{name} exited with {proc.returncode}:\n{out[-2000:]}'


def test_transitions_recorded_before_the_learner_starts_are_stored(processes, test_node, tmp_path):
    """The learner may come up after the arbiter has recorded (a slow start, a restart): what was recorded
    while nothing subscribed to rlt/transitions is held and reaches the learner once it is up, none lost.
    The episode reports, latched with history, reach a subscriber that joins after the episodes ended. The
    committed models drive (they reach the critical phase, where transitions are recorded; the tiny ones
    do not)."""
    short = write_profile(tmp_path / 'short.yaml', max_steps=60)
    overrides = embedded.merge(graph.launch_overrides({'robot_profile': short}), {
        'arbiter': {'warmup_episodes': 1},
        'learner': {'replay_dir': str(tmp_path / 'replay'), 'batch_size': 16, 'min_transitions': 16,
                    'publish_every': 10, 'hidden': [32, 32], 'compile': False},
        'sim_human': {'rate': 1.0},
        'episode_manager': {'episodes': 2},
    })
    specs = graph.nodes('sim', overrides)
    graph_procs = [processes.spawn(*argv) for _, argv in
                   embedded.commands([s for s in specs if s.name != 'learner'], tmp_path / 'overrides.yaml')]
    node = test_node.node
    ended = []
    node.create_subscription(UInt64, 'rlt/episode_count', lambda m: ended.append(m.data), LATCHED_QOS)
    assert test_node.spin_until(lambda: ended and ended[-1] == 2, timeout=150), \
        '\n'.join(processes.stop(p)[-2000:] for p in graph_procs)

    # Only now does anything subscribe to the episode reports and the transitions.
    stats, learner_stats = [], []
    node.create_subscription(String, 'rlt/episode_stats', lambda m: stats.append(json.loads(m.data)), STATS_QOS)
    node.create_subscription(String, 'rlt/learner_stats', lambda m: learner_stats.append(json.loads(m.data)), 10)
    assert test_node.spin_until(lambda: len(stats) >= 2, timeout=30), stats

    def recorded():  # every episode the arbiter reported (the latched history may still be arriving)
        return sum(s['transitions'] for s in stats)
    assert recorded() > 0, stats
    [(_, learner_argv)] = embedded.commands([s for s in specs if s.name == 'learner'],
                                            tmp_path / 'learner_overrides.yaml')
    learner = processes.spawn(*learner_argv)
    assert test_node.spin_until(lambda: learner_stats and learner_stats[-1]['received'] == recorded(), timeout=60), \
        (recorded(), stats, learner_stats[-1:], processes.stop(learner)[-2000:])
    out = processes.stop(learner)
    assert learner.returncode == 0, out
    assert replay_records(tmp_path / 'replay') == recorded()


@pytest.mark.parametrize('how', ['ctrl-c', 'sigterm'])
def test_runner_stops_cleanly_on_sigint(processes, tmp_path, how):
    """./rlt run: Ctrl-C (SIGINT to the group) or a SIGTERM to the runner alone (`kill`, `timeout`) stops the
    graph, writes the summary, leaves no process behind."""
    vla, token = make_tiny_models(tmp_path / 'models')
    shm_before = shm_files()
    runner = processes.spawn(sys.executable, '-m', 'rlt_bringup.embedded', '--episodes', '2', '--output',
                             str(tmp_path / 'run'), '--vla', vla, '--token', token,
                             '--robot-profile', write_profile(tmp_path / 'short.yaml', max_steps=20),
                             '--set', 'arbiter.warmup_episodes=1',
                             '--set', 'sim_human.rate=1.0')
    before = processes.read_until(runner, 'episode 1/2', timeout=240)
    assert 'episode 1/2' in before, before
    if how == 'ctrl-c':
        os.killpg(runner.pid, signal.SIGINT)
    else:
        os.kill(runner.pid, signal.SIGTERM)
    runner.wait(timeout=60)
    rest = runner.stdout.read()
    for name in re.findall(r'rlt: (\w+) did not stop', rest):  # its threads' stacks, dumped before the SIGKILL
        rest += f'\n--- {name}.log:\n' + (tmp_path / 'run' / 'logs' / f'{name}.log').read_text()[-6000:]
    assert runner.returncode == 0, before + rest
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert summary['episodes'] >= 1 and {'steps_by_source', 'learner_q'} <= set(summary['per_episode'][0])
    assert (tmp_path / 'run' / 'learning_curve.png').exists()
    assert not left_by_unclosed_participants(shm_files() - shm_before), before + rest
    for log in (tmp_path / 'run' / 'logs').glob('*.log'):  # no node died with a traceback on the way out
        assert 'Traceback' not in log.read_text(), f'{log.name}:\n{log.read_text()[-2000:]}'
