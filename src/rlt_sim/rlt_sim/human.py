"""A simulated human for unattended runs: takes over with the expert when the robot visibly fails.

"Visibly failing" is what an operator sees: the peg is at the hole (critical phase) but has not
gone down for `patience` control steps. An attentive operator (a fraction `rate` of episodes)
then takes over for the rest of the episode with the perfect scripted expert, which lifts,
re-aligns and inserts. It reads privileged state, as a person's eyes would; it never feeds the
actor or critic inputs.
"""

import numpy as np

from rlt_core.control.profile import RobotProfile
from rlt_sim.expert import ScriptedExpert


class SimulatedHuman:
    def __init__(self, rate: float = 0.1, patience: int = 20, progress_m: float = 0.0005, seed: int = 0,
                 profile: RobotProfile | None = None):
        if not 0.0 <= rate <= 1.0:
            raise ValueError('rate must be in [0, 1]')
        if patience <= 0:
            raise ValueError('patience must be positive')
        self.rate, self.patience, self.progress_m = rate, patience, progress_m
        self.rng = np.random.default_rng(seed)
        self.expert = ScriptedExpert.for_profile(profile or RobotProfile.load())  # in the robot's action space
        self.reset({'hole_pos': np.zeros(3), 'peg_tip_pos': np.zeros(3)})

    def reset(self, info: dict) -> None:
        self.attentive = bool(self.rng.random() < self.rate)
        self.in_control = False
        self.best_z = np.inf
        self.stalled = 0
        self.expert.reset(info)

    def wants_control(self, info: dict) -> bool:
        """Observe one control step; True once the human has taken over (for the rest of the episode)."""
        if self.in_control or not self.attentive:
            return self.in_control
        z = float(info['peg_tip_pos'][2])
        if info['critical_phase'] and z > self.best_z - self.progress_m:
            self.stalled += 1
        else:
            self.stalled = 0
        self.best_z = min(self.best_z, z)
        if self.stalled >= self.patience:
            self.in_control = True
            self.expert.reset(info)
        return self.in_control

    def act(self, obs: dict, info: dict) -> np.ndarray:
        return self.expert.act(obs, info)
