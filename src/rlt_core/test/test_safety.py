import numpy as np
import pytest

from rlt_core.control.safety import ActionLimits, InvalidChunkError, clip_chunk, validate_chunk


def test_validate_reshapes_flat_data_row_major():
    chunk = validate_chunk([1, 2, 3, 4, 5, 6], action_dim=3)
    assert chunk.dtype == np.float32
    np.testing.assert_array_equal(chunk, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize('data, dim, length, reason', [
    ([1, 2, 3, 4], 3, None, 'do not form rows'),
    ([[1, 2], [3, 4]], 3, None, 'does not match'),
    ([], 3, None, 'empty'),
    ([1, 2, 3], 3, 2, 'expected 2'),
    ([1, float('nan'), 3], 3, None, 'NaN'),
    ([1, float('inf'), 3], 3, None, 'NaN or infinite'),
])
def test_validate_rejects_bad_chunks(data, dim, length, reason):
    with pytest.raises(InvalidChunkError, match=reason):
        validate_chunk(data, action_dim=dim, chunk_length=length)


def test_clip_to_limits_and_report():
    limits = ActionLimits(low=(-1.0, 0.0), high=(1.0, 0.5))
    chunk = np.array([[2.0, 0.25], [-3.0, 1.0]], dtype=np.float32)
    clipped, changed = clip_chunk(chunk, limits)
    np.testing.assert_array_equal(clipped, [[1.0, 0.25], [-1.0, 0.5]])
    assert changed
    same, changed = clip_chunk(clipped, limits)
    np.testing.assert_array_equal(same, clipped)
    assert not changed


def test_symmetric_limits():
    limits = ActionLimits.symmetric([0.005, -0.002])
    assert limits.low == (-0.005, -0.002) and limits.high == (0.005, 0.002)
    assert limits.action_dim == 2


@pytest.mark.parametrize('low, high', [((0.0,), (1.0, 2.0)), ((1.0,), (0.0,)), ((0.0,), (np.inf,)), ((), ())])
def test_bad_limits_raise(low, high):
    with pytest.raises(ValueError):
        ActionLimits(low=low, high=high)


def test_clip_rejects_dimension_mismatch():
    with pytest.raises(InvalidChunkError):
        clip_chunk(np.zeros((2, 3), np.float32), ActionLimits.symmetric([1.0, 1.0]))
