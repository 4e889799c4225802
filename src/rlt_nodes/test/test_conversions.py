import numpy as np
import pytest

from rlt_core.safety import InvalidChunkError
from rlt_interfaces.msg import ActionChunk
from rlt_nodes.conversions import as_numpy, chunk_to_msg, msg_to_chunk, token_to_msg


def test_token_roundtrip_is_bit_exact():
    z = np.random.default_rng(0).standard_normal(2048).astype(np.float32)
    msg = token_to_msg(z, episode_id=3, chunk_index=7, step_index=70)
    assert as_numpy(msg.data).tobytes() == z.tobytes()
    assert (msg.episode_id, msg.chunk_index, msg.step_index) == (3, 7, 70)


def test_chunk_roundtrip_row_major():
    chunk = np.arange(30, dtype=np.float32).reshape(10, 3)
    msg = chunk_to_msg(chunk, ActionChunk.SOURCE_ACTOR, action_names=['x', 'y', 'z'])
    assert (msg.chunk_length, msg.action_dim) == (10, 3)
    assert list(msg.data[:4]) == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(msg_to_chunk(msg), chunk)


def test_malformed_chunk_is_refused():
    msg = chunk_to_msg(np.zeros((2, 3)), ActionChunk.SOURCE_VLA)
    msg.action_dim = 4
    with pytest.raises(InvalidChunkError):
        msg_to_chunk(msg)
    msg = chunk_to_msg(np.full((2, 3), np.nan), ActionChunk.SOURCE_VLA)
    with pytest.raises(InvalidChunkError):
        msg_to_chunk(msg)
    msg = chunk_to_msg(np.zeros((2, 3)), 9)
    with pytest.raises(ValueError, match='source'):
        msg_to_chunk(msg)


def test_chunk_must_be_2d():
    with pytest.raises(ValueError):
        chunk_to_msg(np.zeros(3), ActionChunk.SOURCE_VLA)
