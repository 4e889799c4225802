"""Simulated human for unattended sim runs: takes over with the joystick when the robot visibly fails.

Wraps `rlt_sim.human.SimulatedHuman`: it watches the simulator's privileged state (sim/privileged:
peg tip, hole, critical flag, as an operator's eyes would) and, once it wants control, publishes
sensor_msgs/Joy on `joy` every control step with the dead-man button held and axes that encode
the scripted expert's move (axis = move / human_max_delta, as the arbiter's mapping reads it).
It feeds nothing else: the arbiter sees only a joystick.
"""

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64MultiArray

from rlt_core.control.profile import RobotProfile
from rlt_core.control.teleop import JoyMapping, action_to_axes
from rlt_interfaces.msg import EpisodeEvent
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import EVENTS_QOS
from rlt_nodes.spin import spin_node
from rlt_sim.human import SimulatedHuman


class SimHumanNode(Node):
    def __init__(self):
        super().__init__('sim_human')
        p = self.declare_parameter
        self.profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        self.human = SimulatedHuman(profile=self.profile,  # moves within the robot's per-step limit
            rate=p('rate', 0.1, desc('fraction of episodes with an attentive operator')).value,
            patience=p('patience', 20, desc('stalled critical steps before taking over')).value,
            seed=p('seed', 0, desc('seed of who is attentive')).value)
        self.mapping = JoyMapping(
            deadman_button=p('deadman_button', 4, desc('Joy button held to take over')).value,
            axes=tuple(p('axes', [0, 1, 4], desc('Joy axes of x, y, z')).value),
            axis_signs=tuple(p('axis_signs', [1.0, 1.0, 1.0], desc('sign of each axis')).value),
            max_delta=tuple(p('human_max_delta', [0.005, 0.005, 0.005], desc('move at full deflection')).value))
        self.n_buttons = max(8, self.mapping.deadman_button + 1)
        self.pub = self.create_publisher(Joy, 'joy', 10)
        self.create_subscription(Float64MultiArray, 'sim/privileged', self.on_privileged, 10)
        self.create_subscription(EpisodeEvent, 'episode/events', self.on_event, EVENTS_QOS)
        self.needs_reset, self.active, self.in_control = True, False, False
        self.episode = -1

    def on_event(self, msg: EpisodeEvent):
        if msg.event == EpisodeEvent.EPISODE_START:
            self.needs_reset, self.active = True, True
        elif msg.event == EpisodeEvent.EPISODE_END:
            self.active = False
            if self.in_control:
                self.publish(None)

    def on_privileged(self, msg: Float64MultiArray):
        d = np.asarray(msg.data)
        if d.size < 10 or not np.all(np.isfinite(d)):
            self.get_logger().warning(f'sim/privileged ignored: {d.size} values, fewer than 10 or not all finite',
                                      throttle_duration_sec=2.0)
            return
        info = {'peg_tip_pos': d[0:3], 'hole_pos': d[3:6], 'critical_phase': bool(d[6]), 'step': int(d[7])}
        if self.needs_reset or int(d[8]) != self.episode:
            self.human.reset(info)
            self.needs_reset, self.episode, self.in_control = False, int(d[8]), False
        if not self.active:
            return
        if self.human.wants_control(info):
            self.in_control = True
            self.publish(self.human.act({}, info))

    def publish(self, action):
        msg = Joy(buttons=[0] * self.n_buttons, axes=[0.0] * 8)
        msg.header.stamp = self.get_clock().now().to_msg()
        if action is not None:
            msg.buttons[self.mapping.deadman_button] = 1
            msg.axes = action_to_axes(action[:len(self.mapping.axes)], self.mapping, 8)  # an arm's: the translation
        self.pub.publish(msg)


def main(args=None):
    spin_node(SimHumanNode, args)


if __name__ == '__main__':
    main()
