"""The homing move: a straight, slow line in joint space to the profile's home pose."""

from dataclasses import replace

import numpy as np
import pytest

from rlt_core.control.engine import command_violation, joint_step_limits
from rlt_core.control.homing import HOMING_SPEED_FRACTION, at_home, homing_points
from rlt_core.control.profile import ProfileError, RobotProfile


def test_the_homing_move_ends_at_home_in_slow_even_steps_that_pass_the_command_checks():
    profile = RobotProfile.load('ur5e_cell')
    limits = joint_step_limits(profile)
    home = np.array(profile.home)
    start = home + np.array([0.3, -0.2, 0.1, 0.0, 0.05, -0.4])
    points = homing_points(start, home, limits.high)
    np.testing.assert_allclose(points[-1], home)
    steps = np.abs(np.diff(np.vstack([start, points]), axis=0))
    assert np.all(steps <= HOMING_SPEED_FRACTION * np.asarray(limits.high) + 1e-12) and np.allclose(steps, steps[0])
    assert command_violation(start, points, start, np.array(profile.joint_lower), np.array(profile.joint_upper),
                             limits, np.asarray(limits.high)) is None
    assert at_home(points[-1], home) and not at_home(start, home)
    assert len(homing_points(home, home, limits.high)) == 1  # already home: one point, where it is


def test_a_home_outside_the_joint_limits_or_of_another_length_is_refused():
    profile = RobotProfile.load('ur5e_cell')
    with pytest.raises(ProfileError, match='home'):
        replace(profile, home=(0.0,) * 5)
    with pytest.raises(ProfileError, match='home'):
        replace(profile, home=(0.0, 0.5, 0.0, 0.0, 0.0, 0.0))  # shoulder_lift above its upper limit 0
    assert RobotProfile.from_dict(profile.to_dict()).home == profile.home
