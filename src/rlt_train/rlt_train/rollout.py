"""Running the frozen VLA closed-loop in the simulated cell, chunk by chunk."""

import numpy as np
import torch

from rlt_core.models.vla.backbone import VLABackbone, VLAInput
from rlt_sim import PegInsertionEnv, SimConfig


@torch.no_grad()
def vla_chunk(vla: VLABackbone, obs: dict, instruction: str) -> np.ndarray:
    """The VLA's reference chunk (H, A) in robot units for one simulator observation."""
    return vla(VLAInput.from_env(obs, instruction)).chunk[0].numpy()


def run_vla_episode(env: PegInsertionEnv, vla: VLABackbone, seed: int, execute_steps: int) -> dict:
    """One episode of the VLA executing the first `execute_steps` actions of each chunk."""
    obs, info = env.reset(seed=seed)
    steps = critical_steps = 0
    reached = bool(info['critical_phase'])
    done = False
    while not done:
        chunk = vla_chunk(vla, obs, env.instruction)
        for action in chunk[:execute_steps]:
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            critical_steps += int(info['critical_phase'])
            reached |= bool(info['critical_phase'])
            done = terminated or truncated
            if done:
                break
    return {'success': bool(info['success']), 'steps': steps, 'critical_steps': critical_steps,
            'reached_critical': reached}


def evaluate_vla(vla: VLABackbone, episodes: int, seed: int, execute_steps: int,
                 config: SimConfig | None = None, progress=None) -> dict:
    """Success rate, critical-phase reach rate and mean critical-phase steps over seeded episodes."""
    env = PegInsertionEnv(config or SimConfig())
    results = []
    for k in range(episodes):
        results.append(run_vla_episode(env, vla, seed + k, execute_steps))
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
