"""Critical-phase switching: the VLA drives outside the critical phase, the actor inside.

Three triggers, any of which can be enabled: the simulator's (or a task's own) signal — on a robot, the tool
inside a taught `CriticalZone` —, a human trigger (a joystick button toggles it), and a learned detector, a small
classifier on the RL token. Once entered, the phase is latched until the episode ends unless `latch` is off.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PhaseConfig:
    use_signal: bool = True
    """Follow the task's own critical-phase signal (the simulator's flag)."""
    use_human: bool = True
    """A human trigger toggles the phase."""
    use_detector: bool = False
    """Follow the learned detector's prediction from the RL token."""
    detector_threshold: float = 0.5
    """Probability above which the detector declares the critical phase."""
    latch: bool = True
    """Stay in the critical phase until the episode ends once it was entered."""


class PhaseDetector(nn.Module):
    """p(critical | z_rl): a 2-layer MLP classifier on the RL token."""

    def __init__(self, token_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(token_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, z_rl):
        return self.net(z_rl).squeeze(-1)

    def fit(self, tokens: torch.Tensor, labels: torch.Tensor, steps: int = 500, lr: float = 1e-2) -> float:
        """Train on (N, token_dim) tokens and (N,) 0/1 labels; returns the training accuracy."""
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        labels = labels.float()
        for _ in range(steps):
            loss = nn.functional.binary_cross_entropy_with_logits(self(tokens), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return float(((self(tokens) > 0).float() == labels).float().mean())

    @torch.no_grad()
    def probability(self, z_rl) -> float:
        return float(torch.sigmoid(self(torch.as_tensor(z_rl, dtype=torch.float32))))


class CriticalPhase:
    """The phase state of one episode."""

    def __init__(self, config: PhaseConfig | None = None, detector: PhaseDetector | None = None):
        self.config = config or PhaseConfig()
        if self.config.use_detector and detector is None:
            raise ValueError('use_detector needs a PhaseDetector')
        self.detector = detector
        self.reset()

    def reset(self):
        self.active = False
        self.human_override: bool | None = None
        self.trigger = ''

    def human_toggle(self):
        """A human pressed the phase button: flip the phase, overriding the other triggers."""
        if self.config.use_human:
            self.human_override = not self.active
            self.active = self.human_override
            self.trigger = 'human'

    def update(self, signal: bool | None = None, z_rl=None) -> bool:
        """Re-evaluate from the task signal and the token; returns whether the phase is critical."""
        if self.human_override is not None:
            return self.active
        if self.active and self.config.latch:
            return True
        votes = []
        if self.config.use_signal and signal is not None:
            votes.append(('signal', bool(signal)))
        if self.config.use_detector and z_rl is not None:
            votes.append(('detector', self.detector.probability(z_rl) > self.config.detector_threshold))
        fired = [name for name, v in votes if v]
        self.active = bool(fired)
        self.trigger = fired[0] if fired else ''
        return self.active


@dataclass(frozen=True)
class CriticalZone:
    """The critical phase as a place, for a robot whose task gives no signal: the tool within `radius` (m) of a
    taught pre-insertion point `center` (base frame; a Cartesian gantry's joint positions are its tool's)."""

    center: tuple[float, float, float]
    radius: float

    def __post_init__(self):
        if len(self.center) != 3 or not all(map(math.isfinite, self.center)):
            raise ValueError(f'a critical zone needs a finite (x, y, z) centre, got {self.center}')
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f'a critical zone needs a positive radius, got {self.radius}')

    def contains(self, tool_position) -> bool:
        return math.dist(tool_position, self.center) <= self.radius
