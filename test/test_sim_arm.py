"""The simulated arm in its own process as a ros2_control robot with camera drivers presents one: joint_states of
its joints, images in the drivers' encoding at the cameras' resolution, commands on the JointTrajectoryController's
topic. The arbiter (operator episodes, no VLA) drives it from an operator's joystick: the tool moves where the
stick points, the peg's orientation held; after the operator's label the arm moves home before the next episode
starts. A critical zone taught where the tool is starts the critical phase."""

import os
from dataclasses import replace

import numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState, Joy
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from rlt_core.control.engine import joint_step_limits
from rlt_core.control.homing import HOME_TOLERANCE, HOMING_SPEED_FRACTION
from rlt_core.control.profile import RobotProfile
from rlt_core.control.teleop import JoyMapping
from rlt_interfaces.msg import EpisodeEvent
from rlt_nodes.conversions import stamp_ns
from rlt_nodes.qos import EVENTS_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
MAPPING = JoyMapping()


def _executable(package, name):
    return os.path.join(INSTALL, package, 'lib', package, name)


def test_the_operator_drives_the_simulated_arm_through_the_arbiter(processes, test_node, tmp_path):
    arm = RobotProfile.load('ur5e_cell')
    cameras = tuple(replace(c, width=32, height=32) for c in arm.cameras)
    profile = replace(arm, cameras=cameras, max_steps=100_000)
    path = str(profile.save(tmp_path / 'arm.yaml'))
    common = ['--ros-args', '-p', f'robot_profile:={path}']
    processes.spawn(_executable('rlt_sim_nodes', 'sim_robot'), *common)
    processes.spawn(_executable('rlt_nodes', 'arbiter'), *common, '-p', 'vla_path:=none',
                    '-p', 'episode_source:=operator', '-p', 'critical_zone_radius_m:=0.02')
    node = test_node.node
    joints, images, commands = [], {c.name: [] for c in cameras}, []
    node.create_subscription(JointState, 'joint_states', joints.append, 100)
    for c in cameras:
        node.create_subscription(Image, f'cameras/{c.name}/image_raw', images[c.name].append,
                                 qos_profile_sensor_data)
    trajectories = f'{profile.controller_name}/joint_trajectory'
    commanded = node.create_subscription(JointTrajectory, trajectories, commands.append, 100)
    events = []
    heard = node.create_subscription(EpisodeEvent, 'episode/events', events.append, EVENTS_QOS)
    joy = node.create_publisher(Joy, 'joy', 10)
    assert test_node.spin_until(lambda: joints and all(images.values()) and joy.get_subscription_count()
                                and commanded.get_publisher_count() and heard.get_publisher_count()
                                and node.count_subscribers('joint_states') > 1,
                                timeout=60), 'the sim arm and the arbiter did not come up'

    assert list(joints[-1].name) == list(profile.joint_names) and len(joints[-1].velocity) == 6
    for c in cameras:  # as the camera driver publishes: its encoding, its resolution, stamped like the joints
        image = images[c.name][-1]
        assert (image.encoding, image.width, image.height, image.step) == ('bgr8', 32, 32, 96)
        assert {stamp_ns(m.header) for m in images[c.name][:-1]} <= {stamp_ns(j.header) for j in joints}

    kinematics = profile.kinematics()
    start = kinematics.fk(np.array(joints[-1].position))

    def steps(n, msg):
        for _ in range(n):
            count = len(joints)
            joy.publish(msg)
            assert test_node.spin_until(lambda c=count: len(joints) > c, timeout=5), 'no joint states'

    held = Joy(axes=[0.0] * 8, buttons=[0] * 12)
    held.buttons[MAPPING.deadman_button] = 1
    held.axes[MAPPING.axes[0]] = 1.0  # full stick along the first axis: the tool along the base's x
    steps(20, held)
    released = Joy(axes=[0.0] * 8, buttons=[0] * 12)
    steps(10, released)  # let go: the arm holds, its servos settle
    assert commands, 'no trajectory reached the controller'
    for traj in commands:
        assert list(traj.joint_names) == list(profile.joint_names)
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
        np.testing.assert_allclose(times, profile.dt * np.arange(1, len(times) + 1), atol=1e-6)
    end = kinematics.fk(np.array(joints[-1].position))
    moved = end[:3, 3] - start[:3, 3]
    sign = MAPPING.axis_signs[0]
    assert sign * moved[0] > 0.02 and np.all(np.abs(moved[1:]) < 0.002), moved  # along x only, ~5 mm a step
    np.testing.assert_allclose(end[:3, :3], start[:3, :3], atol=2e-3)  # the peg's orientation held

    # The operator teaches the critical zone where the tool is: the critical phase begins at the next step.
    teach = node.create_client(Trigger, 'rlt/teach_critical_zone')
    assert teach.wait_for_service(timeout_sec=10)
    future = teach.call_async(Trigger.Request())
    assert test_node.spin_until(future.done, timeout=10) and future.result().success, future.result()
    steps(2, released)
    entered = [e for e in events if e.event == EpisodeEvent.PHASE_ENTER_CRITICAL]
    assert entered and entered[-1].detail == 'zone', [(e.event, e.detail) for e in events]

    # The operator labels the episode: the arm goes home, slowly, and the next episode starts there.
    label = Joy(axes=[0.0] * 8, buttons=[0] * 12)
    label.buttons[MAPPING.success_button] = 1
    steps(1, label)
    steps(1, released)
    assert test_node.spin_until(lambda: any(e.event == EpisodeEvent.EPISODE_END for e in events), timeout=10)
    ended = max(i for i, e in enumerate(events) if e.event == EpisodeEvent.EPISODE_END)
    assert test_node.spin_until(lambda: any(e.event == EpisodeEvent.EPISODE_START for e in events[ended:]),
                                timeout=30), 'no episode after the homing move'
    assert np.all(np.abs(np.array(joints[-1].position) - profile.home) <= 2 * HOME_TOLERANCE)
    homing = np.array([p.positions for p in commands[-1].points])
    np.testing.assert_allclose(homing[-1], profile.home, atol=1e-6)
    slow = HOMING_SPEED_FRACTION * np.asarray(joint_step_limits(profile).high) + 1e-6  # slow, well within the limits
    assert len(homing) > 1 and np.all(np.abs(np.diff(homing, axis=0)) <= slow), homing
