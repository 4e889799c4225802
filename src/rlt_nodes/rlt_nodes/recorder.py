"""Recorder: the graph's episodes as a LeRobot v3.0 dataset, and its raw topics as MCAP.

Runs beside any graph, during teleoperated demonstrations and during online RL:
``ros2 run rlt_nodes recorder --ros-args -p output:=DIR`` (or ``./rlt exec python -m rlt_nodes.recorder ...``).
Writes under `output`:

- ``dataset/``: a LeRobot v3.0 dataset (`rlt_core.data.lerobot`, the layout `rlt_record_demos` writes; read it
  with `load_demos` or Hugging Face ``datasets``), one episode per episode of ``episode/events``, one frame per
  control step. `rlt_core.data.graph_episodes` says exactly what each frame holds: the joint state, each camera's
  image of that step, the action executed after it (from ``rlt/executed_chunk``) and its source, the VLA's
  reference chunk, the critical-phase and intervention flags, and the success label. An episode is written when
  it has ended and `settle_s` has passed (late images and chunks), as one data file renamed into place; the
  dataset's metadata is rewritten after each. A recorder killed at any moment thus keeps every episode written
  so far, and the next run on the same `output` appends to it (the same robot profile is required).
- ``mcap/<UTC start time>.mcap``: one MCAP file per run of the recorder, every topic of `mcap_topics` as it
  crossed DDS (raw CDR, ``ros2msg`` schemas, as rosbag2 records; `rlt_core.data.mcap_log`), for ``ros2 bag play``
  and Foxglove. Chunks are flushed every `mcap_flush_s`: a killed recorder leaves a file readable up to its last
  flush (`rlt_core.data.mcap_log.read_messages`, or ``mcap recover``); a stopped one a complete file.

Every subscription takes the serialized message (``raw=True``): the bytes go to the MCAP file as they are, and are
deserialized only for the dataset's topics. Episode ids, phases and labels come from ``episode/events``;
`episode_source` ``operator`` keeps only the arbiter's operator episodes (a simulator beside it reports its own).
"""

import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from rlt_core.control.profile import RobotProfile
from rlt_core.control.sync import joint_state_in_order
from rlt_core.data.graph_episodes import EPISODE_SOURCES, EpisodeAssembler, recorder_features
from rlt_core.data.lerobot import DemoWriter, profile_features
from rlt_core.data.mcap_log import McapLog, message_definition
from rlt_interfaces.msg import ActionChunk, EpisodeEvent, RLToken
from rlt_nodes import cameras
from rlt_nodes.conversions import msg_to_chunk, stamp_ns
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import CHUNK_QOS, EVENTS_QOS, LATCHED_QOS, STATS_QOS
from rlt_nodes.rejections import Rejections
from rlt_nodes.spin import spin_node

DEEP = 200
"""History depth of the recorder's subscriptions: nothing is dropped while a callback waits."""


def _deeper(qos: QoSProfile) -> QoSProfile:
    return QoSProfile(depth=max(qos.depth, DEEP), reliability=qos.reliability, durability=qos.durability)


def graph_topics(profile: RobotProfile) -> dict:
    """The topics the recorder knows: name -> (message type, the QoS its subscription asks for)."""
    reliable = _deeper(QoSProfile(depth=10))
    sensor = QoSProfile(depth=20, reliability=qos_profile_sensor_data.reliability,
                        durability=qos_profile_sensor_data.durability)
    topics = {'joint_states': (JointState, reliable)}
    topics.update({camera.image_topic: (cameras.message_type(camera), sensor) for camera in profile.cameras})
    topics.update({
        'rlt/executed_chunk': (ActionChunk, _deeper(CHUNK_QOS)),
        'rlt/reference_chunk': (ActionChunk, _deeper(CHUNK_QOS)),
        'rlt/actor_chunk': (ActionChunk, _deeper(CHUNK_QOS)),
        'rlt/rl_token': (RLToken, _deeper(CHUNK_QOS)),
        'episode/events': (EpisodeEvent, _deeper(EVENTS_QOS)),
        'rlt/episode_stats': (String, STATS_QOS),
        'rlt/emergency_stop_state': (Bool, LATCHED_QOS),
        'joy': (Joy, reliable),
        f'{profile.controller_name}/joint_trajectory': (JointTrajectory, reliable),
    })
    return topics


