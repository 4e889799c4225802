"""Conversions between numpy arrays and rlt's messages.

Float arrays are filled through `array.array('f', x.tobytes())`: assigning Python lists to
message arrays converts element by element, slowly at token and image sizes.
"""

import array

import numpy as np

from rlt_core.control.safety import validate_chunk
from rlt_core.rl.replay import ChunkTransition
from rlt_interfaces.msg import ActionChunk, RLToken, Transition


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


def stamp_ns(header) -> int:
    """A header's stamp as integer nanoseconds: the key that matches messages of one observation."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def set_stamp(header, ns: int):
    """Set a header's stamp from integer nanoseconds (`stamp_ns`'s inverse); returns the header."""
    header.stamp.sec, header.stamp.nanosec = divmod(int(ns), 1_000_000_000)
    return header


def transition_to_msg(t: ChunkTransition, header=None) -> Transition:
    """A Transition message from an rlt_core transition (chunks row-major, rewards per executed step)."""
    executed = np.asarray(t.executed_chunk, np.float32)
    msg = Transition(episode_id=int(t.episode_id), chunk_index=int(t.chunk_index),
                        chunk_length=executed.shape[0], action_dim=executed.shape[1], done=bool(t.done),
                        truncated=bool(t.truncated), critical_phase=bool(t.critical_phase),
                        intervention=bool(t.intervention), source=int(t.source), warmup=bool(t.warmup))
    if header is not None:
        msg.header = header
    msg.state = float32_array(t.state)
    msg.executed_chunk = float32_array(executed)
    msg.reference_chunk = float32_array(t.reference_chunk)
    msg.rewards = float32_array(t.rewards)
    msg.next_state = float32_array(t.next_state)
    msg.next_reference_chunk = float32_array(t.next_reference_chunk)
    return msg


def msg_to_transition(msg: Transition) -> ChunkTransition:
    """An rlt_core transition from a message; raises ValueError on inconsistent sizes."""
    shape = (msg.chunk_length, msg.action_dim)
    chunks = [as_numpy(f) for f in (msg.executed_chunk, msg.reference_chunk, msg.next_reference_chunk)]
    if any(c.size != shape[0] * shape[1] for c in chunks):
        raise ValueError(f'chunks do not hold {shape[0]}x{shape[1]} values')
    state, next_state = as_numpy(msg.state), as_numpy(msg.next_state)
    if state.size == 0 or state.size != next_state.size:
        raise ValueError(f'state sizes {state.size} and {next_state.size} differ or are empty')
    rewards = as_numpy(msg.rewards)
    if not 0 < rewards.size <= shape[0]:
        raise ValueError(f'{rewards.size} rewards for a chunk of {shape[0]}')
    executed, reference, next_reference = (c.reshape(shape).copy() for c in chunks)
    return ChunkTransition(state=state.copy(), executed_chunk=executed, reference_chunk=reference,
                      rewards=rewards.copy(), next_state=next_state.copy(), next_reference_chunk=next_reference,
                      done=bool(msg.done), source=int(msg.source), episode_id=int(msg.episode_id),
                      chunk_index=int(msg.chunk_index), truncated=bool(msg.truncated),
                      critical_phase=bool(msg.critical_phase), warmup=bool(msg.warmup))
