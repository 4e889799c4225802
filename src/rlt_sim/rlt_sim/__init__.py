"""rlt_sim: a MuJoCo peg-in-hole cell with cameras and a scripted expert (no ROS imports).

Importing the package registers the gymnasium id ``rlt/PegInsertion-v0``.
"""

import os

# Headless offscreen rendering; must be set before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402

from rlt_sim.cell import CAMERA_NAMES, JOINT_NAMES, SimConfig, build_mjcf  # noqa: E402
from rlt_sim.env import PegInsertionEnv  # noqa: E402
from rlt_sim.expert import IMPERFECT_SIGMA_MM, ScriptedExpert, run_episode  # noqa: E402

ENV_ID = "rlt/PegInsertion-v0"
"""The gymnasium id of `PegInsertionEnv`."""

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="rlt_sim.env:PegInsertionEnv")

__all__ = [
    "CAMERA_NAMES",
    "ENV_ID",
    "IMPERFECT_SIGMA_MM",
    "JOINT_NAMES",
    "PegInsertionEnv",
    "ScriptedExpert",
    "SimConfig",
    "build_mjcf",
    "run_episode",
]
