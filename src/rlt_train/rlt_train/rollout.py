"""Running the frozen VLA closed-loop in the simulated cell, through the episode engine as on the robot.

Each episode runs through the episode engine (`rlt_sim.episode`, as `train_rlt` and the arbiter do), the VLA
driving throughout: chunks of `execute_steps` actions, each point within the robot profile's per-step limits
(its critical-phase limits in the critical phase) and joint limits.
"""

import numpy as np
import torch

from rlt_core.control.profile import RobotProfile
from rlt_core.models.vla.backbone import VLABackbone, VLAInput
from rlt_sim.episode import make_env, run_engine_episode


@torch.no_grad()
def vla_chunk(vla: VLABackbone, obs: dict, instruction: str) -> np.ndarray:
    """The VLA's reference chunk (H, A) in robot units for one simulator observation."""
    return vla(VLAInput.from_env(obs, instruction)).chunk[0].numpy()


def run_vla_episode(env, vla: VLABackbone, seed: int, profile: RobotProfile) -> dict:
    """One episode of the VLA executing the first `profile.actor_chunk_len` actions of each chunk."""
    obs, info = env.reset(seed=seed)
    return run_engine_episode(env, profile, obs, info, reference=lambda o: vla_chunk(vla, o, env.instruction))


def evaluate_vla(vla: VLABackbone, episodes: int, seed: int, execute_steps: int,
                 profile: RobotProfile | None = None, progress=None) -> dict:
    """Success rate, critical-phase reach rate and mean critical-phase steps over seeded episodes."""
    profile = (profile or RobotProfile.load()).with_chunks(execute_steps, 1)
    env = make_env(profile)
    results = []
    for k in range(episodes):
        results.append(run_vla_episode(env, vla, seed + k, profile))
        if progress is not None:
            progress(results)
    env.close()
    return summarize(results)


def summarize(results: list[dict]) -> dict:
    return {'episodes': len(results),
            'success_rate': float(np.mean([r['success'] for r in results])),
            'reached_critical_rate': float(np.mean([r['reached_critical'] for r in results])),
            'mean_critical_steps': float(np.mean([r['critical_steps'] for r in results])),
            'mean_steps': float(np.mean([r['steps'] for r in results]))}
