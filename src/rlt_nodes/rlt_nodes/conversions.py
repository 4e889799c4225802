"""Conversions between numpy arrays and rlt's messages.

Float arrays are filled through `array.array('f', x.tobytes())`: assigning Python lists to
message arrays is an order of magnitude slower at token and image sizes.
"""

import array

import numpy as np

from rlt_core.safety import validate_chunk
from rlt_interfaces.msg import ActionChunk, RLToken


def float32_array(x) -> array.array:
    """A message-ready float32 array of `x` (flattened, C order)."""
    return array.array('f', np.ascontiguousarray(x, dtype=np.float32).tobytes())


def as_numpy(field) -> np.ndarray:
    """A float32 numpy view of a message's float32[] field (no copy)."""
    return np.frombuffer(field, dtype=np.float32)


def token_to_msg(z_rl, header=None, episode_id=0, chunk_index=0, step_index=0) -> RLToken:
    msg = RLToken(episode_id=episode_id, chunk_index=chunk_index, step_index=step_index)
    if header is not None:
        msg.header = header
    msg.data = float32_array(z_rl)
    return msg


def chunk_to_msg(chunk, source, header=None, episode_id=0, chunk_index=0, step_index=0,
                 action_names=()) -> ActionChunk:
    """An ActionChunk from a (chunk_length, action_dim) array."""
    chunk = np.asarray(chunk, dtype=np.float32)
    if chunk.ndim != 2:
        raise ValueError(f'chunk must be 2-D (chunk_length, action_dim), got shape {chunk.shape}')
    msg = ActionChunk(episode_id=episode_id, chunk_index=chunk_index, step_index=step_index,
                      chunk_length=chunk.shape[0], action_dim=chunk.shape[1], source=source,
                      action_names=list(action_names))
    if header is not None:
        msg.header = header
    msg.data = float32_array(chunk)
    return msg


def msg_to_chunk(msg: ActionChunk) -> np.ndarray:
    """The validated (chunk_length, action_dim) array of an ActionChunk; raises InvalidChunkError."""
    if msg.source not in (ActionChunk.SOURCE_VLA, ActionChunk.SOURCE_ACTOR, ActionChunk.SOURCE_HUMAN):
        raise ValueError(f'unknown chunk source {msg.source}')
    return validate_chunk(as_numpy(msg.data), msg.action_dim, msg.chunk_length)
