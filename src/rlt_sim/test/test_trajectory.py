import numpy as np
import pytest

from rlt_sim.trajectory import InvalidCommandError, validate_trajectory

NAMES = ('x', 'y', 'z')
LOW, HIGH = (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)


def test_reorders_to_robot_joint_order():
    cmd = validate_trajectory(['z', 'x', 'y'], [[0.3, 0.1, 0.2]], [0.5], NAMES, LOW, HIGH)
    np.testing.assert_array_equal(cmd.positions, [[0.1, 0.2, 0.3]])
    assert cmd.duration == 0.5


def test_interpolates_from_start_and_holds_last_point():
    cmd = validate_trajectory(NAMES, [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]], [1.0, 2.0], NAMES, LOW, HIGH)
    start = np.zeros(3)
    np.testing.assert_allclose(cmd.target_at(0.0, start), [0, 0, 0])
    np.testing.assert_allclose(cmd.target_at(0.25, start), [0.25, 0, 0])
    np.testing.assert_allclose(cmd.target_at(1.5, start), [1.0, 0.5, 0])
    np.testing.assert_allclose(cmd.target_at(10.0, start), [1.0, 1.0, 0])


@pytest.mark.parametrize('names, positions, times, reason', [
    (['x', 'y', 'w'], [[0, 0, 0]], [1.0], 'do not match'),
    (['x', 'y'], [[0, 0]], [1.0], 'do not match'),
    (['x', 'x', 'y'], [[0, 0, 0]], [1.0], 'do not match'),
    (NAMES, [], [], 'no points'),
    (NAMES, [[0, 0, 0]], [1.0, 2.0], '2 times for 1 points'),
    (NAMES, [[0, 0]], [1.0], 'needs 3 positions'),
    (NAMES, [[0, 0, 0], [0, 0]], [1.0, 2.0], 'different lengths'),
    (NAMES, [[0, float('nan'), 0]], [1.0], 'NaN'),
    (NAMES, [[0, 0, 0]], [float('inf')], 'NaN or infinite'),
    (NAMES, [[0, 0, 0], [0, 0, 0]], [1.0, 1.0], 'strictly increasing'),
    (NAMES, [[0, 0, 0]], [-1.0], 'strictly increasing'),
    (NAMES, [[0, 0, 0]], [0.0], 'end after'),
    (NAMES, [[0, 0, 0], [0, 1.5, 0]], [1.0, 2.0], 'point 1: y=1.5'),
])
def test_refuses_invalid_commands_with_reason(names, positions, times, reason):
    with pytest.raises(InvalidCommandError, match=reason):
        validate_trajectory(names, positions, times, NAMES, LOW, HIGH)
