"""Keyboard teleop: drive the robot from a terminal as with a joystick (publishes sensor_msgs/Joy).

  ros2 run rlt_nodes keyboard_teleop      (or: ./rlt exec python -m rlt_nodes.keyboard_teleop)

Keys (each press holds the dead-man button and moves for `hold_s`):
  w/s  +y/-y     a/d  -x/+x     r/f  up/down (z)
  space  stop (dead-man released)     p  toggle the critical phase
  1  label success     0  label failure     q  quit
  x  EMERGENCY STOP (latched)          z  reset the emergency stop
Axes and buttons follow the arbiter's default mapping (`rlt_core.control.teleop.JoyMapping`: LB dead-man,
axes 0/1/4 = x/y/z, A success, B failure, RB phase, Back emergency stop, Start reset). Readings go out once
per control step of the robot profile (`robot_profile`). `key_to_joy` is the pure mapping.
"""

import select
import sys
import termios
import tty

from rclpy.node import Node
from sensor_msgs.msg import Joy

from rlt_core.control.profile import RobotProfile
from rlt_core.control.teleop import JoyMapping
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.spin import spin_node

N_AXES, N_BUTTONS = 8, 12
MAPPING = JoyMapping()
DEADMAN = MAPPING.deadman_button
X, Y, Z = MAPPING.axes
MOVES = {'a': (X, -1.0), 'd': (X, 1.0), 'w': (Y, 1.0), 's': (Y, -1.0), 'r': (Z, 1.0), 'f': (Z, -1.0)}
BUTTONS = {'1': MAPPING.success_button, '0': MAPPING.failure_button, 'p': MAPPING.phase_button,
           'x': MAPPING.estop_button, 'z': MAPPING.estop_reset_button}


def key_to_joy(key: str, speed: float = 0.5):
    """(axes, buttons) a joystick would report for `key`; None for an unknown key.

    Movement keys hold the dead-man button and deflect one axis by `speed` (0..1); label and
    phase keys press their button without the dead-man; space releases everything.
    """
    axes, buttons = [0.0] * N_AXES, [0] * N_BUTTONS
    if key in MOVES:
        axis, sign = MOVES[key]
        axes[axis] = sign * max(0.0, min(1.0, speed))
        buttons[DEADMAN] = 1
    elif key in BUTTONS:
        buttons[BUTTONS[key]] = 1
    elif key != ' ':
        return None
    return axes, buttons


class KeyboardTeleopNode(Node):
    def __init__(self):
        super().__init__('keyboard_teleop')
        self.profile = RobotProfile.load(self.declare_parameter('robot_profile', '', ROBOT_PROFILE).value)
        self.speed = self.declare_parameter('speed', 0.5, desc('axis deflection of a key press, 0..1')).value
        self.hold_s = self.declare_parameter('hold_s', 0.15, desc('a key press keeps moving this long, s')).value
        self.pub = self.create_publisher(Joy, 'joy', 10)
        self.last = None
        self.last_time = 0.0
        self.create_timer(self.profile.dt, self.on_timer)  # one Joy reading per control step
        print(__doc__.split('\n\n')[1])
        print(f'robot {self.profile.name}: axes 0/1/4 drive {", ".join(self.profile.joint_names[:3])}')

    def on_timer(self):
        now = self.get_clock().now().nanoseconds * 1e-9
        if select.select([sys.stdin], [], [], 0)[0]:
            key = sys.stdin.read(1)
            if key == 'q':
                raise KeyboardInterrupt
            joy = key_to_joy(key, self.speed)
            if joy is not None:
                self.last, self.last_time = joy, now
        if self.last is not None:
            axes, buttons = self.last
            if now - self.last_time > self.hold_s:  # released: send one all-zero reading, then nothing
                axes, buttons, self.last = [0.0] * N_AXES, [0] * N_BUTTONS, None
            msg = Joy(axes=axes, buttons=buttons)
            msg.header.stamp = self.get_clock().now().to_msg()
            self.pub.publish(msg)


def main(args=None):
    if not sys.stdin.isatty():
        print('keyboard_teleop needs an interactive terminal', file=sys.stderr)
        return 1
    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin.fileno())
        spin_node(KeyboardTeleopNode, args)
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
    return 0


if __name__ == '__main__':
    sys.exit(main())
