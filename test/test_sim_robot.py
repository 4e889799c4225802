"""The sim robot node in its own process, driven from this one as a real robot would be."""

import os

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from conftest import write_profile
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from rlt_interfaces.msg import EpisodeEvent
from rlt_nodes.qos import EVENTS_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
JOINTS = ['j_x', 'j_y', 'j_z']  # the test's robot profile: other joint names, controller and image size


def _trajectory(names, points, dt=0.05):
    msg = JointTrajectory(joint_names=list(names))
    for k, pos in enumerate(points, start=1):
        t = k * dt
        msg.points.append(JointTrajectoryPoint(
            positions=[float(v) for v in pos],
            time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))))
    return msg


def test_sim_robot_follows_trajectories_publishes_images_and_refuses_bad_commands(processes, test_node, tmp_path):
    profile = write_profile(tmp_path / 'cell.yaml', image_size=64, joint_names=tuple(JOINTS),
                            controller_name='test_controller')
    sim = processes.spawn(
        os.path.join(INSTALL, 'rlt_sim_nodes', 'lib', 'rlt_sim_nodes', 'sim_robot'),
        '--ros-args', '-p', f'robot_profile:={profile}', '-p', 'seed:=3',
        '-p', 'wait_for_subscribers:=[episode_follower]')
    node = test_node.node
    joints, images, events = [], {}, []
    node.create_subscription(JointState, 'joint_states', joints.append, 10)
    for cam in ('scene', 'wrist_left', 'wrist_right'):
        node.create_subscription(Image, f'cameras/{cam}/image_raw',
                                 lambda m, cam=cam: images.setdefault(cam, []).append(m),
                                 qos_profile_sensor_data)
    node.create_subscription(EpisodeEvent, 'episode/events', events.append,
                             EVENTS_QOS)
    cmd_pub = node.create_publisher(JointTrajectory, 'test_controller/joint_trajectory', 10)

    def ready():
        return len(joints) >= 5 and len(images) == 3 and cmd_pub.get_subscription_count()

    assert test_node.spin_until(ready, timeout=60), processes.stop(sim)

    # Images: the configured size, rgb8, stamped like the joint states of the same step.
    for cam, msgs in images.items():
        m = msgs[-1]
        assert (m.height, m.width, m.encoding, m.step, len(m.data)) == (64, 64, 'rgb8', 192, 64 * 64 * 3)
        assert m.header.frame_id == f'{cam}_optical_frame'
    joint_stamps = {(j.header.stamp.sec, j.header.stamp.nanosec) for j in joints}
    assert (images['scene'][-1].header.stamp.sec, images['scene'][-1].header.stamp.nanosec) in joint_stamps

    def position():
        return np.array(joints[-1].position)

    def settle(n=6):
        count = len(joints)
        test_node.spin_until(lambda: len(joints) >= count + n, timeout=10)
        return position()

    start = settle()
    assert list(joints[-1].name) == JOINTS

    # A valid command: +10 mm in x and +5 mm up over 10 control steps (joint names reordered).
    goal = start + [0.010, 0.0, 0.005]
    cmd_pub.publish(_trajectory(['j_z', 'j_x', 'j_y'],
                                [[start[2] + (goal[2] - start[2]) * k / 10,
                                  start[0] + (goal[0] - start[0]) * k / 10, start[1]] for k in range(1, 11)]))
    moved = settle(30)
    np.testing.assert_allclose(moved, goal, atol=1e-3)

    # Invalid commands are refused and never move the robot.
    bad = [
        _trajectory(['j_x', 'j_y', 'elbow'], [goal + [0.01, 0, 0]]),           # wrong joints
        _trajectory(JOINTS, [[float('nan'), goal[1], goal[2]]]),                       # NaN
        _trajectory(JOINTS, [[0.5, goal[1], goal[2]]]),                                 # outside limits
    ]
    for msg in bad:
        cmd_pub.publish(msg)
    still = settle(20)
    np.testing.assert_allclose(still, moved, atol=2e-4)

    # Reset is refused until the nodes that follow episodes subscribe to episode/events, then starts a
    # new episode, announced there.
    client = node.create_client(Trigger, 'sim/reset')
    assert client.wait_for_service(timeout_sec=10)

    def reset():
        future = client.call_async(Trigger.Request())
        assert test_node.spin_until(future.done, timeout=10)
        return future.result()

    refused = reset()
    assert not refused.success and 'episode_follower' in refused.message
    follower = rclpy.create_node('episode_follower', context=test_node.context)
    follower.create_subscription(EpisodeEvent, 'episode/events', lambda m: None, 10)
    test_node.executor.add_node(follower)
    assert test_node.spin_until(lambda: reset().success, timeout=20)
    assert test_node.spin_until(lambda: sum(e.event == EpisodeEvent.EPISODE_START for e in events) >= 1,
                                timeout=10)
    test_node.executor.remove_node(follower)
    follower.destroy_node()

    out = processes.stop(sim)
    assert sim.returncode == 0, out
    assert 'do not match the robot joints' in out
    assert 'NaN or infinite' in out
    assert 'j_x=0.500000 outside' in out
