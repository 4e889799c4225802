"""The recorder on real processes: the sim robot driven by the arbiter, an operator on the joystick, the recorder
beside them. Its dataset matches what the graph published and reads with `load_demos` and Hugging Face
`datasets`; its MCAP file decodes with mcap-ros2-support to the messages published; killed with SIGKILL it keeps
every episode it wrote, and restarted on the same folder it appends."""

import json
import os
import time
from pathlib import Path

import numpy as np
from conftest import write_profile
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String

from rlt_core.control.profile import RobotProfile
from rlt_core.control.teleop import JoyMapping
from rlt_core.data.lerobot import load_demos
from rlt_core.data.mcap_log import read_messages
from rlt_core.models.rl_token import RLTokenModel
from rlt_core.models.vla.pi0 import Pi0Backbone
from rlt_interfaces.msg import ActionChunk, EpisodeEvent, InferenceRequest, Observation, RLToken
from rlt_nodes.conversions import as_numpy, stamp_ns
from rlt_nodes.qos import CHUNK_QOS, EVENTS_QOS, OBSERVATION_QOS, REQUEST_QOS, STATS_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
MAPPING = JoyMapping()


def _executable(package, name):
    return os.path.join(INSTALL, package, 'lib', package, name)


class Cell:
    """sim_robot + arbiter (operator episodes, vla_path none: only the joystick drives) + the recorder, and the test's
    view of the graph: joint states, executed chunks, events and episode stats as published."""

    def __init__(self, processes, test_node, tmp_path):
        self.processes, self.test_node, self.output = processes, test_node, tmp_path / 'recording'
        self.profile = write_profile(tmp_path / 'cell.yaml', image_size=32, max_steps=100_000)
        common = ['--ros-args', '-p', f'robot_profile:={self.profile}']
        processes.spawn(_executable('rlt_sim_nodes', 'sim_robot'), *common)
        self.recorder = self.start_recorder()
        self.arbiter = processes.spawn(_executable('rlt_nodes', 'arbiter'), *common, '-p', 'vla_path:=none',
                                       '-p', 'episode_source:=operator')
        node = test_node.node
        self.joints, self.chunks, self.events, self.stats = {}, [], [], {}
        node.create_subscription(JointState, 'joint_states', lambda m: self.joints.update({stamp_ns(m.header): m}),
                                 100)
        node.create_subscription(ActionChunk, 'rlt/executed_chunk', self.chunks.append, CHUNK_QOS)
        node.create_subscription(EpisodeEvent, 'episode/events', self.events.append, EVENTS_QOS)
        node.create_subscription(String, 'rlt/episode_stats', self.on_stats, STATS_QOS)
        self.joy = node.create_publisher(Joy, 'joy', 10)
        assert test_node.spin_until(lambda: self.joints and self.joy.get_subscription_count(), timeout=60), \
            self.fail('graph not up')
        self.begin()

    def begin(self):
        """End the episode the arbiter started on its first joint state (before the test and the recorder may have
        listened) and wait until the next one starts."""
        seen, deadline = len(self.events), time.monotonic() + 30
        while not any(e.event == EpisodeEvent.EPISODE_START for e in self.events[seen:]):
            assert time.monotonic() < deadline, self.fail('no operator episode')
            self.press(MAPPING.failure_button)
            self.test_node.spin_until(lambda: False, timeout=0.5)

    def start_recorder(self):
        recorder = self.processes.spawn(_executable('rlt_nodes', 'recorder'), '--ros-args', '-p',
                                        f'robot_profile:={self.profile}', '-p', f'output:={self.output}',
                                        '-p', 'episode_source:=operator', '-p', 'settle_s:=0.3')
        out = self.processes.read_until(recorder, 'recorder: robot profile', timeout=60)
        assert 'recorder: robot profile' in out, out[-3000:]
        return recorder

    def on_stats(self, msg):
        stats = json.loads(msg.data)
        self.stats[stats['episode_id']] = stats

    def fail(self, what):
        return f'{what}\n--- arbiter:\n{self.processes.stop(self.arbiter)[-2000:]}'

    def episode_id(self):
        """The id of the operator episode running now (the last started), or None."""
        starts = [e for e in self.events if e.event == EpisodeEvent.EPISODE_START and e.detail == 'operator']
        return starts[-1].episode_id if starts and starts[-1].episode_id not in self.ended() else None

    def ended(self):
        return {e.episode_id for e in self.events if e.event == EpisodeEvent.EPISODE_END and e.detail != 'time limit'}

    def joy_msg(self, held, x=0.0, y=0.0, buttons=()):
        msg = Joy(axes=[0.0] * 8, buttons=[0] * 12)
        msg.buttons[MAPPING.deadman_button] = int(held)
        msg.axes[MAPPING.axes[0]], msg.axes[MAPPING.axes[1]] = x, y
        for b in buttons:
            msg.buttons[b] = 1
        return msg

    def steps(self, n, msg=None):
        """Wait for `n` joint states, publishing `msg` (if any) at each."""
        for _ in range(n):
            count = len(self.joints)
            if msg is not None:
                self.joy.publish(msg)
            assert self.test_node.spin_until(lambda c=count: len(self.joints) > c, timeout=5), self.fail('no joints')

    def press(self, button):
        self.joy.publish(self.joy_msg(False, buttons=[button]))
        self.steps(1)
        self.joy.publish(self.joy_msg(False))
        self.steps(1)

    def episode(self, success, x=1.0, y=0.0, phase=False):
        """One operator episode: drive, optionally toggle the critical phase, let go, hold, label. Returns its id."""
        assert self.test_node.spin_until(lambda: self.episode_id() is not None, timeout=20), self.fail('no start')
        episode_id = self.episode_id()
        self.steps(4, self.joy_msg(True, x, y))
        if phase:
            self.joy.publish(self.joy_msg(True, x, y, buttons=[MAPPING.phase_button]))
            self.steps(1)
        self.steps(3, self.joy_msg(True, x, y))
        self.steps(1, self.joy_msg(False))  # let go
        self.steps(2)
        self.press(MAPPING.success_button if success else MAPPING.failure_button)
        assert self.test_node.spin_until(lambda: episode_id in self.stats, timeout=20), self.fail('no stats')
        return episode_id

    def recorded(self, *graph_episode_ids, timeout=30, required=True):
        """The dataset once it holds the episodes of these graph episode ids (None after `timeout` unless
        `required`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.test_node.spin_until(lambda: False, timeout=0.2)
            if (self.output / 'dataset' / 'meta/info.json').exists():
                dataset = load_demos(self.output / 'dataset')
                if set(graph_episode_ids) <= set(dataset.episodes['graph_episode_id'].to_pylist()):
                    return dataset
        if not required:
            return None
        raise AssertionError(f'the recorder did not write episodes {graph_episode_ids}\n'
                             f'{self.processes.stop(self.recorder)[-3000:]}')

    def trace(self, graph_episode_id, stamps, episode):
        """What the recorder made of the episode's frames beside the chunks and events the test received."""
        position = {stamp: n for n, stamp in enumerate(stamps)}
        chunks = [(c.chunk_index, c.source, c.step_index, position.get(stamp_ns(c.header), stamp_ns(c.header)),
                   len(c.data)) for c in self.chunks if c.episode_id == graph_episode_id]
        events = [(e.event, e.step_index, e.detail, stamp_ns(e.header)) for e in self.events
                  if e.episode_id == graph_episode_id]
        frames = [(n, int(episode['action_source'][n]), bool(episode['intervention'][n])) for n in range(len(stamps))]
        return (f'\nchunks (index, source, step_index, frame of stamp, values): {chunks}'
                f'\nevents (event, step_index, detail, stamp): {events}\nstamps: {stamps[:20]}'
                f'\nframes (n, source, intervention): {[f for f in frames if f[1] or f[2]]}')

    def check_episode(self, dataset, index, graph_episode_id, success):
        """Frames of the recorded episode against the graph: joint states, the human's chunks, the arbiter's stats."""
        row = dataset.episodes.slice(index, 1).to_pylist()[0]
        episode = dataset.episode(index)
        stats = self.stats[graph_episode_id]
        assert row['graph_episode_id'] == graph_episode_id and row['success'] == success == stats['success']
        assert row['length'] == stats['steps'], (row, stats)
        by_source = {name: count for name, count in row['steps_by_source'].items() if count}
        stamps = [int(s) for s in episode['observation.stamp_ns']]
        assert by_source == {name: n for name, n in stats['steps_by_source'].items() if n}, \
            (row, stats, self.trace(graph_episode_id, stamps, episode))
        # Where each human chunk of the episode starts: at the arbiter's latest observation when it was issued
        # (step_index, 1-based; later than its stamp when it was decided late), ordered as the engine executes them.
        human = [c for c in self.chunks if c.episode_id == graph_episode_id
                 and c.source == ActionChunk.SOURCE_HUMAN and stamp_ns(c.header) in stamps]
        starts = sorted(((max(c.step_index - 1, stamps.index(stamp_ns(c.header))), c.chunk_index, c) for c in human),
                        key=lambda s: s[:2])
        for n, stamp in enumerate(stamps):
            joint = self.joints[stamp]
            np.testing.assert_array_equal(episode['observation.state'][n],
                                          np.float32([*joint.position, *joint.velocity]))
            if episode['intervention'][n]:  # a row of the last human chunk started at or before this observation
                first, _, chunk = [s for s in starts if s[0] <= n][-1]
                rows = as_numpy(chunk.data).reshape(-1, episode['action'].shape[1])
                np.testing.assert_array_equal(episode['action'][n], rows[n - first])
            else:
                assert not episode['action'][n].any()  # no VLA in this graph: the robot holds
        assert episode['intervention'].sum() == stats['steps_by_source']['human'] > 0
        assert episode['next.done'][-1] and episode['next.success'][-1] == success
        assert not episode['has_reference_chunk'].any()
        assert episode['observation.images.scene'].shape == (row['length'], 32, 32, 3)
        return episode


