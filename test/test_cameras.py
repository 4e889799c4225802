"""Cameras as drivers publish them, on real processes: the ingestion node takes a bgr8 camera at a larger
resolution with padded rows, a JPEG CompressedImage camera on a remapped topic and a mono8 camera, and publishes
observations whose images are rgb8 at the robot profile's size, with the content OpenCV gives of what was
published. Images it cannot convert are refused and counted with their reason on /diagnostics."""

import array
import os

import cv2
import numpy as np
from conftest import write_profile
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from rlt_core.control.profile import Camera, RobotProfile
from rlt_interfaces.msg import Observation
from rlt_nodes.conversions import stamp_ns
from rlt_nodes.qos import OBSERVATION_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
INGESTION = os.path.join(INSTALL, 'rlt_nodes', 'lib', 'rlt_nodes', 'ingestion')
HEIGHT, WIDTH = 24, 32
"""The size the profile gives every camera: what the VLA sees."""
CAMERAS = (
    Camera('scene', encoding='bgr8', width=WIDTH, height=HEIGHT),  # cameras/scene/image_raw
    Camera('wrist_left', encoding='jpeg', width=WIDTH, height=HEIGHT,
           topic='/wrist_left_cam/color/image_raw/compressed'),  # image_transport's compressed republisher
    Camera('wrist_right', encoding='mono8', width=WIDTH, height=HEIGHT))


def scene(height, width, seed):
    """A smooth colour image (JPEG keeps it well) that differs with `seed`, RGB."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 255 // width + seed * 40) % 256, y * 255 // height, 255 - x * 200 // width],
                    axis=-1).astype(np.uint8)


def driver_messages(seed, stamp):
    """What three drivers publish for one frame, and the RGB image OpenCV makes of each at the profile's size."""
    shrink = dict(dsize=(WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(scene(96, 128, seed), cv2.COLOR_RGB2BGR)
    step = 128 * 3 + 4  # padded rows, as some drivers align them
    rows = np.zeros((96, step), np.uint8)
    rows[:, :128 * 3] = bgr.reshape(96, -1)
    raw = Image(height=96, width=128, encoding='bgr8', is_bigendian=0, step=step)
    raw.data = array.array('B', rows.tobytes())
    ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(scene(60, 80, seed + 1), cv2.COLOR_RGB2BGR))
    assert ok
    compressed = CompressedImage(format='rgb8; jpeg compressed bgr8')
    compressed.data = array.array('B', jpeg.tobytes())
    gray = scene(30, 40, seed + 2)[..., 1].copy()
    mono = Image(height=30, width=40, encoding='mono8', is_bigendian=0, step=40)
    mono.data = array.array('B', gray.tobytes())
    expected = [cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), **shrink),
                cv2.resize(cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), **shrink),
                cv2.resize(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), **shrink)]
    messages = [raw, compressed, mono]
    for msg in messages:
        msg.header.stamp = stamp
    return messages, expected


