"""What every process shares: where rlt_bringup's profiles and default models live, torch threads and seeds."""

import os
import platform
import random
from pathlib import Path

import numpy as np

SOURCE_SRC = Path(__file__).resolve().parents[2]
"""The workspace's src/ folder when rlt_core runs from the source tree."""


def bringup_dir() -> Path:
    """rlt_bringup's data (config/, models/): RLT_ROOT's source tree, this source tree, else the installed
    share/rlt_bringup on AMENT_PREFIX_PATH."""
    candidates = [Path(os.environ['RLT_ROOT']) / 'src/rlt_bringup'] if 'RLT_ROOT' in os.environ else []
    candidates.append(SOURCE_SRC / 'rlt_bringup')
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / 'share/rlt_bringup')
    for path in candidates:
        if (path / 'config').is_dir():
            return path
    return candidates[0]


def default_models_dir(profile_name: str) -> Path:
    """The committed VLA (`vla/`) and RL token (`rl_token/`) of the repository's cell `profile_name`:
    rlt_bringup's models/<profile_name>/. A profile without (a user's robot) gets a FileNotFoundError naming
    what to set instead."""
    folder = bringup_dir() / 'models' / profile_name
    if not folder.is_dir():
        raise FileNotFoundError(f'robot profile {profile_name!r} has no committed VLA and RL token ({folder}): '
                                'name its VLA and token (vla_path and token_path, or --vla and --token)')
    return folder


def setup_torch(threads: int, seed: int | None = None):
    """Set torch's thread count (one per process is usually fastest when several share a few cores)
    and, if given, seed Python, NumPy and torch; returns the torch module."""
    import torch
    torch.set_num_threads(max(1, int(threads)))
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    return torch


def synchronize(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): call around timed GPU code."""
    import torch
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def machine() -> str:
    """This machine, as a benchmark names it beside its figures: cores, CPU model, OS."""
    model = platform.processor() or platform.machine()
    try:
        model = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                      if line.startswith('model name')), model)
    except OSError:
        pass
    return f'{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}'
