"""A driver whose joint_states come five times faster than the control rate, as a ros2_control
joint_state_broadcaster's do (every joint, its own order, a gripper finger among them), following the arbiter's
trajectories as a JointTrajectoryController would. The arbiter, ingestion and the recorder, each in its own
process, take the same joint states as control steps, one per control period: the observations the VLA is asked
about, the executed chunks (one trajectory point per step, k * dt apart), the episode's step count and the
recorded frames all follow the control rate, not the driver's."""

import json
import os
import threading
import time

import numpy as np
from conftest import write_profile
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from rlt_bringup.tiny_models import make_tiny_models
from rlt_core.control.profile import RobotProfile
from rlt_core.control.steps import ControlSteps
from rlt_core.control.teleop import JoyMapping
from rlt_core.data.lerobot import load_demos
from rlt_interfaces.msg import ActionChunk, EpisodeEvent, Observation, RLToken
from rlt_nodes.conversions import chunk_to_msg, stamp_ns, token_to_msg
from rlt_nodes.qos import CHUNK_QOS, EVENTS_QOS, OBSERVATION_QOS, STATS_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
DRIVER_HZ = 100
IMAGE_SIZE = 16
MOVE = np.array([0.0005, -0.0003, 0.0])
"""The VLA's reference: this joint move at every step."""


def _executable(name):
    return os.path.join(INSTALL, 'rlt_nodes', 'lib', 'rlt_nodes', name)


class Driver:
    """joint_states at DRIVER_HZ, stamped when published, with a camera image of the same stamp for each camera;
    the joints follow the newest trajectory, each point reached at its time_from_start."""

    def __init__(self, node, profile: RobotProfile):
        self.node, self.profile = node, profile
        self.order = ['finger_joint', *reversed(profile.joint_names)]
        self.q = np.array([(lo + hi) / 2 for lo, hi in zip(profile.joint_lower, profile.joint_upper, strict=True)])
        self.trajectory = None
        self.stamps = []
        self.joints = node.create_publisher(JointState, 'joint_states', 50)
        self.images = {name: node.create_publisher(Image, f'cameras/{name}/image_raw', qos_profile_sensor_data)
                       for name in profile.camera_names}
        node.create_subscription(JointTrajectory, f'{profile.controller_name}/joint_trajectory', self.on_trajectory,
                                 10)
        self.timer = None

    def start(self):
        self.timer = self.node.create_timer(1.0 / DRIVER_HZ, self.tick)

    def on_trajectory(self, msg: JointTrajectory):
        assert list(msg.joint_names) == list(self.profile.joint_names)
        times = [p.time_from_start.sec * 10**9 + p.time_from_start.nanosec for p in msg.points]
        self.trajectory = (self.node.get_clock().now().nanoseconds, times, [np.array(p.positions) for p in msg.points])

    def tick(self):
        stamp = self.node.get_clock().now()
        if self.trajectory is not None:
            start, times, points = self.trajectory
            reached = [p for t, p in zip(times, points, strict=True) if start + t <= stamp.nanoseconds]
            if reached:
                self.q = reached[-1]
        msg = JointState(name=self.order, position=[0.01, *self.q[::-1]], velocity=[0.0] * len(self.order))
        msg.header.stamp = stamp.to_msg()
        self.joints.publish(msg)
        for publisher in self.images.values():
            image = Image(height=IMAGE_SIZE, width=IMAGE_SIZE, encoding='rgb8', step=3 * IMAGE_SIZE,
                          data=bytes(3 * IMAGE_SIZE * IMAGE_SIZE))
            image.header.stamp = msg.header.stamp
            publisher.publish(image)
        self.stamps.append(stamp.nanoseconds)