def test_ingestion_converts_what_camera_drivers_publish(processes, test_node, tmp_path):
    profile_path = write_profile(tmp_path / 'cameras.yaml', cameras=CAMERAS)
    profile = RobotProfile.load(profile_path)
    assert [c.compressed for c in profile.cameras] == [False, True, False]
    ingestion = processes.spawn(INGESTION, '--ros-args', '-p', f'robot_profile:={profile_path}')
    out = processes.read_until(ingestion, 'ingestion: robot profile', timeout=60)
    assert '/wrist_left_cam/color/image_raw/compressed (compressed)' in out, out[-3000:]

    node = test_node.node
    image_pubs = [node.create_publisher(CompressedImage if c.compressed else Image, c.image_topic,
                                        qos_profile_sensor_data) for c in profile.cameras]
    joint_pub = node.create_publisher(JointState, 'joint_states', 10)
    observations, diagnostics = {}, []
    node.create_subscription(Observation, 'rlt/observation', lambda m: observations.update({stamp_ns(m.header): m}),
                             OBSERVATION_QOS)
    node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    publishers = [*image_pubs, joint_pub]
    assert test_node.spin_until(lambda: all(p.get_subscription_count() for p in publishers), timeout=30), \
        processes.stop(ingestion)[-3000:]

    def publish_frame(seed, messages=None):
        """One frame of every camera and a joint state, all stamped now; returns (stamp, expected images)."""
        stamp = node.get_clock().now().to_msg()
        camera_messages, expected = driver_messages(seed, stamp)
        for pub, msg in zip(image_pubs, messages or camera_messages, strict=True):
            pub.publish(msg)
        joints = JointState(name=list(profile.joint_names), position=[0.01 * seed] * 3, velocity=[0.0] * 3)
        joints.header.stamp = stamp
        joint_pub.publish(joints)
        return stamp_ns(joints.header), expected

    checked = 0
    for seed in range(40):  # best-effort images may be dropped: frames until three observations arrived
        stamp, expected = publish_frame(seed)
        if not test_node.spin_until(lambda s=stamp: s in observations, timeout=1.0):
            continue
        obs = observations[stamp]
        assert list(obs.camera_names) == list(profile.camera_names)
        for camera, image, want in zip(profile.cameras, obs.images, expected, strict=True):
            assert (image.encoding, image.height, image.width, image.step) == ('rgb8', HEIGHT, WIDTH, WIDTH * 3), \
                camera.name
            assert stamp_ns(image.header) == stamp
            got = np.frombuffer(image.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
            np.testing.assert_array_equal(got, want, err_msg=camera.name)
        assert obs.joint_state.position[0] == 0.01 * seed
        checked += 1
        if checked == 3:
            break
    assert checked == 3, f'{checked} observations\n{processes.stop(ingestion)[-3000:]}'

    # An encoding the profile does not state, and bytes that are no JPEG: refused, counted, with the reason.
    stamp = node.get_clock().now().to_msg()
    [raw, compressed, mono], _ = driver_messages(0, stamp)
    raw.encoding = 'rgb8'
    compressed.data = array.array('B', b'\xff\xd8 not a jpeg')

    def refused():
        values = {kv.key: kv.value for d in diagnostics for s in d.status if s.name == 'ingestion: refused input'
                  for kv in s.values}
        return values if {'cameras/scene/image_raw', '/wrist_left_cam/color/image_raw/compressed'} <= set(values) \
            else None
    for seed in range(50):
        before = len(observations)
        publish_frame(100 + seed, [raw, compressed, mono])
        if test_node.spin_until(refused, timeout=0.5):
            break
        assert len(observations) == before  # no observation without a usable image of every camera
    values = refused()
    assert values, processes.stop(ingestion)[-3000:]
    assert "encoding 'rgb8' is not bgr8 (robot profile, camera scene)" in values['cameras/scene/image_raw']
    assert 'does not decode' in values['/wrist_left_cam/color/image_raw/compressed']


def test_the_recorder_logs_each_camera_as_its_driver_publishes_it(tmp_path):
    """The recorder subscribes each camera's topic with its message type: the MCAP log keeps the drivers'
    messages, with their message definitions."""
    from rlt_core.data.mcap_log import message_definition
    from rlt_nodes.recorder import graph_topics, msg_file, type_name
    profile = RobotProfile.load(write_profile(tmp_path / 'cameras.yaml', cameras=CAMERAS))
    topics = graph_topics(profile)
    assert topics['cameras/scene/image_raw'][0] is Image and topics['cameras/wrist_right/image_raw'][0] is Image
    assert topics['/wrist_left_cam/color/image_raw/compressed'][0] is CompressedImage
    assert 'string format' in message_definition(type_name(CompressedImage), msg_file)


def test_the_simulated_robot_publishes_cameras_as_their_drivers_would(processes, test_node, tmp_path):
    """sim_robot publishes a mono8 camera, a PNG camera on a remapped compressed topic and an `any` camera (rgb8);
    ingestion turns them into rgb8 observations: the PNG camera's image is exactly the published PNG's, the mono8
    camera's is grey."""
    size = 32
    cameras = (Camera('scene', encoding='mono8', width=size, height=size),
               Camera('wrist_left', encoding='png', width=size, height=size, topic='/sim_wrist_left/compressed'),
               Camera('wrist_right', width=size, height=size))
    profile_path = write_profile(tmp_path / 'sim_cameras.yaml', cameras=cameras)
    args = ['--ros-args', '-p', f'robot_profile:={profile_path}']
    processes.spawn(os.path.join(INSTALL, 'rlt_sim_nodes', 'lib', 'rlt_sim_nodes', 'sim_robot'), *args,
                    '-p', 'wait_for_subscribers:=[episode_follower]')
    ingestion = processes.spawn(INGESTION, *args)
    node = test_node.node
    pngs, observations = {}, []
    node.create_subscription(CompressedImage, '/sim_wrist_left/compressed',
                             lambda m: pngs.update({stamp_ns(m.header): m}), qos_profile_sensor_data)
    node.create_subscription(Observation, 'rlt/observation', observations.append, OBSERVATION_QOS)

    def matched():
        return next((o for o in reversed(observations) if stamp_ns(o.header) in pngs), None)
    assert test_node.spin_until(lambda: matched() is not None, timeout=60), processes.stop(ingestion)[-3000:]
    obs = matched()
    images = {name: np.frombuffer(img.data, np.uint8).reshape(size, size, 3)
              for name, img in zip(obs.camera_names, obs.images, strict=True)}
    assert all((img.encoding, img.height, img.width) == ('rgb8', size, size) for img in obs.images)
    png = pngs[stamp_ns(obs.header)]
    assert png.format == 'rgb8; png compressed bgr8'
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(png.data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(images['wrist_left'], decoded)
    scene = images['scene']
    assert (scene[..., 0] == scene[..., 1]).all() and (scene[..., 1] == scene[..., 2]).all() and scene.std() > 0
    assert not (images['wrist_right'][..., 0] == images['wrist_right'][..., 2]).all()  # colour kept