def test_recorder_dataset_and_mcap_match_what_the_graph_published(processes, test_node, tmp_path):
    cell = Cell(processes, test_node, tmp_path)
    warmup = cell.episode(success=False)  # discovery on a loaded machine: the recorder may miss a first start
    episodes = [(cell.episode(success=True, phase=True), True), (cell.episode(success=False, y=-1.0), False)]
    dataset = cell.recorded(*dict(episodes))
    ids = dataset.episodes['graph_episode_id'].to_pylist()
    assert ids[-2:] == [e for e, _ in episodes] and set(ids[:-2]) <= {0, warmup}, ids
    for episode_id, success in episodes:
        episode = cell.check_episode(dataset, ids.index(episode_id), episode_id, success)
    critical = dataset.episode(ids.index(episodes[0][0]))['critical_phase']
    assert critical[-1] and not critical[0]  # the operator's phase button

    import datasets
    paths = sorted(str(p) for p in (cell.output / 'dataset').glob('data/*/*.parquet'))
    loaded = datasets.load_dataset('parquet', data_files=paths, split='train', cache_dir=str(tmp_path / 'hf'))
    assert len(loaded) == dataset.num_frames
    assert isinstance(loaded.features['observation.images.wrist_left'], datasets.Image)
    np.testing.assert_array_equal(np.asarray(loaded[len(loaded) - 1]['observation.images.scene']),
                                  episode['observation.images.scene'][-1])

    # Stopped cleanly: a complete MCAP file, whose messages are those published.
    out = processes.stop(cell.recorder)
    assert 'Traceback' not in out, out[-3000:]
    [mcap_path] = (cell.output / 'mcap').glob('*.mcap')
    decoded = {}
    with open(mcap_path, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {s.name for s in summary.schemas.values()} >= {'sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image',
                                                              'rlt_interfaces/msg/ActionChunk'}
        for schema, channel, _, msg in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append(msg)
            assert schema.encoding == 'ros2msg' and channel.message_encoding == 'cdr'
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in decoded['/joint_states']}
    for stamp, joint in list(cell.joints.items())[-20:-5]:
        logged = by_stamp[divmod(stamp, 1_000_000_000)]
        assert list(logged.name) == list(joint.name) and list(logged.position) == list(joint.position)
        assert list(logged.velocity) == list(joint.velocity)
    logged_chunks = {(c.episode_id, c.chunk_index): c for c in decoded['/rlt/executed_chunk']}
    for chunk in [c for c in cell.chunks if c.episode_id in dict(episodes)]:
        logged = logged_chunks[(chunk.episode_id, chunk.chunk_index)]
        assert logged.source == chunk.source and logged.header.stamp.nanosec == chunk.header.stamp.nanosec
        np.testing.assert_array_equal(np.float32(logged.data), as_numpy(chunk.data))
    ends = [(e.episode_id, e.success, e.detail) for e in decoded['/episode/events']
            if e.event == EpisodeEvent.EPISODE_END]
    for episode_id, success in episodes:
        assert (episode_id, success, 'operator label') in ends
    images = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in decoded['/cameras/scene/image_raw']}
    frame = dataset.episode(ids.index(episodes[-1][0]))
    image = images[divmod(int(frame['observation.stamp_ns'][0]), 1_000_000_000)]
    np.testing.assert_array_equal(np.frombuffer(image.data, np.uint8).reshape(32, 32, 3),
                                  frame['observation.images.scene'][0])

    # The README's path on the recording: behaviour cloning of the small VLA, phase 1 with it and with a pi0
    # (tokens of the backbone's embedding width), the small one served.
    recording = str(cell.output / 'dataset')
    bc = processes.spawn(_executable('rlt_train', 'train_vla'), '--demos', recording, '--output', str(tmp_path / 'vla'),
                         '--robot-profile', cell.profile, '--eval-episodes', '0', '--steps', '3', '--batch-size', '4',
                         '--d-model', '32', '--n-layers', '1', '--stem-channels', '8', '16', '32', '64')
    assert bc.wait(timeout=300) == 0, bc.stdout.read()[-3000:]
    assert 'train_loss' in json.loads((tmp_path / 'vla' / 'report.json').read_text())  # none held out
    small = [_executable('rlt_train', 'train_rl_token'), '--vla', str(tmp_path / 'vla'), '--demos', recording,
             '--steps', '3', '--batch-size', '8',
             '--warmup-steps', '1', '--token-dim', '4', '--no-whiten', '--d-model', '16', '--encoder-layers', '1',
             '--decoder-layers', '1', '--frame-stride', '1', '--val-episodes', '1', '--threads', '1']
    pi0 = Pi0Backbone.tiny(RobotProfile.load(cell.profile).camera_names, proprio_dim=6, action_dim=3,
                           chunk_len=RobotProfile.load(cell.profile).vla_chunk_len)
    pi0.save_pretrained(tmp_path / 'pi0')
    runs = {name: processes.spawn(*small, '--output', str(tmp_path / name), *extra) for name, extra in
            (('token', ()), ('pi0_token', ('--vla', f'pi0:{tmp_path / "pi0"}')))}
    for name, run in runs.items():
        assert run.wait(timeout=300) == 0, run.stdout.read()[-3000:]
        report = json.loads((tmp_path / name / 'report.json').read_text())
        assert report['probe_offset'].startswith('skipped')  # no ground truth in a recording
    assert RLTokenModel.load(tmp_path / 'pi0_token').config.embed_dim == pi0.token_dim
    prior = processes.spawn(_executable('rlt_train', 'rlt_demo_replay'), '--demos', recording, '--vla',
                            str(tmp_path / 'vla'), '--token', str(tmp_path / 'token'), '--robot-profile', cell.profile,
                            '--output', str(tmp_path / 'demo_replay'))
    assert prior.wait(timeout=300) == 0, prior.stdout.read()[-3000:]  # the recording as prior replay data
    assert json.loads((tmp_path / 'demo_replay' / 'demo_replay.json').read_text())['transitions'] > 0

    # ... and served: the VLA server on the trained token publishes z_rl for the graph's own observations, each
    # asked for as the arbiter does.
    tokens = []
    test_node.node.create_subscription(RLToken, 'rlt/rl_token', tokens.append, CHUNK_QOS)
    requests = test_node.node.create_publisher(InferenceRequest, 'rlt/inference_request', REQUEST_QOS)
    test_node.node.create_subscription(Observation, 'rlt/observation', lambda m: requests.publish(
        InferenceRequest(header=m.header, step_index=m.step_index)), OBSERVATION_QOS)
    ros_args = ['--ros-args', '-p', f'robot_profile:={cell.profile}']
    processes.spawn(_executable('rlt_nodes', 'ingestion'), *ros_args)
    processes.spawn(_executable('rlt_nodes', 'vla_server'), *ros_args, '-p', f'vla_path:={tmp_path / "vla"}',
                    '-p', f'token_path:={tmp_path / "token"}')
    assert test_node.spin_until(lambda: tokens, timeout=120), 'the VLA server published no token'
    z_rl = as_numpy(tokens[-1].data)
    assert z_rl.shape == (4,) and np.isfinite(z_rl).all() and stamp_ns(tokens[-1].header) in cell.joints


