"""The rlt node graph, defined once: which nodes run, with which parameter files and overrides.

The launch files (`launch/*.launch.py`, for a full ROS 2 install) and the embedded runner
(`rlt_bringup.embedded`, behind `./rlt run`) both build their processes from `nodes()`:

  core (rlt.launch.py)   ingestion, vla_server, actor, arbiter, learner
  sim  (sim.launch.py)   the core + sim_robot, episode_manager, sim_human
  real (real_robot.launch.py)  the core with real-robot parameters; the robot's own driver
                         (joint_states, the profile's camera topics, /<controller>/joint_trajectory)
                         and the `joy` node run beside it

Parameters come from `config/rlt.yaml` (every core node), then `config/sim.yaml` or
`config/real_robot.yaml` (the variant's; sim_robot also `config/sim_robot.yaml`), then per-run overrides, each keyed
`node_name: ros__parameters:`. Robot facts are in none of them: every node, core and sim, reads the robot
profile named by its `robot_profile` parameter (the launch argument `robot_profile` sets it for all;
empty: config/profiles/gantry_cell.yaml). No ROS imports here.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = 'rlt_bringup'
VARIANTS = ('sim', 'real')


@dataclass(frozen=True)
class NodeSpec:
    package: str
    executable: str
    name: str
    param_files: tuple[str, ...]
    """Parameter files, relative to the config folder, applied in order."""
    parameters: dict = field(default_factory=dict)
    """Overrides applied after the files."""
    remappings: tuple[tuple[str, str], ...] = ()


CORE = ('ingestion', 'vla_server', 'actor', 'arbiter', 'learner')
SIM_ONLY = ('sim_robot', 'episode_manager', 'sim_human')

LAUNCH_ARGUMENTS = {
    # launch argument: (default, description, [(node, parameter), ...])
    'robot_profile': ('', 'robot profile of every node: a YAML path, or a name in config/profiles (empty: '
                      'gantry_cell)', [(node, 'robot_profile') for node in CORE + SIM_ONLY]),
    'vla_path': ('', 'VLA backbone spec: a SmallVLA folder, pi0:/folder (a local pi0 checkpoint) or '
                 'module.path:Class[:/path] of a VLABackbone (empty: the profile\'s, models/<profile>/vla)',
                 [('vla_server', 'vla_path'), ('actor', 'vla_path'), ('arbiter', 'vla_path')]),
    'token_path': ('', 'RL token folder (empty: models/<profile>/rl_token)', [('vla_server', 'token_path')]),
    'device': ('cpu', "torch device of the VLA server and the learner ('cuda' on a GPU workstation)",
               [('vla_server', 'device'), ('learner', 'device')]),
    'vla_dtype': ('float32', "dtype of the VLA server's backbone: float32, or bfloat16/float16 on cuda",
                  [('vla_server', 'dtype')]),
    'warmup_episodes': ('20', 'N_warm: episodes that execute the VLA chunk', [('arbiter', 'warmup_episodes')]),
    'explore': ('true', 'actor exploration noise (false for evaluation)', [('actor', 'explore')]),
    'replay_dir': ('', 'replay log folder of the learner (empty: ~/.ros/rlt/replay)', [('learner', 'replay_dir')]),
}
"""Arguments of rlt.launch.py and where each goes; an empty value keeps the parameter files' value."""


STRING_PARAMETERS = ('robot_profile', 'vla_path', 'token_path', 'replay_dir', 'device', 'dtype')
"""Launch arguments passed on as strings, never parsed as YAML."""


def config_dir() -> Path:
    """The config folder: the installed share/rlt_bringup/config, else the source tree's."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        path = Path(prefix) / 'share' / PACKAGE / 'config'
        if prefix and (path / 'rlt.yaml').exists():
            return path
    return Path(__file__).resolve().parents[1] / 'config'


def nodes(variant: str = 'sim', overrides: dict | None = None, core_only: bool = False) -> list[NodeSpec]:
    """The graph's nodes for `variant` ('sim' or 'real'); `overrides` maps node name -> parameters."""
    if variant not in VARIANTS:
        raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
    overrides = overrides or {}
    variant_file = 'sim.yaml' if variant == 'sim' else 'real_robot.yaml'
    names = list(CORE) + ([] if core_only or variant != 'sim' else list(SIM_ONLY))
    specs = []
    for name in names:
        files = (('rlt.yaml',) if name in CORE else ()) + (variant_file,)
        files += ('sim_robot.yaml',) if name == 'sim_robot' else ()
        package = 'rlt_nodes' if name in CORE else 'rlt_sim_nodes'
        specs.append(NodeSpec(package, name, name, files, dict(overrides.get(name, {}))))
    return specs


def launch_overrides(values: dict) -> dict:
    """Node overrides from launch-argument values (strings); empty values are left out."""
    import yaml
    out = {}
    for arg, value in values.items():
        if value in ('', None):
            continue
        for node, param in LAUNCH_ARGUMENTS[arg][2]:
            parsed = value if param in STRING_PARAMETERS else yaml.safe_load(value)
            out.setdefault(node, {})[param] = parsed
    return out


def ros_arguments(spec: NodeSpec, config: Path, extra_param_file: Path | None = None) -> list[str]:
    """The `--ros-args` a process of `spec` needs (what launch_ros passes, for the embedded runner).

    Overrides in `spec.parameters` must be written to `extra_param_file` by the caller
    (`write_overrides`): a YAML file carries every type exactly, the command line does not.
    """
    args = ['--ros-args', '-r', f'__node:={spec.name}']
    for f in spec.param_files:
        args += ['--params-file', str(config / f)]
    if extra_param_file is not None:
        args += ['--params-file', str(extra_param_file)]
    for src, dst in spec.remappings:
        args += ['-r', f'{src}:={dst}']
    return args


def write_overrides(specs: list[NodeSpec], path: Path) -> Path:
    """One YAML file with every spec's overrides, keyed node_name: ros__parameters:."""
    import yaml
    data = {s.name: {'ros__parameters': s.parameters} for s in specs if s.parameters}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=True) if data else '{}\n')
    return path
