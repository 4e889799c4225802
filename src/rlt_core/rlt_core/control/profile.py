"""The robot profile: every fact about the robot (or simulated cell) stated once.

One YAML file per robot or cell (`rlt_bringup/config/profiles/<name>.yaml`; `gantry_cell.yaml`
is the default): joints and their limits, the action space, the control rate, per-step limits in
general and in the critical phase, cameras, the VLA's and the actor's chunk lengths and the
transition stride, the episode length and the trajectory controller's name; for an arm acting in
end-effector space (`ee_delta`, e.g. `ur5e_cell.yaml`) also its robot description (URDF), base and
tool frames, Cartesian workspace box and gripper; the joints' velocity limits are the URDF's. Nodes
take its path as the `robot_profile` parameter, trainers as `--robot-profile`; nothing else states
these facts.

`RobotProfile.hash` identifies the facts (not the file's name or comments; with a URDF, its content
too): actor weights carry the hash of the profile they were trained for, and weights of another
profile are refused.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from rlt_core.control.safety import ActionLimits
from rlt_core.runtime import bringup_dir

DEFAULT_PROFILE = 'gantry_cell'
ACTION_SPACES = ('joint_delta', 'ee_delta')
"""joint_delta: one action dimension per joint, a move of its position per control step (robot units).
ee_delta: a move of the tool frame per control step, in the base frame: [dx, dy, dz] (m) of its origin, then
[rx, ry, rz] (rad), a rotation vector (axis times angle) about base-frame axes applied on the left
(R' = exp(r) R); with a gripper, a 7th dimension: the change of the gripper's opening per step, normalised
(0 closed, 1 open). Joint targets come from the differential IK of `rlt_core.control.kinematics`."""
EE_DIM = 6
"""Action dimensions of ee_delta without the gripper: position (3), rotation vector (3)."""
RAW_ENCODINGS = ('rgb8', 'bgr8', 'mono8')
"""Encodings of the sensor_msgs/Image a camera may publish."""
COMPRESSED_FORMATS = ('jpeg', 'png')
"""Compressions of the sensor_msgs/CompressedImage a camera may publish."""
TRANSPORTS = {'raw': RAW_ENCODINGS, 'compressed': COMPRESSED_FORMATS}
"""How a camera publishes (sensor_msgs/Image or sensor_msgs/CompressedImage), and the encodings of each."""


class ProfileError(ValueError):
    """A robot profile that is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Camera:
    """One camera: what its driver publishes, and the image the VLA sees of it (RGB, width x height)."""

    name: str
    encoding: str = 'any'
    """What the driver publishes: one of its transport's encodings (TRANSPORTS), or 'any' of them."""
    width: int = 96
    """Width (pixels) of the image the VLA sees: every image of the camera is resized to it."""
    height: int = 96
    """Height (pixels) of the image the VLA sees."""
    topic: str = ''
    """The driver's topic ('': cameras/<name>/image_raw); relative topics follow the node's namespace."""
    transport: str = ''
    """'raw' (sensor_msgs/Image) or 'compressed' (sensor_msgs/CompressedImage); '': compressed where the topic ends
    in /compressed (image_transport's name), else raw."""

    def __post_init__(self):
        def check(ok, text):
            if not ok:
                raise ProfileError(f'camera {self.name!r}: {text}')
        check(bool(self.name), 'a camera needs a name')
        check(self.transport in ('', *TRANSPORTS), f'transport {self.transport!r} is not one of {sorted(TRANSPORTS)}')
        transport = 'compressed' if self.compressed else 'raw'
        encodings = TRANSPORTS[transport]
        check(self.encoding == 'any' or self.encoding in encodings,
              f'encoding {self.encoding!r} is not any or one of {list(encodings)} (transport {transport})')
        check(self.width > 0 and self.height > 0, f'width and height must be positive: {self.width}x{self.height}')
        check(not (self.transport == 'raw' and self.image_topic.endswith('/compressed')),
              f'topic {self.image_topic} is a compressed image topic, but transport is raw')

    @property
    def image_topic(self) -> str:
        """The topic the camera's images arrive on."""
        return self.topic or f'cameras/{self.name}/image_raw'

    @property
    def compressed(self) -> bool:
        """Whether its images are sensor_msgs/CompressedImage (else sensor_msgs/Image)."""
        return self.transport == 'compressed' or (not self.transport and self.image_topic.endswith('/compressed'))

    def accepts(self, encoding: str) -> bool:
        """Whether the profile lets this camera publish images of `encoding` (its transport's)."""
        return self.encoding in ('any', encoding)

    def to_dict(self) -> dict:
        """The camera as a profile file states it: topic and transport only where given."""
        data = {'name': self.name, 'encoding': self.encoding, 'width': self.width, 'height': self.height}
        data.update({key: value for key, value in (('topic', self.topic), ('transport', self.transport)) if value})
        return data


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
    """Largest move per control step of each action dimension, whoever drives (ee_delta: dx, dy, dz in m,
    rx, ry, rz in rad, then the gripper's if it has one)."""
    critical_max_delta: tuple[float, ...]
    """Largest move per control step in the critical phase, whoever drives: the actor's output range. A zero
    holds that dimension still there (the tool's orientation in an insertion that needs none)."""
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
    urdf: str = ''
    """The robot description (URDF) file: absolute, or relative to rlt_bringup's description/ folder; required by
    ee_delta. Its joint velocity limits are the robot's; the joint limits above must lie within its own."""
    base_frame: str = ''
    """The URDF frame that end-effector actions, the tool pose and the workspace box are expressed in."""
    tool_frame: str = ''
    """The URDF frame that end-effector actions move (e.g. tool0)."""
    workspace_lower: tuple[float, ...] = ()
    """ee_delta: lower (x, y, z) corner (m, base frame) of the box every tool position target must lie in."""
    workspace_upper: tuple[float, ...] = ()
    """ee_delta: upper (x, y, z) corner of that box."""
    gripper: bool = False
    """ee_delta: the action has a 7th dimension, the gripper command (ACTION_SPACES)."""
    home: tuple[float, ...] = ()
    """Joint positions the arbiter moves the robot to between operator episodes (`rlt_core.control.homing`);
    empty: no homing move, the operator places the robot."""

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
        check(all(0 < m for m in self.max_delta) and max(self.critical_max_delta) > 0
              and all(0 <= c <= m for c, m in zip(self.critical_max_delta, self.max_delta, strict=True)),
              'per-step limits need 0 < max_delta, 0 <= critical_max_delta <= max_delta, one critical limit > 0')
        check(0 < self.control_hz <= 1000, 'control_hz must be in (0, 1000]')
        check(bool(self.controller_name), 'controller_name is empty')
        check(len({c.name for c in self.cameras}) == len(self.cameras) > 0, 'cameras need distinct names')
        check(len({c.image_topic for c in self.cameras}) == len(self.cameras), 'cameras need distinct topics')
        check(self.actor_chunk_len > 0 and self.stride > 0 and self.actor_chunk_len % self.stride == 0,
              'actor_chunk_len must be a positive multiple of stride')
        check(self.vla_chunk_len >= self.actor_chunk_len, 'vla_chunk_len (H) must be >= actor_chunk_len (C)')
        check(self.max_steps > 0, 'max_steps must be positive')
        check(not self.home or (len(self.home) == n and all(
            lo <= h <= hi for h, lo, hi in zip(self.home, self.joint_lower, self.joint_upper, strict=True))),
            'home needs one position per joint, within the joint limits')
        frames = (self.urdf, self.base_frame, self.tool_frame)
        check(all(frames) or not any(frames), 'kinematics needs urdf, base_frame and tool_frame together')
        if self.action_space == 'ee_delta':
            check(all(frames), 'ee_delta needs kinematics: urdf, base_frame and tool_frame')
            check(len(self.workspace_lower) == 3 and len(self.workspace_upper) == 3,
                  'ee_delta needs a workspace box: lower and upper (x, y, z)')
            check(all(lo < hi for lo, hi in zip(self.workspace_lower, self.workspace_upper, strict=True)),
                  'workspace box needs lower < upper')
        else:
            check(not self.workspace_lower and not self.workspace_upper and not self.gripper,
                  'workspace and gripper belong to the ee_delta action space')
        if self.urdf:
            from rlt_core.control.kinematics import KinematicsError
            try:
                self.kinematics()
            except KinematicsError as err:
                check(False, f'{self.urdf_path}: {err}')

    # --- derived ---

    @property
    def action_dim(self) -> int:
        if self.action_space == 'ee_delta':
            return EE_DIM + int(self.gripper)
        return len(self.joint_names)

    @property
    def action_names(self) -> tuple[str, ...]:
        """Each action dimension's name: the joint's (joint_delta); x, y, z, rx, ry, rz, then gripper (ee_delta)."""
        if self.action_space == 'ee_delta':
            return ('x', 'y', 'z', 'rx', 'ry', 'rz', 'gripper')[:self.action_dim]
        return self.joint_names

    @property
    def proprio_dim(self) -> int:
        """The joint state the policies read: every joint's position, then its velocity."""
        return 2 * len(self.joint_names)

    @property
    def urdf_path(self) -> Path | None:
        """The robot description's file (None without one)."""
        if not self.urdf:
            return None
        path = Path(self.urdf)
        return path if path.is_absolute() else bringup_dir() / 'description' / path

    def kinematics(self, with_workspace: bool = True, **kwargs):
        """A new `ArmKinematics` of this robot: its URDF, joints in action order, base and tool frames, joint
        limits and (unless not `with_workspace`) workspace box; `kwargs` set the IK's damping and tolerances.
        Raises KinematicsError."""
        from rlt_core.control.kinematics import ArmKinematics
        if not self.urdf:
            raise ProfileError(f'robot profile {self.name!r} has no robot description (urdf)')
        workspace = (self.workspace_lower, self.workspace_upper) if with_workspace and self.workspace_lower else None
        return ArmKinematics.from_file(self.urdf_path, self.joint_names, self.base_frame, self.tool_frame,
                                       lower=self.joint_lower, upper=self.joint_upper, workspace=workspace, **kwargs)

    @property
    def joint_velocity_limits(self) -> tuple[float, ...]:
        """Each joint's largest speed, from the URDF (robot units per second); () without a URDF."""
        return tuple(self.kinematics().velocity_limit.tolist()) if self.urdf else ()

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
        defaults = {f.name: f.default for f in fields(self) if f.name in KINEMATICS_FIELDS}
        facts = {k: v for k, v in asdict(self).items()
                 if k != 'description' and not (k in defaults and v == defaults[k])}
        facts['cameras'] = [{k: v for k, v in camera.items() if k not in CAMERA_DRIVER_FIELDS}
                            for camera in facts['cameras']]
        if self.urdf:
            facts['urdf_sha256'] = hashlib.sha256(self.urdf_path.read_bytes()).hexdigest()
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
                 'episode', 'kinematics'}
        if not isinstance(data, dict):
            raise ProfileError(f'{source}: a robot profile is a mapping')
        unknown = set(data) - known
        if unknown:
            raise ProfileError(f'{source}: unknown keys {sorted(unknown)} (known: {sorted(known)})')
        for key, keys in (('action', _ACTION_KEYS), ('kinematics', _KINEMATICS_KEYS)):
            if isinstance(data.get(key), dict) and set(data[key]) - keys:
                raise ProfileError(f'{source}: unknown keys {sorted(set(data[key]) - keys)} in {key} '
                                   f'(known: {sorted(keys)})')
        try:
            joints, action, chunks = data['joints'], data['action'], data['chunks']
            kinematics, workspace = data.get('kinematics') or {}, action.get('workspace') or {}
            cameras = tuple(_camera(c) for c in data['cameras'])
            return cls(
                name=str(data['name']), description=str(data.get('description', '')),
                joint_names=tuple(str(n) for n in joints['names']),
                joint_lower=tuple(float(v) for v in joints['lower']),
                joint_upper=tuple(float(v) for v in joints['upper']),
                home=tuple(float(v) for v in joints.get('home', ())),
                controller_name=str(data['controller_name']), control_hz=float(data['control_hz']),
                action_space=str(action['space']), max_delta=tuple(float(v) for v in action['max_delta']),
                critical_max_delta=tuple(float(v) for v in action['critical_max_delta']), cameras=cameras,
                vla_chunk_len=int(chunks['vla_chunk_len']), actor_chunk_len=int(chunks['actor_chunk_len']),
                stride=int(chunks['stride']), max_steps=int(data['episode']['max_steps']),
                urdf=str(kinematics.get('urdf', '')), base_frame=str(kinematics.get('base_frame', '')),
                tool_frame=str(kinematics.get('tool_frame', '')),
                workspace_lower=tuple(float(v) for v in workspace.get('lower', ())),
                workspace_upper=tuple(float(v) for v in workspace.get('upper', ())),
                gripper=_boolean(action.get('gripper', False)))
        except ProfileError as err:
            raise ProfileError(f'{source}: {err}') from None
        except (KeyError, TypeError, ValueError) as err:
            raise ProfileError(f'{source}: missing or malformed entry ({type(err).__name__}: {err})') from None

    def to_dict(self) -> dict:
        """The profile as its YAML file states it (`from_dict`'s inverse)."""
        data = {'name': self.name, 'description': self.description,
                'joints': {'names': list(self.joint_names), 'lower': list(self.joint_lower),
                           'upper': list(self.joint_upper)},
                'controller_name': self.controller_name, 'control_hz': self.control_hz,
                'action': {'space': self.action_space, 'max_delta': list(self.max_delta),
                           'critical_max_delta': list(self.critical_max_delta)},
                'cameras': [c.to_dict() for c in self.cameras],
                'chunks': {'vla_chunk_len': self.vla_chunk_len, 'actor_chunk_len': self.actor_chunk_len,
                           'stride': self.stride},
                'episode': {'max_steps': self.max_steps}}
        if self.home:
            data['joints']['home'] = list(self.home)
        if self.action_space == 'ee_delta':
            data['action'].update(gripper=self.gripper, workspace={'lower': list(self.workspace_lower),
                                                                   'upper': list(self.workspace_upper)})
        if self.urdf:
            data['kinematics'] = {'urdf': self.urdf, 'base_frame': self.base_frame, 'tool_frame': self.tool_frame}
        return data

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