def test_a_killed_recorder_keeps_its_episodes_and_the_next_run_appends(processes, test_node, tmp_path):
    cell = Cell(processes, test_node, tmp_path)
    cell.episode(success=False)
    kept = cell.episode(success=True)
    dataset = cell.recorded(kept)
    before, ids_before = dataset.num_episodes, dataset.episodes['graph_episode_id'].to_pylist()

    # Killed in the middle of an episode, a second after its last flush of the MCAP file.
    assert test_node.spin_until(lambda: cell.episode_id() is not None, timeout=20)
    cell.steps(25, cell.joy_msg(True, x=-1.0))
    processes.kill(cell.recorder)
    dataset = load_demos(cell.output / 'dataset')
    assert dataset.num_episodes == before and not list((cell.output / 'dataset').rglob('*.tmp'))
    cell.check_episode(dataset, dataset.episodes['graph_episode_id'].to_pylist().index(kept), kept, True)
    [killed_log] = (cell.output / 'mcap').glob('*.mcap')
    topics = {channel.topic for _, channel, _ in read_messages(killed_log)}
    assert {'/joint_states', '/rlt/executed_chunk', '/cameras/scene/image_raw'} <= topics

    # The next run appends to the same dataset; a new MCAP file.
    cell.recorder = cell.start_recorder()
    assert test_node.spin_until(lambda: any(i.node_name == 'recorder' for i in
                                            test_node.node.get_subscriptions_info_by_topic('episode/events')),
                                timeout=20)
    cut = cell.episode_id()
    cell.steps(1, cell.joy_msg(False))
    cell.press(MAPPING.failure_button)  # ends the episode the kill cut short
    assert test_node.spin_until(lambda: cut in cell.ended(), timeout=10)
    for _ in range(3):  # the first episode whose start the new recorder sees (the arbiter may see it late)
        appended = cell.episode(success=True)
        dataset = cell.recorded(appended, timeout=5, required=False)
        if dataset is not None:
            break
    assert dataset is not None, processes.stop(cell.recorder)[-3000:]
    ids = dataset.episodes['graph_episode_id'].to_pylist()
    assert ids == [*ids_before, appended] and dataset.episodes['episode_index'].to_pylist() == list(range(len(ids)))
    cell.check_episode(dataset, len(ids) - 1, appended, True)
    assert len(list((cell.output / 'mcap').glob('*.mcap'))) == 2
    assert Path(killed_log).exists()
