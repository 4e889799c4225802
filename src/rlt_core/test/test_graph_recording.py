"""The graph recorder's pieces without a graph: frames assembled from messages, the dataset they make for any
robot profile, and MCAP logs (ros2msg definitions, a file cut short by a crash)."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
from mcap_ros2._dynamic import serialize_dynamic
from mcap_ros2.decoder import DecoderFactory

from rlt_core.control.profile import Camera, RobotProfile
from rlt_core.data.graph_episodes import EpisodeAssembler, recorder_features
from rlt_core.data.lerobot import DemoWriter, finalize_demos, load_demos, profile_features
from rlt_core.data.mcap_log import McapLog, message_definition, read_messages
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA

MS = 1_000_000


@pytest.fixture
def profile() -> RobotProfile:
    """Two joints, an RGB and a mono camera of 6x4 px, H = 4, C = 2: nothing like the gantry cell."""
    default = RobotProfile.load()
    return replace(default, name='two_joint_arm', joint_names=('shoulder', 'elbow'), joint_lower=(-1.0, -1.0),
                   joint_upper=(1.0, 1.0), max_delta=(0.1, 0.1), critical_max_delta=(0.05, 0.05),
                   cameras=(Camera('front', 'rgb8', width=6, height=4), Camera('side', 'mono8', width=6, height=4)),
                   vla_chunk_len=4, actor_chunk_len=2, stride=1)


def feed_episode(a: EpisodeAssembler, start_ms: int, steps: int, chunks=(), phases=(), releases=(), success=True,
                 operator=False, chunk_count=0, operator_start_after=1):
    """An episode of `steps` + 1 joint states 50 ms apart (the last is the final observation), images 2 ms after
    each, `chunks` as (step, source, rows) executed chunks stamped with that step's observation, `phases` as
    (step, critical, by_human) and `releases` as (stamp, step) TAKEOVER_END events, received first; its end
    counts `chunk_count` chunks. An operator's start, stamped with o_1's stamp as the arbiter stamps it, arrives
    after joint state `operator_start_after` (0: before o_1)."""
    stamps = [(start_ms + 50 * (n + 1)) * MS for n in range(steps + 1)]
    if not operator:
        a.start(7, start_ms * MS, 'seed=7')
        for step, critical, by_human in phases:
            a.phase(critical, step, by_human)
        for stamp, step in releases:
            a.takeover_end(stamp, step)
    if operator and operator_start_after == 0:
        a.start(7, stamps[0], 'operator')
    for n, stamp in enumerate(stamps, start=1):
        a.joint_state(stamp, [0.01 * n, -0.01 * n], [0.1, 0.2])
        if operator and n == operator_start_after:
            a.start(7, stamps[0], 'operator')
        a.image('front', stamp + 2 * MS, np.full((4, 6, 3), n, np.uint8))
        a.image('side', stamp + 2 * MS, np.full((4, 6, 3), 100 + n, np.uint8))
        for index, (step, source, rows) in enumerate(chunks):
            if step == n:
                a.executed_chunk(stamp, index, source, np.asarray(rows, np.float32), episode_id=7)
        a.reference_chunk(stamp, np.full((4, 2), n, np.float32))
    a.end(7, steps + 1, success, 'operator label' if operator else 'success', now=0.0, chunk_count=chunk_count)
    return stamps


def test_frames_hold_the_executed_actions_sources_phase_and_images(profile):
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.5)
    vla, actor, human = [[0.01, 0.0], [0.02, 0.0]], [[0.0, 0.03], [0.0, 0.04]], [[0.05, 0.05], [0.05, 0.05]]
    feed_episode(a, 0, steps=8, chunks=[(1, SOURCE_VLA, vla), (4, SOURCE_ACTOR, actor), (6, SOURCE_HUMAN, human)],
                 phases=[(4, True, False), (6, False, True), (6, True, True)],  # the sim's from o_4
                 releases=[(355 * MS, 7)])  # let go after o_7 (350 ms): o_7 holds
    assert a.take_finished(now=0.1) == []  # settling
    [episode] = a.take_finished(now=0.6)
    f = episode.frames
    assert episode.length == 8 and f['observation.state'].shape == (8, 4)
    np.testing.assert_allclose(f['observation.state'][2], [0.03, -0.03, 0.1, 0.2], rtol=1e-6)
    expected = [vla[0], vla[1], [0, 0], actor[0], actor[1], human[0], [0, 0], [0, 0]]
    np.testing.assert_allclose(f['action'], expected)
    assert f['action_source'].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert f['intervention'].tolist() == [False] * 5 + [True, False, False]
    assert episode.metadata['steps_by_source'] == {'vla': 2, 'actor': 2, 'human': 1, 'hold': 3}
    assert f['critical_phase'].tolist() == [False] * 3 + [True] * 5
    assert f['next.done'].tolist() == [False] * 7 + [True] and f['next.reward'][-1] == 1.0
    assert f['has_reference_chunk'].all() and f['reference_chunk'][4].tolist() == [5.0] * 8
    assert [int(im[0, 0, 0]) for im in episode.images['front']] == list(range(1, 9))
    assert int(episode.images['side'][0][0, 0, 0]) == 101
    assert episode.metadata['images_beyond_tolerance'] == 0 and episode.metadata['success'] is True


def test_a_release_counts_from_the_arbiters_latest_observation(profile):
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.0)
    # Let go at 260 ms, after o_5 (250 ms) was published but when the arbiter had seen only o_4; the event
    # arrives before the human chunk (topics may arrive out of order).
    feed_episode(a, 0, steps=5, chunks=[(3, SOURCE_HUMAN, [[0.05, 0.05]] * 2)], releases=[(260 * MS, 4)])
    [episode] = a.take_finished(now=1.0)
    assert episode.frames['intervention'].tolist() == [False, False, True, False, False]
    np.testing.assert_allclose(episode.frames['action'][2:4], [[0.05, 0.05], [0.0, 0.0]])


def test_a_chunk_decided_late_starts_at_the_step_it_was_issued(profile):
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.0)
    stamps = feed_episode(a, 0, steps=6, chunks=[(1, SOURCE_VLA, [[0.01, 0.0], [0.02, 0.0]])])
    # The actor's chunk for o_2 reached the arbiter after o_4: issued then, its rows follow o_4 and o_5; the
    # robot held after o_3 (the VLA's chunk ran out).
    a.executed_chunk(stamps[1], 1, SOURCE_ACTOR, np.array([[0.0, 0.03], [0.0, 0.04]], np.float32), step_index=4,
                     episode_id=7)
    [episode] = a.take_finished(now=1.0)
    np.testing.assert_allclose(episode.frames['action'],
                               [[0.01, 0], [0.02, 0], [0, 0], [0, 0.03], [0, 0.04], [0, 0]])
    assert episode.frames['action_source'].tolist() == [0, 0, 0, 1, 1, 1]


def test_operator_episodes_begin_on_the_joint_state_they_were_started_on(profile):
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, episode_source='operator', settle_s=0.0)
    a.start(0, 1, 'seed=0')  # a simulator's start: not an operator episode
    feed_episode(a, 0, steps=3, operator=True, success=False)
    [episode] = a.take_finished(now=1.0)
    assert episode.length == 3 and episode.metadata['success'] is False
    np.testing.assert_allclose(episode.frames['observation.state'][0, :2], [0.01, -0.01])
    # The start may reach the recorder before o_1's joint state, or after o_2's: o_1 is the one stamped as it.
    for start_ms, after in ((400, 0), (700, 2)):
        stamps = feed_episode(a, start_ms, steps=3, operator=True, operator_start_after=after,
                              chunks=[(1, SOURCE_HUMAN, [[0.01, 0.0]] * 2)])
        [episode] = a.take_finished(now=1.0)
        assert episode.length == 3 and list(episode.frames['observation.stamp_ns']) == stamps[:3]
        np.testing.assert_allclose(episode.frames['observation.state'][:, 0], [0.01, 0.02, 0.03])
        np.testing.assert_allclose(episode.frames['action'][:, 0], [0.01, 0.01, 0.0])
    # A start while one records cuts that one short at its latest observation.
    feed_episode(a, 1000, steps=2, operator=True)
    a.open[-1].ended_at = None  # as if its end never came
    a.start(8, 2000 * MS, 'operator')
    [cut] = a.take_finished(now=1.0)
    assert cut.metadata['truncated'] and not cut.metadata['success'] and cut.length == 2


def test_an_episode_with_a_joint_state_the_recorder_missed_is_not_recorded(profile):
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.0)
    a.start(3, 0, 'seed=3')
    for n in (1, 2, 4, 5):  # o_3 never arrived (a recorder that joined late, or dropped one)
        a.joint_state(50 * n * MS, [0.0, 0.0], [0.0, 0.0])
    a.end(3, 5, True, 'success', now=0.0)
    assert a.take_finished(now=1.0) == []
    assert a.ignored == {'episodes with joint states the recorder did not receive': 1}


def test_an_episode_with_an_executed_chunk_the_recorder_missed_is_not_recorded(profile):
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.0)
    human = [[0.05, 0.05]] * 2
    feed_episode(a, 0, steps=5, chunks=[(1, SOURCE_HUMAN, human), (3, SOURCE_HUMAN, human)])
    a.chunks = [c for c in a.chunks if c.chunk_index != 0]  # chunk 0 came before the recorder's subscription matched
    assert a.take_finished(now=1.0) == []
    assert a.ignored == {'episodes with executed chunks the recorder did not receive': 1}


def test_an_episode_whose_every_executed_chunk_the_recorder_missed_is_not_recorded(profile):
    """No chunk seen leaves no gap to see: the count on the arbiter's EPISODE_END tells."""
    human = [[0.05, 0.05]] * 2
    for count, ignored in ((2, 1), (0, 0)):
        a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.0)
        feed_episode(a, 0, steps=5, chunks=[(1, SOURCE_HUMAN, human), (3, SOURCE_HUMAN, human)], chunk_count=count)
        a.chunks = []  # both came before the recorder's subscription matched
        assert len(a.take_finished(now=1.0)) == 1 - ignored
        assert a.ignored.get('episodes with executed chunks the recorder did not receive', 0) == ignored


