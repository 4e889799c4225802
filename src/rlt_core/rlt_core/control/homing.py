"""The homing move between operator episodes: from where the robot is to the robot profile's home pose.

A straight line in joint space, one trajectory point per control step, every joint moving at most
`HOMING_SPEED_FRACTION` of its per-step limit (`rlt_core.control.engine.joint_step_limits`: an arm's velocity
limits times the control period), so the move is slow and each point passes the same checks as any command. The
arbiter sends it after an operator labels an episode and starts the next episode once the measured joints are
within `tolerance` of home; the operator's takeover or an emergency stop cancels it (the robot holds).
No ROS here.
"""

import math

import numpy as np

HOME_TOLERANCE = 0.005
"""Largest distance of any joint from home (rad or m) at which the robot counts as home."""
HOMING_SPEED_FRACTION = 0.25
"""The fraction of each joint's per-step limit the homing move uses between its points."""


def homing_points(start, home, step_limits, speed_fraction: float = HOMING_SPEED_FRACTION) -> np.ndarray:
    """(N, J) joint points from `start` (exclusive) to `home` (the last point), evenly spaced, each joint moving
    at most `speed_fraction` x `step_limits` (per joint) between points."""
    start, home = np.asarray(start, np.float64), np.asarray(home, np.float64)
    reach = speed_fraction * np.asarray(step_limits, np.float64)
    if not (0 < speed_fraction <= 1 and np.all(reach > 0)):
        raise ValueError(f'homing needs positive step limits and a speed fraction in (0, 1], got {speed_fraction}')
    steps = max(1, math.ceil(float(np.max(np.abs(home - start) / reach))))
    return start + np.outer(np.arange(1, steps + 1) / steps, home - start)


def at_home(position, home, tolerance: float = HOME_TOLERANCE) -> bool:
    return bool(np.all(np.abs(np.asarray(position, np.float64) - np.asarray(home, np.float64)) <= tolerance))