KINEMATICS_FIELDS = ('urdf', 'base_frame', 'tool_frame', 'workspace_lower', 'workspace_upper', 'gripper', 'home')
"""The robot description, end-effector and homing fields: left out of the hash while at their defaults, so a
profile without them (the gantry's) keeps the hash it had before they existed."""
CAMERA_DRIVER_FIELDS = ('topic', 'transport')
"""Where a camera's driver publishes: left out of the hash (remapping a topic changes nothing the policies see)."""
_CAMERA_KEYS = {'name', 'encoding', 'width', 'height', 'topic', 'transport'}
_ACTION_KEYS = {'space', 'max_delta', 'critical_max_delta', 'gripper', 'workspace'}
_KINEMATICS_KEYS = {'urdf', 'base_frame', 'tool_frame'}


def _camera(data: dict) -> Camera:
    if not isinstance(data, dict) or set(data) - _CAMERA_KEYS:
        raise ProfileError(f'a camera is a mapping of {sorted(_CAMERA_KEYS)}, got {data!r}')
    return Camera(name=str(data['name']), encoding=str(data.get('encoding', 'any')), width=int(data['width']),
                  height=int(data['height']), topic=str(data.get('topic', '')),
                  transport=str(data.get('transport', '')))


def _boolean(value) -> bool:
    if not isinstance(value, bool):
        raise ProfileError(f'gripper must be true or false, got {value!r}')
    return value


def profiles_dir() -> Path:
    return bringup_dir() / 'config' / 'profiles'


def resolve_profile_path(path: str | Path | None = None) -> Path:
    """A profile's file: `path` itself, or a name in the profiles folder ('' or None: the default)."""
    text = str(path or DEFAULT_PROFILE)
    if '/' not in text and not text.endswith(('.yaml', '.yml')):
        return profiles_dir() / f'{text}.yaml'
    return Path(text)
