import numpy as np
import pytest

from rlt_core.control.safety import InvalidChunkError
from rlt_core.rl.replay import SOURCE_HUMAN, ChunkTransition
from rlt_interfaces.msg import ActionChunk
from rlt_nodes.conversions import (
    as_numpy,
    chunk_to_msg,
    msg_to_chunk,
    msg_to_transition,
    token_to_msg,
    transition_to_msg,
)


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


def test_transition_roundtrip_keeps_flags_and_rewards():
    rng = np.random.default_rng(0)
    t = ChunkTransition(state=rng.standard_normal(5).astype(np.float32), executed_chunk=np.ones((4, 3), np.float32),
                   reference_chunk=np.zeros((4, 3), np.float32), rewards=np.array([0, 0, 1], np.float32),
                   next_state=np.zeros(5, np.float32), next_reference_chunk=np.full((4, 3), 2, np.float32),
                   done=True, source=SOURCE_HUMAN, episode_id=4, chunk_index=2, warmup=True)
    msg = transition_to_msg(t)
    assert msg.intervention and msg.warmup and msg.done and not msg.truncated
    back = msg_to_transition(msg)
    for name in ('state', 'executed_chunk', 'reference_chunk', 'rewards', 'next_state', 'next_reference_chunk'):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name))
    assert (back.source, back.episode_id, back.chunk_index, back.warmup, back.done) == (SOURCE_HUMAN, 4, 2, True, True)
    msg.rewards = [0.0] * 5
    with pytest.raises(ValueError, match='rewards'):
        msg_to_transition(msg)


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
