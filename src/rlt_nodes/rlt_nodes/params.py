"""Parameter helpers shared by the nodes: descriptions, model paths, torch set-up."""

import os
from pathlib import Path

from rcl_interfaces.msg import ParameterDescriptor


def desc(text: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=text)


def default_model_dir(name: str) -> str:
    """`models/<name>` of rlt_bringup: the source tree's (RLT_ROOT) if present, else the installed share."""
    candidates = []
    if 'RLT_ROOT' in os.environ:
        candidates.append(Path(os.environ['RLT_ROOT']) / 'src/rlt_bringup/models' / name)
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('rlt_bringup')) / 'models' / name)
    except Exception:  # noqa: BLE001 - not installed: only the source tree remains
        pass
    for path in candidates:
        if path.is_dir():
            return str(path)
    return str(candidates[0]) if candidates else f'models/{name}'


def setup_torch(threads: int, seed: int | None = None):
    """One torch thread per node by default: several nodes share a few cores."""
    import torch
    torch.set_num_threads(max(1, int(threads)))
    if seed is not None:
        torch.manual_seed(seed)
    return torch
