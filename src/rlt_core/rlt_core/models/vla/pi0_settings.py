"""What a pi0 checkpoint folder says beyond transformers' own config, readable without transformers.

`Pi0Backbone.save_pretrained` writes our settings (cameras, dimensions, normalisation stats) to
`rlt_pi0.json` next to the checkpoint; a folder prepared elsewhere may instead carry the dataset
statistics in a `processor_config.json`, as transformers' `PI0Processor` saves them.
"""

import json
from pathlib import Path

META_FILE = 'rlt_pi0.json'
"""Our settings (cameras, dimensions, normalisation stats) saved next to the checkpoint."""
STAT_KEYS = ('state_mean', 'state_std', 'actions_mean', 'actions_std')
"""Dataset statistics, named as transformers' `PI0Processor` names them."""
DEFAULT_PROPRIO_DIM = 14
"""The state dimension a pi0 reads when its settings do not say (two 7-joint arms' positions)."""


def read_settings(path: str | Path) -> dict:
    """The settings saved with the checkpoint at `path` (keyword arguments of `Pi0Backbone`), with
    `stats` taken from `processor_config.json` where `rlt_pi0.json` has none."""
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
    processor_file = path / 'processor_config.json'
    if 'stats' not in meta and processor_file.is_file():
        processor = json.loads(processor_file.read_text())
        meta['stats'] = {k: processor[k] for k in STAT_KEYS if processor.get(k) is not None}
    return meta


def state_stats(path: str | Path) -> tuple[list[float], list[float]]:
    """Mean and std of the proprioception, as the pi0 at `path` normalises it (zeros and ones without stats)."""
    settings = read_settings(path)
    dim = settings.get('proprio_dim') or DEFAULT_PROPRIO_DIM
    stats = settings.get('stats') or {}
    mean, std = stats.get('state_mean', [0.0] * dim), stats.get('state_std', [1.0] * dim)
    if min(len(mean), len(std)) < dim:
        raise ValueError(f'pi0 at {path}: state stats have {min(len(mean), len(std))} entries, need {dim}')
    return [float(v) for v in mean[:dim]], [float(v) for v in std[:dim]]
