"""Turning an episode's step stream into chunk transitions, sub-sampled at a stride.

At every control step t the caller records the executed action a_t, the reward r_t that
followed it, its source, and whether the step was in the critical phase; at steps that are
multiples of `stride` it also gives the RL state x_t and the VLA's reference chunk ref_t.
Every observed step s in the critical phase starts a transition over the C = chunk_len actions
a_s..a_{s+C-1} (which may straddle two executed chunks): (x_s, a_{s:s+C}, ref_s, r_{s:s+C},
x_{s+C}, ref_{s+C}, done). With stride 2 and C = 10 each executed chunk yields five transitions.
A window that the episode's end cuts short keeps the steps it has (n < C) and bootstraps from
the final state unless the episode terminated.
"""

from dataclasses import dataclass

import numpy as np

from rlt_core.rl.replay import SOURCE_HUMAN, ChunkTransition


@dataclass
class RecordedStep:
    action: np.ndarray
    reward: float
    source: int
    critical: bool
    x: np.ndarray | None = None
    ref: np.ndarray | None = None


class TransitionBuilder:
    def __init__(self, chunk_len: int, stride: int = 2):
        if chunk_len <= 0 or stride <= 0 or chunk_len % stride:
            raise ValueError(f'chunk_len ({chunk_len}) must be a positive multiple of stride ({stride})')
        self.chunk_len, self.stride = chunk_len, stride
        self.reset(episode_id=0)

    def reset(self, episode_id: int):
        self.episode_id = episode_id
        self.steps: list[RecordedStep] = []

    def needs_observation(self, t: int | None = None) -> bool:
        """Whether step t (default: the next one) must come with x_t and ref_t."""
        t = len(self.steps) if t is None else t
        return t % self.stride == 0

    def record(self, action, reward: float, source: int, critical: bool, x=None,
               ref=None) -> list[ChunkTransition]:
        """Record step t = number of steps so far; returns the transitions this step completed."""
        t = len(self.steps)
        if critical and self.needs_observation(t) and (x is None or ref is None):
            raise ValueError(f'step {t} is critical and on the stride: x and ref are required')
        self.steps.append(RecordedStep(np.asarray(action, np.float32), float(reward), int(source), bool(critical),
                                None if x is None else np.asarray(x, np.float32),
                                None if ref is None else np.asarray(ref, np.float32)))
        # x_t closes the window that started at s = t - C.
        if x is not None and t >= self.chunk_len and self.needs_observation(t):
            return self._window(t - self.chunk_len, t, self.steps[t].x, self.steps[t].ref, done=False)
        return []

    def finish(self, final_x, final_ref, terminated: bool) -> list[ChunkTransition]:
        """End the episode after T recorded steps with final state x_T; returns the last windows.

        Windows starting at s >= T - C were not closed by `record`; they end at min(s + C, T).
        """
        T = len(self.steps)
        out = []
        for s in range(max(0, T - self.chunk_len), T):
            if s % self.stride == 0:
                out += self._window(s, min(s + self.chunk_len, T), np.asarray(final_x, np.float32),
                                    np.asarray(final_ref, np.float32), done=terminated,
                                    truncated=not terminated)
        return out

    def _window(self, s, end, next_x, next_ref, done, truncated=False) -> list[ChunkTransition]:
        start = self.steps[s]
        if not start.critical:
            return []
        window = self.steps[s:end]
        executed = np.zeros((self.chunk_len, window[0].action.size), np.float32)  # zero-padded past the end
        executed[:len(window)] = np.stack([st.action for st in window])
        human = any(st.source == SOURCE_HUMAN for st in window)
        return [ChunkTransition(
            state=start.x, executed_chunk=executed, reference_chunk=executed if human else start.ref,
            rewards=np.array([st.reward for st in window], np.float32), next_state=next_x,
            next_reference_chunk=next_ref, done=bool(done), truncated=bool(truncated),
            source=SOURCE_HUMAN if human else start.source, episode_id=self.episode_id,
            chunk_index=s // self.stride, critical_phase=True)]