def type_name(message_type) -> str:
    """'pkg/msg/Name' of a message class."""
    return f"{message_type.__module__.split('.')[0]}/msg/{message_type.__name__}"


def msg_file(package: str, name: str) -> Path:
    return Path(get_package_share_directory(package)) / 'msg' / f'{name}.msg'


class RecorderNode(Node):
    def __init__(self):
        super().__init__('recorder')
        p = self.declare_parameter
        output = p('output', '', desc('recording folder: dataset/ (LeRobot v3.0) and mcap/ (one file per run); '
                                      'an existing one is appended to')).value
        if not output:
            raise ValueError('recorder: the output parameter (a folder) is required')
        self.profile = profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        self.instruction = p('instruction', 'insert the peg into the hole',
                             desc('the task of the recorded episodes (the LeRobot task)')).value
        episode_source = p('episode_source', 'any', desc(
            f"episodes from {EPISODE_SOURCES}: 'any' EPISODE_START/END on episode/events, 'operator' only the "
            "arbiter's operator episodes")).value
        tolerance = p('image_tolerance_s', 0.5 / profile.control_hz,
                      desc('an image within this of a joint state belongs to its step, s')).value
        settle = p('settle_s', 0.5, desc('an episode is written this long after its end (late messages), s')).value
        self.png_level = p('png_level', 1, desc('PNG zlib level 0-9 of the dataset images')).value
        record_mcap = p('mcap', True, desc('also record the raw topics as MCAP')).value
        known = graph_topics(profile)
        mcap_topics = p('mcap_topics', list(known), desc('topics recorded as MCAP (of the graph\'s)')).value
        mcap_flush = p('mcap_flush_s', 1.0, desc('the MCAP file is flushed this often (what a crash keeps), s')).value
        if float(profile.control_hz) != int(profile.control_hz):
            raise ValueError(f'the dataset fps is the control rate, which must be an integer: {profile.control_hz}')
        unknown = sorted(set(mcap_topics) - set(known))
        if unknown:
            raise ValueError(f'mcap_topics {unknown} are not among the graph topics {sorted(known)}')

        self.fps = int(profile.control_hz)
        recording = {'generator': 'rlt_nodes.recorder', 'robot_profile': profile.to_dict()}
        self.writer = DemoWriter(Path(output) / 'dataset', profile_features(profile, recorder_features(profile)),
                                 self.fps, recording, robot_type=profile.name, flush_every=1)
        self.assembler = EpisodeAssembler(profile, int(tolerance * 1e9), episode_source, settle_s=settle)
        self.rejections = Rejections(self)
        self.episodes: queue.Queue = queue.Queue()
        self.writing = threading.Thread(target=self.write_episodes, name='episode writer', daemon=True)
        self.writing.start()

        self.mcap = None
        if record_mcap:
            stamp = datetime.now(UTC).strftime('%Y%m%dT%H%M%S_%fZ')
            self.mcap = McapLog(Path(output) / 'mcap' / f'{stamp}.mcap')
        # Joint states first: a callback's order among messages that wait together follows the subscriptions'
        # (an operator's episode start must find the joint state it was started on).
        self.dataset_handlers = {'joint_states': self.on_joint_state, 'rlt/executed_chunk': self.on_executed_chunk,
                                 'rlt/reference_chunk': self.on_reference_chunk, 'episode/events': self.on_event}
        self.dataset_handlers.update({camera.image_topic: (lambda msg, camera=camera: self.on_image(camera, msg))
                                      for camera in profile.cameras})
        for topic, (message_type, qos) in known.items():
            logged = self.mcap is not None and topic in mcap_topics
            if topic not in self.dataset_handlers and not logged:
                continue
            channel = None
            if logged:
                channel = self.mcap.add_topic(self.resolve_topic_name(topic), type_name(message_type),
                                              message_definition(type_name(message_type), msg_file))
            self.create_subscription(message_type, topic, self.make_callback(topic, message_type, channel), qos,
                                     raw=True)
        if self.mcap is not None:
            self.create_timer(mcap_flush, self.mcap.flush)
        self.create_timer(0.1, self.on_timer)
        self.get_logger().info(
            f'recorder: robot profile {profile.name} ({profile.hash}), dataset {self.writer.root} '
            f'({self.writer.num_episodes} episodes so far), episodes from {episode_source}'
            + (f', MCAP {self.mcap.path} ({len(mcap_topics)} topics)' if self.mcap else ''))

    def make_callback(self, topic, message_type, channel):
        handler = self.dataset_handlers.get(topic)

        def on_message(data: bytes):
            if channel is not None:
                self.mcap.write(channel, data, time.time_ns())
            if handler is not None:
                handler(deserialize_message(data, message_type))
        return on_message

    # --- the dataset's topics ---

    def on_joint_state(self, msg: JointState):
        try:
            position, velocity = joint_state_in_order(msg.name, msg.position, msg.velocity, self.profile.joint_names)
        except ValueError as err:
            self.rejections.refuse('joint_states', err)
            return
        self.assembler.joint_state(stamp_ns(msg.header), position, velocity)

    def on_image(self, camera, msg):
        try:
            rgb = cameras.to_rgb(camera, msg)
        except ValueError as err:
            self.rejections.refuse(camera.image_topic, err)
            return
        self.assembler.image(camera.name, stamp_ns(msg.header), rgb)

    def on_executed_chunk(self, msg: ActionChunk):
        try:
            rows = msg_to_chunk(msg)
        except ValueError as err:
            self.rejections.refuse('rlt/executed_chunk', err)
            return
        if rows.shape[1] != self.profile.action_dim:
            self.rejections.refuse('rlt/executed_chunk', f'action_dim {rows.shape[1]} != {self.profile.action_dim}')
            return
        self.assembler.executed_chunk(stamp_ns(msg.header), msg.chunk_index, msg.source, rows, msg.step_index,
                                      msg.episode_id)

    def on_reference_chunk(self, msg: ActionChunk):
        try:
            self.assembler.reference_chunk(stamp_ns(msg.header), msg_to_chunk(msg))
        except ValueError as err:
            self.rejections.refuse('rlt/reference_chunk', err)

    def on_event(self, msg: EpisodeEvent):
        a, e = self.assembler, EpisodeEvent
        if msg.event == e.EPISODE_START:
            if a.start(msg.episode_id, stamp_ns(msg.header), msg.detail):
                self.get_logger().info(f'recording graph episode {msg.episode_id} ({msg.detail})')
        elif msg.event == e.EPISODE_END:
            a.end(msg.episode_id, msg.step_index, msg.success, msg.detail, time.monotonic(), msg.chunk_count)
        elif msg.event in (e.PHASE_ENTER_CRITICAL, e.PHASE_EXIT_CRITICAL):
            a.phase(msg.event == e.PHASE_ENTER_CRITICAL, msg.step_index, by_human=msg.detail == 'human')
        elif msg.event in (e.LABEL_SUCCESS, e.LABEL_FAILURE):
            a.label(msg.event == e.LABEL_SUCCESS)
        elif msg.event == e.TAKEOVER_END:
            a.takeover_end(stamp_ns(msg.header), msg.step_index)

    # --- writing ---

    def on_timer(self):
        for episode in self.assembler.take_finished(time.monotonic()):
            self.episodes.put(episode)

    def write_episodes(self):
        """The writer thread: PNG-encodes and writes each finished episode, in order, until a None arrives."""
        while (recorded := self.episodes.get()) is not None:
            episode = recorded.to_dataset_episode(self.instruction, self.fps, self.png_level)
            index = self.writer.add_episode(episode)
            self.get_logger().info(f'episode {index} recorded (graph episode {recorded.episode_id}): '
                                   f'{recorded.length} frames, success={recorded.metadata["success"]}, '
                                   f'steps by source {recorded.metadata["steps_by_source"]}')

    def destroy_node(self):
        """Write the episodes that ended, finish the MCAP file; the episode still running has no end: dropped."""
        for episode in self.assembler.close():
            self.episodes.put(episode)
        self.episodes.put(None)
        self.writing.join()
        self.writer.close()
        if self.mcap is not None:
            self.mcap.close()
        if self.assembler.ignored:
            self.get_logger().info(f'not recorded: {self.assembler.ignored}')
        super().destroy_node()


def main(args=None):
    spin_node(RecorderNode, args)


if __name__ == '__main__':
    main()