def test_joint_states_faster_than_the_control_rate_make_one_step_per_control_period(processes, test_node, tmp_path):
    path = write_profile(tmp_path / 'cell.yaml', image_size=IMAGE_SIZE, max_steps=100_000)
    profile = RobotProfile.load(path)
    vla, _ = make_tiny_models(tmp_path / 'models', path)
    common = ['--ros-args', '-p', f'robot_profile:={path}']
    arbiter = processes.spawn(_executable('arbiter'), *common, '-p', f'vla_path:={vla}',
                              '-p', 'episode_source:=operator', '-p', 'warmup_episodes:=1000')
    processes.spawn(_executable('ingestion'), *common)
    output = tmp_path / 'recording'
    recorder = processes.spawn(_executable('recorder'), *common, '-p', f'output:={output}',
                               '-p', 'episode_source:=operator', '-p', 'settle_s:=0.3', '-p', 'mcap:=false')
    recorder_log = []
    threading.Thread(target=lambda: [recorder_log.append(line) for line in recorder.stdout], daemon=True).start()
    node = test_node.node
    driver = Driver(node, profile)
    observations, chunks, trajectories, events, stats = [], [], [], [], {}
    tokens = node.create_publisher(RLToken, 'rlt/rl_token', CHUNK_QOS)
    references = node.create_publisher(ActionChunk, 'rlt/reference_chunk', CHUNK_QOS)
    reference = np.tile(MOVE, (profile.vla_chunk_len, 1))

    def on_observation(msg: Observation):  # the VLA server: a token and a reference for each observation
        observations.append(stamp_ns(msg.header))
        tokens.publish(token_to_msg(np.zeros(16, np.float32), header=msg.header))
        references.publish(chunk_to_msg(reference, ActionChunk.SOURCE_VLA, header=msg.header,
                                        action_names=profile.action_names))

    node.create_subscription(Observation, 'rlt/observation', on_observation, OBSERVATION_QOS)
    node.create_subscription(ActionChunk, 'rlt/executed_chunk', chunks.append, CHUNK_QOS)
    node.create_subscription(JointTrajectory, f'{profile.controller_name}/joint_trajectory', trajectories.append, 50)
    event_subscription = node.create_subscription(EpisodeEvent, 'episode/events', events.append, EVENTS_QOS)
    node.create_subscription(String, 'rlt/episode_stats',
                             lambda m: stats.update({json.loads(m.data)['episode_id']: json.loads(m.data)}), STATS_QOS)
    joy = node.create_publisher(Joy, 'joy', 10)

    def up():  # the arbiter, ingestion and the recorder listen, and this node hears the arbiter's first start
        cameras = all(p.get_subscription_count() >= 2 for p in driver.images.values())
        return (driver.joints.get_subscription_count() >= 3 and references.get_subscription_count()
                and joy.get_subscription_count() and cameras and event_subscription.get_publisher_count())

    assert test_node.spin_until(up, timeout=90), f'the graph did not come up\n{processes.stop(arbiter)[-3000:]}'

    def label(button):
        """Press and release a joystick button, a few joint states apart."""
        for pressed in (True, False):
            msg = Joy(axes=[0.0] * 8, buttons=[0] * 12)
            msg.buttons[button] = int(pressed)
            joy.publish(msg)
            seen = len(driver.stamps)
            test_node.spin_until(lambda s=seen: len(driver.stamps) >= s + 10, timeout=5)

    def started():
        return [e for e in events if e.event == EpisodeEvent.EPISODE_START]

    def in_episode():
        return [c for c in chunks if c.episode_id == episode_id]

    driver.start()
    # The arbiter starts an operator episode on its first step (its first steps may come closer together, as a
    # node's do until it reaches the grid). The operator ends it (B) and the next, until the recorder heard a start.
    assert test_node.spin_until(started, timeout=30), processes.stop(arbiter)[-3000:]
    for _ in range(10):
        seen = len(started())
        label(JoyMapping.failure_button)
        assert test_node.spin_until(lambda s=seen: len(started()) > s, timeout=30), processes.stop(arbiter)[-3000:]
        episode_id = started()[-1].episode_id
        heard = f'recording graph episode {episode_id}'
        if test_node.spin_until(lambda h=heard: h in ''.join(recorder_log), timeout=2):
            break
    else:
        raise AssertionError(f'the recorder heard no episode start\n{"".join(recorder_log)[-3000:]}')
    C = profile.actor_chunk_len
    assert test_node.spin_until(lambda: len(in_episode()) >= 12, timeout=60), processes.stop(arbiter)[-3000:]
    label(JoyMapping.success_button)
    assert test_node.spin_until(lambda: episode_id in stats, timeout=30), processes.stop(arbiter)[-3000:]
    driver.timer.cancel()

    steps = ControlSteps(profile.control_hz)
    control_steps = [s for s in driver.stamps if steps.admit(s)]
    dt_ns = round(profile.dt * 1e9)

    # Ingestion: one observation per control step, the same joint states as the rule takes from the stream.
    assert len(driver.stamps) > 4 * len(observations) > 0
    # Images and observations travel best-effort (sensor data): some may be lost on a loaded machine, none may be
    # other than a step (once ingestion caught up with the grid, had it missed the first joint states).
    observations = observations[4:]
    expected = [s for s in control_steps if observations[0] <= s <= observations[-1]]
    assert set(observations) <= set(expected) and len(observations) >= 0.7 * len(expected)
    periods = (observations[-1] - observations[0]) / dt_ns  # lines without a joint state (a stalled driver) skipped
    assert 0.8 * periods <= len(expected) - 1 <= periods + 1
    assert abs(np.median(np.diff(observations)) - dt_ns) < 0.1 * dt_ns

    # The arbiter: chunks decided on control steps, one trajectory point per step, k * dt from its start.
    episode_chunks = in_episode()
    assert {stamp_ns(c.header) for c in episode_chunks} <= set(control_steps)
    for traj in trajectories:
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
        np.testing.assert_allclose(times, profile.dt * np.arange(1, C + 1), atol=1e-6)
    starts = [c.step_index for c in episode_chunks]
    assert all(b - a >= C for a, b in zip(starts, starts[1:], strict=False)), starts  # a chunk lasts C steps

    # The episode's steps are the control periods it lasted (start and end events stamped by the arbiter).
    start, end = (next(e for e in events if e.event == kind and e.episode_id == episode_id)
                  for kind in (EpisodeEvent.EPISODE_START, EpisodeEvent.EPISODE_END))
    periods = (stamp_ns(end.header) - stamp_ns(start.header)) / dt_ns
    episode = stats[episode_id]
    assert 0.8 * periods - 2 <= episode['steps'] <= periods + 2, (episode, periods)
    assert episode['refused_commands'] == 0 and episode['steps_by_source']['vla'] >= 10 * C, episode

    # The recorder: one frame per control step of the episode, the arbiter's.
    deadline, dataset = time.monotonic() + 30, None
    while dataset is None and time.monotonic() < deadline:
        test_node.spin_until(lambda: False, timeout=0.2)
        if (output / 'dataset' / 'meta/info.json').exists():
            found = load_demos(output / 'dataset')
            written = found.episodes.column('graph_episode_id').to_pylist() if found.num_episodes else []
            dataset = found if episode_id in written else None
    assert dataset is not None, f'the recorder wrote no episode\n{"".join(recorder_log)[-3000:]}'
    index = dataset.episodes['graph_episode_id'].to_pylist().index(episode_id)
    frames = [int(s) for s in dataset.episode(index)['observation.stamp_ns']]
    assert len(frames) == episode['steps']
    # The rule's steps, but where the recorder lost a joint state under load (a reliable writer keeps only its
    # history's depth) it took the next one for that step, as the arbiter would have: mostly the same stamps.
    expected = [s for s in control_steps if frames[0] <= s <= frames[-1]]
    assert set(frames) <= set(driver.stamps) and len(set(frames) & set(expected)) >= 0.9 * len(expected)
    assert abs(len(frames) - len(expected)) <= 0.1 * len(expected)
    assert abs(np.median(np.diff(frames)) - dt_ns) < 0.1 * dt_ns  # one per period (a driver's stall aside)
    assert {stamp_ns(c.header) for c in episode_chunks if stamp_ns(c.header) <= frames[-1]} <= set(frames)
    row = dataset.episodes.slice(index, 1).to_pylist()[0]  # each chunk's rows on the frames of its steps
    assert {k: n for k, n in row['steps_by_source'].items() if n} == {
        k: n for k, n in episode['steps_by_source'].items() if n}, (row, episode)