def test_a_driver_faster_than_the_control_rate_gives_one_frame_per_control_step(profile):
    """Joint states every 10 ms at a control rate of 20 Hz: the frames are every 5th, those the arbiter steps on,
    and a chunk's rows follow them step by step."""
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.0)
    stamps = [(1000 + 10 * i + 3) * MS for i in range(60)]
    for stamp in stamps[:10]:  # the driver runs before the episode starts
        a.joint_state(stamp, [0.0, 0.0], [0.0, 0.0])
    a.start(3, stamps[9], 'seed=3')
    for i, stamp in enumerate(stamps[10:], start=10):
        a.joint_state(stamp, [0.001 * i, 0.0], [0.0, 0.0])
        a.image('front', stamp, np.full((4, 6, 3), i, np.uint8))
        a.image('side', stamp, np.full((4, 6, 3), i, np.uint8))
    steps = [stamps[i] for i in range(13, 60, 5)]  # the first from 25 ms before each 50 ms line: 1.133 s, ...
    a.executed_chunk(steps[0], 0, SOURCE_VLA, np.array([[0.01, 0.0], [0.02, 0.0]], np.float32), step_index=1)
    a.end(3, len(steps), True, 'success', now=0.0)
    [episode] = a.take_finished(now=1.0)
    f = episode.frames
    assert f['observation.stamp_ns'].tolist() == steps[:-1]
    np.testing.assert_allclose(f['observation.state'][:, 0], [0.001 * i for i in range(13, 55, 5)], rtol=1e-6)
    assert [int(im[0, 0, 0]) for im in episode.images['front']] == list(range(13, 55, 5))
    np.testing.assert_allclose(f['action'][:3], [[0.01, 0.0], [0.02, 0.0], [0.0, 0.0]])


