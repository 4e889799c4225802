"""Joint-trajectory commands: validation and sampling, as a JointTrajectoryController would do.

A command is a list of points (joint positions, time from start); it replaces the previous one
when it arrives and is followed by linear interpolation, holding the last point afterwards.
A command with unknown or missing joints, non-finite values, non-increasing times or any
position outside the joint limits is refused as a whole, with the reason.
"""

from dataclasses import dataclass

import numpy as np


class InvalidCommandError(ValueError):
    """A trajectory that must not be executed; the message says why."""


@dataclass(frozen=True)
class JointTrajectoryCommand:
    """A validated trajectory, with positions in the robot's joint order."""

    times: np.ndarray
    """Time from start of each point, seconds, strictly increasing, shape (N,)."""
    positions: np.ndarray
    """Joint positions of each point, shape (N, J), in the robot's joint order."""

    def target_at(self, t: float, start: np.ndarray) -> np.ndarray:
        """Position to command `t` seconds after the start, moving from `start` at t=0."""
        times = np.concatenate([[0.0], self.times])
        positions = np.vstack([start, self.positions])
        if t >= times[-1]:
            return positions[-1].copy()
        return np.array([np.interp(t, times, positions[:, j]) for j in range(positions.shape[1])])

    @property
    def duration(self) -> float:
        return float(self.times[-1])


def validate_trajectory(joint_names, positions, times, expected_names, low, high) -> JointTrajectoryCommand:
    """Check a trajectory against the robot's joints and limits; reorder it to the robot's order.

    `positions` is a sequence of per-point position sequences in the order of `joint_names`;
    `times` are the points' times from start in seconds.
    """
    joint_names, expected_names = list(joint_names), list(expected_names)
    if sorted(joint_names) != sorted(expected_names) or len(set(joint_names)) != len(joint_names):
        raise InvalidCommandError(f'joint names {joint_names} do not match the robot joints {expected_names}')
    if len(positions) == 0:
        raise InvalidCommandError('trajectory has no points')
    if len(times) != len(positions):
        raise InvalidCommandError(f'{len(times)} times for {len(positions)} points')
    try:
        pos = np.array([np.asarray(p, dtype=np.float64) for p in positions])
    except ValueError as err:
        raise InvalidCommandError(f'points have different lengths: {err}') from None
    if pos.ndim != 2 or pos.shape[1] != len(joint_names):
        raise InvalidCommandError(f'every point needs {len(joint_names)} positions, got shape {pos.shape}')
    times = np.asarray(times, dtype=np.float64)
    if not np.all(np.isfinite(pos)) or not np.all(np.isfinite(times)):
        raise InvalidCommandError('trajectory contains NaN or infinite values')
    if times[0] < 0 or np.any(np.diff(times) <= 0):
        raise InvalidCommandError(
            f'time_from_start must be >= 0 and strictly increasing, got {times.tolist()}')
    if times[-1] <= 0:
        raise InvalidCommandError('trajectory must end after its start')
    order = [joint_names.index(name) for name in expected_names]
    pos = pos[:, order]
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    outside = (pos < low) | (pos > high)
    if np.any(outside):
        point, joint = np.argwhere(outside)[0]
        raise InvalidCommandError(
            f'point {point}: {expected_names[joint]}={pos[point, joint]:.6f} outside '
            f'[{low[joint]:.6f}, {high[joint]:.6f}]')
    return JointTrajectoryCommand(times=times, positions=pos)
