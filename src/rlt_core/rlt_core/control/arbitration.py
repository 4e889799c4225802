"""Who drives the robot for the next chunk, and what is stored for learning.

Priority: human > warmup VLA > actor > VLA. The human wins whenever the dead-man button is
held; during warmup the VLA's chunk is executed even in the critical phase (to fill the
replay buffer); in the critical phase the actor's refined chunk is executed when one is
available; otherwise the VLA drives. Whatever is chosen is clipped to the action limits, in the
critical phase to its own (usually tighter) limits, whoever drives.
During an intervention the human's chunk also replaces the reference stored for learning.
"""

from dataclasses import dataclass

import numpy as np

from rlt_core.control.safety import ActionLimits, clip_chunk, validate_chunk
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA


@dataclass
class Decision:
    executed: np.ndarray
    """The chunk to execute, clipped to the limits, (C, A)."""
    source: int
    """SOURCE_HUMAN, SOURCE_VLA or SOURCE_ACTOR."""
    reference: np.ndarray
    """The reference to store with the transition: the human's chunk during an intervention."""
    clipped: bool
    """Whether clipping changed the chosen chunk."""


def arbitrate(vla_chunk, limits: ActionLimits, actor_chunk=None, human_chunk=None, critical=False,
              warmup=False, critical_limits: ActionLimits | None = None) -> Decision:
    """The chunk to execute and what to store; `critical_limits` (default: `limits`) bound it in the critical phase."""
    if critical and critical_limits is not None:
        if critical_limits.action_dim != limits.action_dim:
            raise ValueError('critical_limits and limits need the same action dimension')
        limits = critical_limits
    action_dim = limits.action_dim
    vla_chunk = validate_chunk(vla_chunk, action_dim)
    if human_chunk is not None:
        chosen, source = validate_chunk(human_chunk, action_dim), SOURCE_HUMAN
    elif critical and not warmup and actor_chunk is not None:
        chosen, source = validate_chunk(actor_chunk, action_dim), SOURCE_ACTOR
    else:
        chosen, source = vla_chunk, SOURCE_VLA
    executed, clipped = clip_chunk(chosen, limits)
    reference = executed if source == SOURCE_HUMAN else vla_chunk
    return Decision(executed=executed, source=source, reference=reference, clipped=clipped)