def test_recorded_episodes_make_a_dataset_of_the_profile(profile, tmp_path):
    a = EpisodeAssembler(profile, image_tolerance_ns=5 * MS, settle_s=0.0)
    features = profile_features(profile, recorder_features(profile))
    recording = {'generator': 'test', 'robot_profile': profile.to_dict()}
    writer = DemoWriter(tmp_path / 'set', features, 20, recording, robot_type=profile.name, flush_every=1)
    for k in range(2):
        feed_episode(a, 1000 * k, steps=4 + k, chunks=[(1, SOURCE_HUMAN, [[0.01, 0.02]] * 2)], success=k == 1)
        [episode] = a.take_finished(now=1.0)
        writer.add_episode(episode.to_dataset_episode('reach', fps=20))
    # Killed here: no close(); the metadata was rewritten after each episode.
    dataset = load_demos(tmp_path / 'set')
    assert dataset.num_episodes == 2 and len(dataset) == 9 and dataset.tasks == ['reach']
    assert dataset.info['robot_type'] == 'two_joint_arm'
    assert dataset.features['observation.images.side']['shape'] == [4, 6, 3]
    assert dataset.features['action']['names'] == ['shoulder.delta', 'elbow.delta']
    first = dataset.episode(0)
    assert first['observation.images.front'].shape == (4, 4, 6, 3)
    assert first['observation.images.side'][2, 0, 0, 1] == 103
    np.testing.assert_allclose(first['action'][:2], [[0.01, 0.02]] * 2)
    assert first['intervention'].tolist() == [True, True, False, False]
    assert first['reference_chunk'].shape == (4, 8)
    assert dataset.episodes['success'].to_pylist() == [False, True]
    assert finalize_demos(tmp_path / 'set') == 2
    with pytest.raises(ValueError, match='other settings'):
        DemoWriter(tmp_path / 'set', features, 20, {**recording, 'robot_profile': {}})

    import datasets
    paths = sorted(str(p) for p in (tmp_path / 'set').glob('data/*/*.parquet'))
    loaded = datasets.load_dataset('parquet', data_files=paths, split='train', cache_dir=str(tmp_path / 'hf'))
    assert len(loaded) == 9 and isinstance(loaded.features['observation.images.front'], datasets.Image)
    assert np.asarray(loaded[0]['observation.images.front']).shape == (4, 6, 3) and loaded[0]['action_source'] == 2


