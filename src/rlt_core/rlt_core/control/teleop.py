"""Joystick takeover: sensor_msgs/Joy buttons and axes -> the human's per-step action and commands.

The mapping works with the standard `joy` driver: hold the dead-man button and the chosen axes
move the robot at up to `max_delta` per control step (`human_action` makes the move an action of the robot
profile's space: a move of the joints, or of the tool along the base frame's x, y, z); other buttons
(rising edges) label the episode or toggle the critical phase. A Joy reading older than `timeout_s` counts as released.
The emergency-stop button latches a hold of the robot whenever it is down; the reset button (a rising
edge, with the stop button up) releases it.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JoyMapping:
    deadman_button: int = 4
    """Button that must be held for the human to drive (4: LB on an Xbox-style pad)."""
    axes: tuple[int, ...] = (0, 1, 4)
    """Axis index driving each action dimension (x, y, z)."""
    axis_signs: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Sign of each axis (-1 flips it)."""
    max_delta: tuple[float, ...] = (0.005, 0.005, 0.005)
    """Action (robot units per control step) at full deflection."""
    deadzone: float = 0.0
    """Deflections below this count as zero (the `joy` driver applies its own deadzone)."""
    success_button: int = 0
    """Labels the episode a success (A)."""
    failure_button: int = 1
    """Labels the episode a failure (B)."""
    phase_button: int = 5
    """Toggles the critical phase (RB)."""
    estop_button: int = 6
    """Emergency stop: latches a hold of the robot (Back)."""
    estop_reset_button: int = 7
    """Releases a latched emergency stop (Start)."""

    def __post_init__(self):
        if not (len(self.axes) == len(self.axis_signs) == len(self.max_delta)):
            raise ValueError('axes, axis_signs and max_delta need one entry per action dimension')


def _button(buttons, index) -> bool:
    return 0 <= index < len(buttons) and bool(buttons[index])


def joy_action(buttons, axes, mapping: JoyMapping):
    """The human's action for one control step, or None while the dead-man button is released."""
    if not _button(buttons, mapping.deadman_button):
        return None
    out = np.zeros(len(mapping.axes), np.float32)
    for j, (axis, sign, scale) in enumerate(zip(mapping.axes, mapping.axis_signs, mapping.max_delta, strict=True)):
        value = float(axes[axis]) if 0 <= axis < len(axes) else 0.0
        if not np.isfinite(value) or abs(value) < mapping.deadzone:
            value = 0.0
        out[j] = sign * scale * float(np.clip(value, -1.0, 1.0))
    return out


def human_action(move, profile) -> np.ndarray:
    """The joystick's move (one number per mapped axis) as an action of `profile`'s action space. joint_delta: as it
    is, one axis per joint. ee_delta: a move of the tool's origin along the base frame's x, y, z (the axes in
    order), no rotation and no gripper change: the missing dimensions are zero, so a Cartesian joystick."""
    move = np.asarray(move, np.float32)
    if profile.action_space != 'ee_delta' or move.ndim != 1 or move.size >= profile.action_dim:
        return move
    return np.concatenate([move, np.zeros(profile.action_dim - move.size, np.float32)])


def estop_pressed(buttons, mapping: JoyMapping) -> bool:
    """Whether the emergency-stop button is down."""
    return _button(buttons, mapping.estop_button)


class ButtonEdges:
    """Rising edges of the label, phase and emergency-stop reset buttons: 'success', 'failure', 'phase',
    'estop_reset'."""

    def __init__(self, mapping: JoyMapping):
        self.mapping = mapping
        self.previous = set()

    def update(self, buttons) -> list[str]:
        named = {'success': self.mapping.success_button, 'failure': self.mapping.failure_button,
                 'phase': self.mapping.phase_button, 'estop_reset': self.mapping.estop_reset_button}
        pressed = {name for name, index in named.items() if _button(buttons, index)}
        fired = sorted(pressed - self.previous)
        self.previous = pressed
        return fired


def action_to_axes(action, mapping: JoyMapping, n_axes: int = 8) -> list[float]:
    """The axes a joystick would show for `action` (the inverse of `joy_action`, saturating)."""
    axes = [0.0] * n_axes
    for a, axis, sign, scale in zip(action, mapping.axes, mapping.axis_signs, mapping.max_delta, strict=True):
        axes[axis] = float(np.clip(sign * float(a) / scale, -1.0, 1.0))
    return axes
