"""The robot profile: every fact about the robot (or simulated cell) stated once.

One YAML file per robot or cell (`rlt_bringup/config/profiles/<name>.yaml`; `gantry_cell.yaml`
is the default): joints and their limits, the action space, the control rate, per-step limits in
general and in the critical phase, cameras, the VLA's and the actor's chunk lengths and the
transition stride, the episode length and the trajectory controller's name. Nodes take its path as
the `robot_profile` parameter, trainers as `--robot-profile`; nothing else states these facts.

`RobotProfile.hash` identifies the facts (not the file's name or comments): actor weights carry the
hash of the profile they were trained for, and weights of another profile are refused.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rlt_core.control.safety import ActionLimits
from rlt_core.runtime import bringup_dir

DEFAULT_PROFILE = 'gantry_cell'
ACTION_SPACES = ('joint_delta',)
"""joint_delta: one action dimension per joint, a move of its position per control step (robot units)."""
ENCODINGS = ('rgb8', 'bgr8', 'mono8')


class ProfileError(ValueError):
    """A robot profile that is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Camera:
    name: str
    encoding: str = 'rgb8'
    width: int = 96
    height: int = 96


@dataclass(frozen=True)
class RobotProfile:
    name: str
    """The robot's or cell's name."""
    joint_names: tuple[str, ...]
    """Joints in action order (joint_states may list them in any order, with others among them)."""
    joint_lower: tuple[float, ...]
    """Lower position limit of each joint."""
    joint_upper: tuple[float, ...]
    """Upper position limit of each joint."""
    controller_name: str
    """The JointTrajectoryController: commands go to /<controller_name>/joint_trajectory."""
    control_hz: float
    """Control steps per second: one executed action, one trajectory point per step."""
    action_space: str
    """What an action is (ACTION_SPACES)."""
    max_delta: tuple[float, ...]
    """Largest move per control step of each action dimension, whoever drives."""
    critical_max_delta: tuple[float, ...]
    """Largest move per control step in the critical phase, whoever drives: the actor's output range."""
    cameras: tuple[Camera, ...]
    """The cameras the VLA sees, in its order."""
    vla_chunk_len: int
    """H: actions per chunk the VLA predicts."""
    actor_chunk_len: int
    """C: actions per chunk the actor refines and the arbiter executes."""
    stride: int
    """Transitions start at every stride-th step of the critical phase."""
    max_steps: int
    """Control steps per episode."""
    description: str = ''

    def __post_init__(self):
        def check(ok, text):
            if not ok:
                raise ProfileError(f'robot profile {self.name!r}: {text}')
        n = len(self.joint_names)
        check(n > 0 and len(set(self.joint_names)) == n, f'joint names must be distinct: {self.joint_names}')
        check(len(self.joint_lower) == n and len(self.joint_upper) == n, 'one lower and one upper limit per joint')
        check(all(lo < hi for lo, hi in zip(self.joint_lower, self.joint_upper, strict=True)),
              'joint limits need lower < upper')
        check(self.action_space in ACTION_SPACES, f'action space must be one of {ACTION_SPACES}')
        check(len(self.max_delta) == self.action_dim and len(self.critical_max_delta) == self.action_dim,
              f'max_delta and critical_max_delta need {self.action_dim} entries')
        check(all(0 < c <= m for c, m in zip(self.critical_max_delta, self.max_delta, strict=True)),
              'per-step limits need 0 < critical_max_delta <= max_delta')
        check(0 < self.control_hz <= 1000, 'control_hz must be in (0, 1000]')
        check(bool(self.controller_name), 'controller_name is empty')
        check(len({c.name for c in self.cameras}) == len(self.cameras) > 0, 'cameras need distinct names')
        for c in self.cameras:
            check(c.encoding in ENCODINGS and c.width > 0 and c.height > 0, f'camera {c.name}: encoding or size')
        check(self.actor_chunk_len > 0 and self.stride > 0 and self.actor_chunk_len % self.stride == 0,
              'actor_chunk_len must be a positive multiple of stride')
        check(self.vla_chunk_len >= self.actor_chunk_len, 'vla_chunk_len (H) must be >= actor_chunk_len (C)')
        check(self.max_steps > 0, 'max_steps must be positive')

    # --- derived ---

    @property
    def action_dim(self) -> int:
        return len(self.joint_names)

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def limits(self) -> ActionLimits:
        return ActionLimits.symmetric(self.max_delta)

    @property
    def critical_limits(self) -> ActionLimits:
        return ActionLimits.symmetric(self.critical_max_delta)

    @property
    def hash(self) -> str:
        """SHA-256 (16 hex digits) of the facts, independent of file layout, comments and description."""
        facts = {k: v for k, v in asdict(self).items() if k != 'description'}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]

    def actor_config(self, state_dim: int, **kwargs):
        """The `ActorConfig` of an actor for this robot: C, the action dimension, its scale (max_delta) and output
        range (critical_max_delta) from the profile, stamped with its hash; `kwargs` set the rest (hidden, std...)."""
        from rlt_core.rl.actor import ActorConfig
        return ActorConfig(state_dim=state_dim, chunk_len=self.actor_chunk_len, action_dim=self.action_dim,
                           action_scale=self.max_delta, action_limit=self.critical_max_delta,
                           profile_hash=self.hash, **kwargs)

    def check_actor(self, config) -> None:
        """Raise ProfileError (a ValueError) unless actor weights of `config` (an ActorConfig) were made for this
        robot: the same profile hash, chunk length and action dimension."""
        problems = []
        if config.profile_hash != self.hash:
            problems.append(f"profile hash {config.profile_hash or '(none)'} != {self.hash} of this robot's profile")
        if config.chunk_len != self.actor_chunk_len:
            problems.append(f'chunk_len {config.chunk_len} != actor_chunk_len {self.actor_chunk_len}')
        if config.action_dim != self.action_dim:
            problems.append(f'action_dim {config.action_dim} != {self.action_dim} joints')
        if problems:
            raise ProfileError(f'actor weights are not for robot profile {self.name!r} ({self.hash}): '
                               + '; '.join(problems))

    def with_chunks(self, actor_chunk_len: int, stride: int) -> 'RobotProfile':
        """The same robot with another actor chunk length and stride (the C = 1 ablation)."""
        return replace(self, actor_chunk_len=actor_chunk_len, stride=stride)

    # --- files ---

    @classmethod
    def from_dict(cls, data: dict, source: str = '<dict>') -> 'RobotProfile':
        known = {'name', 'description', 'joints', 'controller_name', 'control_hz', 'action', 'cameras', 'chunks',
                 'episode'}
        if not isinstance(data, dict):
            raise ProfileError(f'{source}: a robot profile is a mapping')
        unknown = set(data) - known
        if unknown:
            raise ProfileError(f'{source}: unknown keys {sorted(unknown)} (known: {sorted(known)})')
        try:
            joints, action, chunks = data['joints'], data['action'], data['chunks']
            cameras = tuple(Camera(name=str(c['name']), encoding=str(c.get('encoding', 'rgb8')),
                                   width=int(c['width']), height=int(c['height'])) for c in data['cameras'])
            return cls(
                name=str(data['name']), description=str(data.get('description', '')),
                joint_names=tuple(str(n) for n in joints['names']),
                joint_lower=tuple(float(v) for v in joints['lower']),
                joint_upper=tuple(float(v) for v in joints['upper']),
                controller_name=str(data['controller_name']), control_hz=float(data['control_hz']),
                action_space=str(action['space']), max_delta=tuple(float(v) for v in action['max_delta']),
                critical_max_delta=tuple(float(v) for v in action['critical_max_delta']), cameras=cameras,
                vla_chunk_len=int(chunks['vla_chunk_len']), actor_chunk_len=int(chunks['actor_chunk_len']),
                stride=int(chunks['stride']), max_steps=int(data['episode']['max_steps']))
        except ProfileError as err:
            raise ProfileError(f'{source}: {err}') from None
        except (KeyError, TypeError, ValueError) as err:
            raise ProfileError(f'{source}: missing or malformed entry ({type(err).__name__}: {err})') from None

    def to_dict(self) -> dict:
        """The profile as its YAML file states it (`from_dict`'s inverse)."""
        return {'name': self.name, 'description': self.description,
                'joints': {'names': list(self.joint_names), 'lower': list(self.joint_lower),
                           'upper': list(self.joint_upper)},
                'controller_name': self.controller_name, 'control_hz': self.control_hz,
                'action': {'space': self.action_space, 'max_delta': list(self.max_delta),
                           'critical_max_delta': list(self.critical_max_delta)},
                'cameras': [asdict(c) for c in self.cameras],
                'chunks': {'vla_chunk_len': self.vla_chunk_len, 'actor_chunk_len': self.actor_chunk_len,
                           'stride': self.stride},
                'episode': {'max_steps': self.max_steps}}

    def save(self, path: str | Path) -> Path:
        """Write the profile as YAML (e.g. a variant made with `dataclasses.replace`, for a test or a run)."""
        import yaml
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> 'RobotProfile':
        """A profile from a YAML file; a bare name (or nothing: the default) is looked up in the profiles folder."""
        import yaml
        path = resolve_profile_path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ProfileError(f'cannot read robot profile {path}: {err}') from None
        except yaml.YAMLError as err:
            raise ProfileError(f'{path}: not valid YAML: {err}') from None
        return cls.from_dict(data, str(path))


def profiles_dir() -> Path:
    return bringup_dir() / 'config' / 'profiles'


def resolve_profile_path(path: str | Path | None = None) -> Path:
    """A profile's file: `path` itself, or a name in the profiles folder ('' or None: the default)."""
    text = str(path or DEFAULT_PROFILE)
    if '/' not in text and not text.endswith(('.yaml', '.yml')):
        return profiles_dir() / f'{text}.yaml'
    return Path(text)
