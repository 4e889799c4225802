"""The emergency stop, on real processes: the sim robot driven by the arbiter, an operator on the joystick.

The stop (topic or joystick button) sends the robot to hold where it is, ends the episode, and wins over the
joystick's takeover until the reset service or button releases it, also across a crash of the arbiter
(SIGKILL); its state is latched and in the markers.
"""

import os
import time

import numpy as np
from conftest import write_profile
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from rlt_bringup.tiny_models import make_tiny_models
from rlt_core.control.teleop import JoyMapping
from rlt_nodes.qos import LATCHED_QOS, STATS_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
MAPPING = JoyMapping()


def _executable(package, name):
    return os.path.join(INSTALL, package, 'lib', package, name)


def test_emergency_stop_holds_the_robot_over_the_joystick_until_reset(processes, test_node, tmp_path):
    vla, _ = make_tiny_models(tmp_path / 'models')
    profile = write_profile(tmp_path / 'cell.yaml', max_steps=100_000)
    common = ['--ros-args', '-p', f'robot_profile:={profile}']
    processes.spawn(_executable('rlt_sim_nodes', 'sim_robot'), *common, '-p', 'render:=false')
    arbiter = processes.spawn(_executable('rlt_nodes', 'arbiter'), *common, '-p', f'vla_path:={vla}',
                              '-p', 'episode_source:=operator')
    node = test_node.node
    joints, trajectories, states, stats, stop_markers = [], [], [], [], []
    node.create_subscription(JointState, 'joint_states', joints.append, 10)
    commands = node.create_subscription(JointTrajectory, 'gantry_controller/joint_trajectory', trajectories.append,
                                        100)
    node.create_subscription(Bool, 'rlt/emergency_stop_state', lambda m: states.append(m.data), LATCHED_QOS)
    node.create_subscription(String, 'rlt/episode_stats', stats.append, STATS_QOS)
    markers = node.create_subscription(MarkerArray, 'rlt/markers', lambda m: stop_markers.extend(
        k for k in m.markers if k.ns == 'emergency_stop'), 100)
    joy = node.create_publisher(Joy, 'joy', 10)
    stop = node.create_publisher(Bool, 'rlt/emergency_stop', 10)
    reset = node.create_client(Trigger, 'rlt/reset_emergency_stop')

    def drive(buttons=(), x=1.0):
        """The operator holds the dead-man button and pushes x (and presses `buttons`)."""
        msg = Joy(axes=[0.0] * 8, buttons=[0] * 12)
        msg.buttons[MAPPING.deadman_button] = 1
        msg.axes[MAPPING.axes[0]] = x
        for b in buttons:
            msg.buttons[b] = 1
        joy.publish(msg)

    def next_joint_state():
        n = len(joints)
        return test_node.spin_until(lambda: len(joints) > n, timeout=5)

    def driving_for(steps, x=1.0):
        """Drive for `steps` joint states; the number of chunks (trajectories of more than one point, not holds)
        sent meanwhile."""
        n, sent = len(joints), len(trajectories)
        while len(joints) < n + steps:
            drive(x=x)
            next_joint_state()
        return sum(len(t.points) > 1 for t in trajectories[sent:])

    def hold_after(sent):
        """The first hold (a one-point trajectory) sent after the first `sent` trajectories, or None."""
        return next((t for t in trajectories[sent:] if len(t.points) == 1), None)

    def drive_until(condition, x=1.0, timeout=30.0):
        """Drive, one Joy per joint state, until `condition()` (a loaded machine can take a while to answer)."""
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            drive(x=x)
            next_joint_state()
        return condition()

    def position():
        return np.array(joints[-1].position)

    def fail(what):
        return f'{what}\n{processes.stop(arbiter)[-3000:]}'

    assert test_node.spin_until(lambda: joints and states == [False] and stop.get_subscription_count()
                                and joy.get_subscription_count() and commands.get_publisher_count()
                                and markers.get_publisher_count()
                                and reset.service_is_ready(), timeout=60), fail('arbiter not up')

    # The joystick drives the robot.
    x0 = position()[0]
    assert drive_until(lambda: position()[0] > x0 + 0.005), fail('the joystick did not move the robot')

    # The stop: one hold point where the robot is measured; the latched state and a red marker.
    sent = len(trajectories)
    stop.publish(Bool(data=True))
    assert test_node.spin_until(lambda: states[-1] and hold_after(sent), timeout=10), fail('no hold')
    hold = hold_after(sent)
    assert np.max(np.abs(np.array(hold.points[0].positions) - position())) < 0.006  # at most a step behind
    assert test_node.spin_until(lambda: stop_markers and stop_markers[-1].action == Marker.ADD, timeout=5)
    assert 'EMERGENCY STOP' in stop_markers[-1].text
    assert test_node.spin_until(lambda: stats, timeout=10), fail('the stopped episode was not reported')
    assert '"emergency_stop": "rlt/emergency_stop"' in stats[-1].data and '"success": false' in stats[-1].data

    # The joystick's takeover does not move the robot while the stop is latched.
    def settled():  # the hold point reached: five joint states alike
        return len(joints) > 5 and np.ptp([j.position for j in joints[-5:]], axis=0).max() < 1e-6
    assert test_node.spin_until(settled, timeout=10), fail('the robot did not come to rest')
    held = position()
    assert driving_for(30) == 0
    assert np.max(np.abs(position() - held)) < 1e-4, fail(f'moved while stopped: {held} -> {position()}')

    # Released by the service: the joystick drives again.
    future = reset.call_async(Trigger.Request())
    assert test_node.spin_until(future.done, timeout=10) and future.result().success
    assert test_node.spin_until(lambda: states[-1] is False and stop_markers[-1].action == Marker.DELETE,
                                timeout=5)
    x1 = position()[0]
    assert drive_until(lambda: position()[0] < x1 - 0.005, x=-1.0), fail('no control after the reset')

    # The joystick's own stop button latches it too.
    sent = len(trajectories)
    drive([MAPPING.estop_button])
    assert test_node.spin_until(lambda: states[-1] is True and hold_after(sent), timeout=10), \
        fail('joystick stop ignored')
    assert driving_for(10) == 0

    # The arbiter crashes while stopped: the one that replaces it starts stopped and ignores the joystick until a
    # reset (its hold at the first measurement may go out before this node has matched it).
    processes.kill(arbiter)
    states.clear()
    arbiter = processes.spawn(*arbiter.args)
    assert test_node.spin_until(lambda: states == [True] and joy.get_subscription_count(), timeout=60), \
        fail('the restarted arbiter did not start stopped')
    assert test_node.spin_until(settled, timeout=10)
    held = position()
    assert driving_for(10) == 0 and np.max(np.abs(position() - held)) < 1e-4

    # The joystick's reset button (with the stop button up) releases it.
    drive([MAPPING.estop_reset_button])
    assert test_node.spin_until(lambda: states[-1] is False, timeout=10), fail('joystick reset ignored')
    x2 = position()[0]
    assert drive_until(lambda: position()[0] > x2 + 0.005), fail('no control after the reset')
    assert arbiter.poll() is None