def msg_files(tmp_path):
    """A package `demo_msgs` whose Outer uses Inner (twice) and builtin_interfaces/Time."""
    root = tmp_path / 'share'
    for package, name, text in [
        ('demo_msgs', 'Outer', '# outer\nbuiltin_interfaces/Time stamp\nInner one\nInner[] many\nuint8 K=3\n'),
        ('demo_msgs', 'Inner', 'float32[] values  # a comment\nstring<=8 label\n'),
        ('builtin_interfaces', 'Time', 'int32 sec\nuint32 nanosec\n'),
    ]:
        (root / package / 'msg').mkdir(parents=True, exist_ok=True)
        (root / package / 'msg' / f'{name}.msg').write_text(text)
    return lambda package, name: root / package / 'msg' / f'{name}.msg'


def test_mcap_log_is_rosbag2_shaped_and_survives_a_crash(tmp_path):
    definition = message_definition('demo_msgs/msg/Outer', msg_files(tmp_path))
    assert definition.count('=' * 80) == 2 and 'MSG: demo_msgs/msg/Inner' in definition
    assert 'MSG: builtin_interfaces/msg/Time' in definition and definition.startswith('# outer')
    encode = serialize_dynamic('demo_msgs/msg/Outer', definition)['demo_msgs/msg/Outer']

    def message(i):
        return {'stamp': {'sec': i, 'nanosec': 5}, 'one': {'values': [float(i)], 'label': 'a'},
                'many': [{'values': [1.0, 2.0], 'label': f'n{i}'}]}

    log = McapLog(tmp_path / 'run.mcap', chunk_size=1 << 20)
    channel = log.add_topic('/outer', 'demo_msgs/msg/Outer', definition)
    for i in range(10):
        log.write(channel, encode(message(i)), log_time_ns=i * MS)
    log.flush()
    for i in range(10, 15):  # in the open chunk when the writer dies
        log.write(channel, encode(message(i)), log_time_ns=i * MS)
    shutil.copy(tmp_path / 'run.mcap', tmp_path / 'crashed.mcap')  # the file as a SIGKILL leaves it
    log.close()

    decoders = DecoderFactory()
    for path, count in (('crashed.mcap', 10), ('run.mcap', 15)):
        messages = list(read_messages(tmp_path / path))
        assert len(messages) == count
        schema, channel_record, record = messages[3]
        assert (schema.name, schema.encoding, channel_record.topic, channel_record.message_encoding) == \
            ('demo_msgs/msg/Outer', 'ros2msg', '/outer', 'cdr')
        decoded = decoders.decoder_for('cdr', schema)(record.data)
        assert decoded.stamp.sec == 3 and decoded.one.values == [3.0] and decoded.many[0].label == 'n3'
    with open(tmp_path / 'crashed.mcap', 'ab') as f:  # a half-written chunk at the end
        f.write(bytes([6]) + (1000).to_bytes(8, 'little') + b'partial')
    assert len(list(read_messages(tmp_path / 'crashed.mcap'))) == 10
