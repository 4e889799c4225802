"""Pieces every training entry point shares: threads, seeding, model paths, logging."""

import os
import random
from pathlib import Path

import numpy as np
import torch

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def default_models_dir() -> Path:
    """Where the committed default VLA and RL token live: rlt_bringup's `models/` folder."""
    candidates = [Path(os.environ['RLT_ROOT']) / 'src/rlt_bringup/models'] if 'RLT_ROOT' in os.environ else []
    candidates += [PACKAGE_ROOT.parent / 'rlt_bringup/models']
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / 'share/rlt_bringup/models')
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


def setup_torch(threads: int, seed: int) -> None:
    """One thread per process is usually fastest on a loaded laptop CPU; make it explicit."""
    torch.set_num_threads(max(1, threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
