"""A scripted expert that reads privileged state, and a helper that runs one episode.

The expert moves the peg tip above the hole it believes in, descends and pushes in.
Given `hole_error_sigma_mm > 0`, its belief is off by a Gaussian error drawn once per
episode; when that error exceeds the clearance the peg lands on the rim and jams,
and the expert does not search for the hole.
"""

from __future__ import annotations

import numpy as np

from rlt_core.control.profile import RobotProfile
from rlt_sim.cell import SimConfig
from rlt_sim.episode import run_engine_episode

IMPERFECT_SIGMA_MM = 1.0
"""Default belief error (per axis, mm) of the imperfect expert: about half its episodes succeed."""


class ScriptedExpert:
    """Approach, align, descend and insert, steering the true peg tip to a believed hole."""

    def __init__(
        self,
        hole_error_sigma_mm: float = 0.0,
        rng: np.random.Generator | int | None = None,
        max_delta_m: float | tuple[float, ...] = SimConfig.max_delta_m,
        hover_height_m: float = 0.008,
        descend_speed_m: float = 0.002,
        align_tolerance_m: float = 0.0003,
        gain: float = 0.6,
        action_dim: int = 3,
    ) -> None:
        if hole_error_sigma_mm < 0:
            raise ValueError("hole_error_sigma_mm must be >= 0")
        self.hole_error_sigma_mm = hole_error_sigma_mm
        self.rng = np.random.default_rng(rng)
        self.max_delta_m = np.broadcast_to(np.asarray(max_delta_m, dtype=np.float64), (3,)).copy()
        self.hover_height_m = hover_height_m
        self.descend_speed_m = min(descend_speed_m, float(self.max_delta_m[2]))
        self.align_tolerance_m = align_tolerance_m
        self.gain = gain
        self.action_dim = action_dim
        """3: the gantry's joint deltas; 6: an arm's tool moves, the rotation left at zero (orientation held)."""
        self.hole_error = np.zeros(2)
        self.believed_hole = np.zeros(3)
        self.descending = False

    def reset(self, info: dict, rng_or_seed: np.random.Generator | int | None = None) -> None:
        """Start an episode: draw this episode's belief error about the hole position."""
        rng = self.rng if rng_or_seed is None else np.random.default_rng(rng_or_seed)
        sigma_m = self.hole_error_sigma_mm / 1000.0
        self.hole_error = rng.normal(0.0, sigma_m, size=2) if sigma_m > 0 else np.zeros(2)
        self.believed_hole = np.asarray(info["hole_pos"], dtype=np.float64).copy()
        self.believed_hole[:2] += self.hole_error
        self.descending = False

    def act(self, obs: dict, info: dict) -> np.ndarray:
        """The next action (`action_dim`,): a move of the peg within +-max_delta_m per axis (the robot profile's
        max_delta), then zeros."""
        tip = np.asarray(info["peg_tip_pos"], dtype=np.float64)
        xy_error = self.believed_hole[:2] - tip[:2]
        if not self.descending:
            hover = self.believed_hole + [0.0, 0.0, self.hover_height_m]
            error = hover - tip
            if np.all(np.abs(xy_error) < self.align_tolerance_m) and abs(error[2]) < 0.001:
                self.descending = True
            else:
                return self._clip(self.gain * error)
        return self._clip(np.array([*(self.gain * xy_error), -self.descend_speed_m]))

    @classmethod
    def for_profile(cls, profile: RobotProfile, **kwargs) -> ScriptedExpert:
        """The expert acting in `profile`'s action space: translations within its per-step limits."""
        return cls(max_delta_m=profile.max_delta[:3], action_dim=profile.action_dim, **kwargs)

    def _clip(self, delta: np.ndarray) -> np.ndarray:
        move = np.clip(delta, -self.max_delta_m, self.max_delta_m)
        return np.concatenate([move, np.zeros(self.action_dim - 3)]).astype(np.float32)


def run_episode(env, policy, seed: int | None = None, profile: RobotProfile | None = None) -> dict:
    """Run one episode of `policy` (an expert-like object or a function (obs, info) -> action) as an operator
    driving the robot through the episode engine (`rlt_sim.episode`; `profile`: the default cell's).

    Returns ``success``, ``steps``, ``critical_steps`` (steps decided in the critical phase) and
    ``reached_critical``.
    """
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        # Separate the policy's random stream from the environment's for the same seed.
        policy.reset(info, None if seed is None else np.random.SeedSequence([seed, 1]))
    act = policy.act if hasattr(policy, "act") else policy
    return run_engine_episode(env, profile or RobotProfile.load(), obs, info, operator=act)
