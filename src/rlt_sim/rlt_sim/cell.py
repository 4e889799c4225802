"""The peg-in-hole cell: its configuration and its MJCF model, written here as a string.

A Cartesian gantry (three prismatic joints driven by position actuators) carries a
gripper. A square peg hangs from the gripper on a compliant two-axis wrist, so a peg
that lands on the rim tilts and jams rather than sliding in. A block with a square
hole sits on the table; the environment moves it and the peg's grip offset per episode.

The cell is the robot that a robot profile describes (`rlt_core.control.profile`, by default
`gantry_cell`): its joint names and limits, cameras and image size, control rate, episode length and
per-step limit come from the profile (`SimConfig.from_profile`; `SimConfig()`'s defaults are the default
profile's). SimConfig adds only the cell's physics and randomisation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rlt_core.control.profile import RobotProfile

PROFILE = RobotProfile.load()
"""The default robot profile (gantry_cell): the cell as the graph and the trainers see it."""

JOINT_NAMES = PROFILE.joint_names
"""The gantry's prismatic joints (x, y, z axes), from the default profile; action and proprioception follow
this order."""

WRIST_JOINT_NAMES = ("wrist_tilt_x", "wrist_tilt_y")
"""The compliant wrist's hinges (hidden from proprioception)."""

CAMERA_NAMES = PROFILE.camera_names
"""Rendered cameras, from the default profile."""

CAMERA_MOUNTS = ("scene", "wrist_left", "wrist_right")
"""Where the cell's cameras sit, in order: a fixed scene view and two hand-mounted views at right angles. The
profile's cameras take the mounts in its order (at most three)."""

WRIST_CAMERA_LOOK_BELOW_TIP_M = 0.006
"""The hand cameras look at the point this far below the peg tip, on the peg's axis."""

WRIST_CAMERA_SIDE_M = 0.045
"""How far beside the peg's axis each hand camera sits."""

WRIST_CAMERA_ABOVE_M = 0.048
"""How far above the point they look at the hand cameras sit, along the peg's axis."""

WRIST_CAMERA_FOVY_DEG = 45.0
"""The hand cameras' vertical field of view. With the offsets above, a pixel spans about 0.6 mm at the tip in
a 96 px image: the hole's 1 mm clearance stays visible."""

PEG_HALF_WIDTH_M = 0.005
"""Half the side of the square peg (10 mm peg)."""

PEG_LENGTH_M = 0.02
"""Length of the peg from the gripper to its tip."""

PEG_MASS_KG = 0.01
"""Mass of the peg."""

BLOCK_HALF_SIZE_M = 0.025
"""Half the side of the square block that holds the hole."""

BLOCK_TOP_Z_M = 0.05
"""Height of the block's top face (the hole entrance) above the table."""

HOLE_DEPTH_M = 0.015
"""Depth of the hole below its entrance."""

WRIST_HOME_Z_M = 0.12
"""Height of the wrist pivot above the table when gantry_z is 0."""

PEG_TOP_BELOW_WRIST_M = 0.002
"""Distance from the wrist pivot down to the top of the peg."""

JOINT_RANGES_M = tuple(zip(PROFILE.joint_lower, PROFILE.joint_upper, strict=True))
"""Workspace limits of the gantry joints (x, y, z), in metres, from the default profile."""


def _square_image_size(profile: RobotProfile) -> int:
    sizes = {(c.width, c.height) for c in profile.cameras}
    if len(sizes) != 1 or sizes.pop()[0] != profile.cameras[0].height:
        raise ValueError(f"the sim renders square images of one size; profile {profile.name!r} has "
                         f"{[(c.name, c.width, c.height) for c in profile.cameras]}")
    return profile.cameras[0].width


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Everything that can be changed about the cell and its episodes.

    The robot's facts (joints, limits, cameras, rate, episode length, per-step limit) default to the default
    robot profile's; `from_profile` takes them from another. The rest is the cell's physics."""

    joint_names: tuple[str, ...] = JOINT_NAMES
    """Names of the gantry's x, y and z joints (the profile's joint names)."""
    joint_ranges_m: tuple[tuple[float, float], ...] = JOINT_RANGES_M
    """Workspace limits (lower, upper) of each gantry joint, in metres (the profile's joint limits)."""
    camera_names: tuple[str, ...] = CAMERA_NAMES
    """Rendered cameras, on CAMERA_MOUNTS in order (the profile's cameras)."""
    control_hz: float = PROFILE.control_hz
    """Control steps per second; physics substeps run in between (the profile's control_hz)."""
    max_steps: int = PROFILE.max_steps
    """Control steps before an episode is truncated (the profile's max_steps)."""
    image_size: int = _square_image_size(PROFILE)
    """Height and width of every camera image, in pixels (the profile's camera size)."""
    max_delta_m: tuple[float, ...] = PROFILE.max_delta
    """Largest commanded move per control step of each joint, in metres (the profile's max_delta)."""
    clearance_mm: float = 1.0
    """Gap between the peg and the hole wall on each side, in millimetres."""
    timestep_s: float = 0.002
    """Physics timestep in seconds."""
    render: bool = True
    """Render camera images into the observation (False: proprioception only, faster)."""
    hole_range_m: float = 0.025
    """The hole's x and y are drawn uniformly from +-this range each episode."""
    grip_offset_range_m: float = 0.003
    """The peg's hidden x and y offset in the gripper is drawn from +-this range."""
    start_range_m: float = 0.01
    """The gantry's start x and y are drawn from +-this range around home."""
    critical_radius_m: float = 0.015
    """The critical phase holds while the peg tip is this close to the hole entrance."""
    insert_depth_m: float = 0.01
    """Success once the peg tip is this far below the hole entrance."""
    max_target_lead_m: float = 0.01
    """The position target may lead the measured joint position by at most this much."""
    gantry_kp: float = 3000.0
    """Position gain of the gantry actuators, in N/m."""
    gantry_force_limit_n: float = 30.0
    """Largest force each gantry actuator can apply, in newtons."""
    wrist_stiffness: float = 2.0
    """Rotational stiffness of each wrist hinge, in N m/rad."""
    wrist_damping: float = 0.05
    """Rotational damping of each wrist hinge, in N m s/rad."""
    friction: float = 0.6
    """Sliding friction coefficient between the peg and the block."""
    instruction: str = "insert the peg into the hole"
    """Language instruction given with every episode."""

    @classmethod
    def from_profile(cls, profile: RobotProfile | str | None = None, **physics) -> SimConfig:
        """The cell as `profile` describes it (a RobotProfile, or a path or name for `RobotProfile.load`)."""
        if not isinstance(profile, RobotProfile):
            profile = RobotProfile.load(profile)
        if profile.action_space != "joint_delta":
            raise ValueError(f"the sim takes joint_delta actions, not {profile.action_space!r}")
        return cls(
            joint_names=profile.joint_names,
            joint_ranges_m=tuple(zip(profile.joint_lower, profile.joint_upper, strict=True)),
            camera_names=profile.camera_names,
            control_hz=profile.control_hz,
            max_steps=profile.max_steps,
            image_size=_square_image_size(profile),
            max_delta_m=profile.max_delta,
            **physics,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        object.__setattr__(self, "joint_ranges_m", tuple(tuple(r) for r in self.joint_ranges_m))
        object.__setattr__(self, "camera_names", tuple(self.camera_names))
        try:  # one number: the same limit on every axis
            max_delta = tuple(float(d) for d in np.broadcast_to(np.asarray(self.max_delta_m, dtype=float), (3,)))
        except (TypeError, ValueError):
            raise ValueError(f"SimConfig.max_delta_m needs 3 numbers, got {self.max_delta_m!r}") from None
        object.__setattr__(self, "max_delta_m", max_delta)
        if len(self.joint_names) != 3 or len(set(self.joint_names)) != 3:
            raise ValueError(f"SimConfig.joint_names: the gantry has 3 distinct joints, got {self.joint_names}")
        if len(self.joint_ranges_m) != 3 or not all(len(r) == 2 and r[0] < r[1] for r in self.joint_ranges_m):
            raise ValueError(f"SimConfig.joint_ranges_m needs 3 (lower, upper) pairs, got {self.joint_ranges_m}")
        if not 1 <= len(self.camera_names) <= len(CAMERA_MOUNTS) or len(set(self.camera_names)) != len(
            self.camera_names
        ):
            raise ValueError(
                f"SimConfig.camera_names: 1 to {len(CAMERA_MOUNTS)} distinct cameras, got {self.camera_names}"
            )
        if len(self.max_delta_m) != 3 or not all(0 < d <= 0.02 for d in self.max_delta_m):
            raise ValueError(f"SimConfig.max_delta_m needs 3 entries in (0, 0.02] m, got {self.max_delta_m}")
        positive = (
            "clearance_mm",
            "control_hz",
            "timestep_s",
            "max_steps",
            "image_size",
            "critical_radius_m",
            "insert_depth_m",
            "max_target_lead_m",
            "gantry_kp",
            "gantry_force_limit_n",
            "wrist_stiffness",
            "wrist_damping",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"SimConfig.{name} must be a positive number, got {value!r}")
        non_negative = ("hole_range_m", "grip_offset_range_m", "start_range_m", "friction")
        for name in non_negative:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"SimConfig.{name} must be >= 0, got {value!r}")
        if self.clearance_mm >= PEG_HALF_WIDTH_M * 1000:
            raise ValueError(f"SimConfig.clearance_mm must be < {PEG_HALF_WIDTH_M * 1000} mm")
        if self.insert_depth_m >= HOLE_DEPTH_M:
            raise ValueError(f"SimConfig.insert_depth_m must be < hole depth {HOLE_DEPTH_M} m")
        if self.hole_range_m > 0.04 or self.start_range_m > 0.04:
            raise ValueError("SimConfig.hole_range_m and start_range_m must be <= 0.04 m")
        if self.grip_offset_range_m > 0.005:
            raise ValueError("SimConfig.grip_offset_range_m must be <= 0.005 m")
        if not isinstance(self.max_steps, int) or not isinstance(self.image_size, int):
            raise ValueError("SimConfig.max_steps and image_size must be integers")
        if not 16 <= self.image_size <= 1024:
            raise ValueError("SimConfig.image_size must be between 16 and 1024")
        period = 1.0 / self.control_hz
        if abs(self.substeps * self.timestep_s - period) > 0.01 * period:
            raise ValueError(
                "SimConfig: the control period 1/control_hz must be a whole number of "
                f"timesteps ({self.timestep_s} s), got control_hz={self.control_hz}"
            )

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return max(1, round(1.0 / (self.control_hz * self.timestep_s)))

    @property
    def hole_half_width_m(self) -> float:
        """Half the side of the square hole."""
        return PEG_HALF_WIDTH_M + self.clearance_mm / 1000.0


def _camera_axes(position, target, up=(0.0, 0.0, 1.0)) -> str:
    """The MJCF `xyaxes` of a camera at `position` looking at `target` with `up` up."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return " ".join(f"{v:.6f}" for v in (*right, *up))


def _fmt(*values: float) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def block_boxes(hole_half: float) -> list[tuple[str, str, tuple, tuple]]:
    """The block as boxes (name, kind, position, half sizes) in its frame: a solid base and four walls around the
    hole (kind "block", they collide), and dark liners and a frame around the entrance (kind "liner", only seen)."""
    b, d = BLOCK_HALF_SIZE_M, HOLE_DEPTH_M
    top = BLOCK_TOP_Z_M
    wall_z = top - d / 2
    base_half_z = (top - d) / 2
    side = (b - hole_half) / 2
    middle = (b + hole_half) / 2
    boxes = [
        ("block_base", "block", (0, 0, base_half_z), (b, b, base_half_z)),
        ("wall_px", "block", (middle, 0, wall_z), (side, b, d / 2)),
        ("wall_nx", "block", (-middle, 0, wall_z), (side, b, d / 2)),
        ("wall_py", "block", (0, middle, wall_z), (hole_half, side, d / 2)),
        ("wall_ny", "block", (0, -middle, wall_z), (hole_half, side, d / 2)),
    ]
    # Thin dark plates just inside the hole's faces and floor: they only change its look.
    t, e = 0.0002, 0.00005
    liners = [
        ((hole_half - t - e, 0, wall_z), (t, hole_half, d / 2)),
        ((-hole_half + t + e, 0, wall_z), (t, hole_half, d / 2)),
        ((0, hole_half - t - e, wall_z), (hole_half, t, d / 2)),
        ((0, -hole_half + t + e, wall_z), (hole_half, t, d / 2)),
        ((0, 0, top - d + t + e), (hole_half, hole_half, t)),
    ]
    # A dark frame on the top face around the entrance makes the hole stand out from afar.
    f = 0.002
    frame = [
        ((hole_half + f / 2, 0), (f / 2, hole_half + f)),
        ((-hole_half - f / 2, 0), (f / 2, hole_half + f)),
        ((0, hole_half + f / 2), (hole_half, f / 2)),
        ((0, -hole_half - f / 2), (hole_half, f / 2)),
    ]
    liners += [((x, y, top + e), (sx, sy, e)) for (x, y), (sx, sy) in frame]
    return boxes + [("", "liner", pos, size) for pos, size in liners]


def _block_geoms(hole_half: float) -> str:
    """The block's boxes as MJCF geoms."""
    lines = []
    for name, kind, pos, size in block_boxes(hole_half):
        named = f'name="{name}" ' if name else ""
        css = "block" if kind == "block" else "hole_liner"
        lines.append(f'<geom {named}class="{css}" pos="{_fmt(*pos)}" size="{_fmt(*size)}"/>')
    return "\n      ".join(lines)


def build_mjcf(config: SimConfig) -> str:
    """The MJCF text of the cell for `config`."""
    hole_half = config.hole_half_width_m
    peg_w, peg_half_len = PEG_HALF_WIDTH_M, PEG_LENGTH_M / 2
    peg_z = -PEG_TOP_BELOW_WRIST_M - peg_half_len
    tip_len = 0.003
    finger_x, finger_z = PEG_HALF_WIDTH_M + 0.0015, peg_half_len - 0.003
    offscreen = max(640, config.image_size)
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = config.joint_ranges_m
    jx, jy, jz = config.joint_names
    names = (*config.camera_names, *(f"unused_{m}" for m in CAMERA_MOUNTS[len(config.camera_names) :]))
    mounts = dict(zip(CAMERA_MOUNTS, names, strict=True))  # mount -> the camera's name
    look_z = -PEG_TOP_BELOW_WRIST_M - PEG_LENGTH_M - WRIST_CAMERA_LOOK_BELOW_TIP_M
    look_at = (0.0, 0.0, look_z)
    # Two hand cameras 90 degrees apart about the vertical, looking down past the peg tip.
    r = WRIST_CAMERA_SIDE_M / math.sqrt(2)
    cam_left = (-r, -r, look_z + WRIST_CAMERA_ABOVE_M)
    cam_right = (r, -r, look_z + WRIST_CAMERA_ABOVE_M)
    scene_pos = (0.0, -0.32, 0.26)
    scene_target = (0.0, 0.0, BLOCK_TOP_Z_M)
    stiff, damp = config.wrist_stiffness, config.wrist_damping
    kv = 2 * math.sqrt(config.gantry_kp * 1.5)  # about critical for ~1.5 kg of moving mass
    act = f'kp="{config.gantry_kp}" kv="{kv:.3f}"'
    limit = config.gantry_force_limit_n
    force = f'forcelimited="true" forcerange="{_fmt(-limit, limit)}"'
    return f"""
<mujoco model="rlt_peg_in_hole">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{config.timestep_s}" integrator="implicitfast" cone="elliptic"
          impratio="10" iterations="50" tolerance="1e-10"/>
  <visual>
    <global offwidth="{offscreen}" offheight="{offscreen}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
  </visual>
  <default>
    <geom contype="0" conaffinity="0" solref="0.004 1" solimp="0.95 0.99 0.0005"/>
    <default class="block">
      <geom type="box" contype="1" conaffinity="2" rgba="0.72 0.7 0.64 1"
            friction="{config.friction} 0.005 0.0001"/>
    </default>
    <default class="hole_liner">
      <geom type="box" rgba="0.05 0.05 0.08 1"/>
    </default>
    <default class="visual">
      <geom group="1"/>
    </default>
  </default>
  <worldbody>
    <light name="top" pos="0 -0.2 0.6" dir="0 0.3 -1" castshadow="false" diffuse="0.6 0.6 0.6"/>
    <geom name="table" type="plane" size="0.3 0.3 0.01" rgba="0.45 0.5 0.55 1"/>
    <camera name="{mounts['scene']}" pos="{_fmt(*scene_pos)}" xyaxes="{_camera_axes(scene_pos, scene_target)}"
            fovy="45"/>
    <body name="block" pos="0 0 0">
      {_block_geoms(hole_half)}
      <site name="hole_entrance" pos="{_fmt(0, 0, BLOCK_TOP_Z_M)}" size="0.001" group="5"/>
    </body>
    <body name="carriage_x" pos="0 0 0" gravcomp="1">
      <joint name="{jx}" type="slide" axis="1 0 0" range="{_fmt(xlo, xhi)}" damping="5"/>
      <inertial pos="0 0 0.3" mass="1.0" diaginertia="0.01 0.01 0.01"/>
      <geom class="visual" type="box" pos="0 0 0.32" size="0.02 0.3 0.01" rgba="0.3 0.3 0.35 1"/>
      <body name="carriage_y" pos="0 0 0" gravcomp="1">
        <joint name="{jy}" type="slide" axis="0 1 0" range="{_fmt(ylo, yhi)}" damping="5"/>
        <inertial pos="0 0 0.3" mass="0.5" diaginertia="0.005 0.005 0.005"/>
        <body name="gripper" pos="0 0 {WRIST_HOME_Z_M}" gravcomp="1">
          <joint name="{jz}" type="slide" axis="0 0 1" range="{_fmt(zlo, zhi)}" damping="5"/>
          <inertial pos="0 0 0.02" mass="0.3" diaginertia="0.001 0.001 0.001"/>
          <geom class="visual" type="cylinder" pos="0 0 0.1" size="0.006 0.09"
                rgba="0.3 0.3 0.35 1"/>
          <geom class="visual" type="box" pos="0 0 0.005" size="0.008 0.008 0.003"
                rgba="0.25 0.25 0.3 1"/>
          <camera name="{mounts['wrist_left']}" pos="{_fmt(*cam_left)}"
                  xyaxes="{_camera_axes(cam_left, look_at)}" fovy="{WRIST_CAMERA_FOVY_DEG:g}"/>
          <camera name="{mounts['wrist_right']}" pos="{_fmt(*cam_right)}"
                  xyaxes="{_camera_axes(cam_right, look_at)}" fovy="{WRIST_CAMERA_FOVY_DEG:g}"/>
          <body name="wrist" pos="0 0 0" gravcomp="1">
            <joint name="wrist_tilt_x" type="hinge" axis="1 0 0" stiffness="{stiff}"
                   damping="{damp}" armature="0.0005"/>
            <joint name="wrist_tilt_y" type="hinge" axis="0 1 0" stiffness="{stiff}"
                   damping="{damp}" armature="0.0005"/>
            <inertial pos="0 0 0" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
            <body name="peg" pos="{_fmt(0, 0, peg_z)}">
              <inertial pos="0 0 0" mass="{PEG_MASS_KG}" diaginertia="5e-7 5e-7 2e-7"/>
              <geom name="peg" type="box" size="{_fmt(peg_w, peg_w, peg_half_len)}" group="3"
                    contype="2" conaffinity="1" friction="{config.friction} 0.005 0.0001"/>
              <geom class="visual" type="box" pos="{_fmt(0, 0, tip_len / 2)}"
                    size="{_fmt(peg_w, peg_w, peg_half_len - tip_len / 2)}"
                    rgba="0.15 0.35 0.9 1"/>
              <geom class="visual" type="box" pos="{_fmt(0, 0, -peg_half_len + tip_len / 2)}"
                    size="{_fmt(peg_w, peg_w, tip_len / 2)}"
                    rgba="0.95 0.15 0.1 1"/>
              <geom class="visual" type="box" pos="{_fmt(finger_x, 0, finger_z)}"
                    size="0.0015 0.004 0.003" rgba="0.6 0.6 0.6 1"/>
              <geom class="visual" type="box" pos="{_fmt(-finger_x, 0, finger_z)}"
                    size="0.0015 0.004 0.003" rgba="0.6 0.6 0.6 1"/>
              <site name="peg_tip" pos="{_fmt(0, 0, -peg_half_len)}" size="0.001" group="5"/>
            </body>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position name="{jx}" joint="{jx}" {act} {force} ctrlrange="{_fmt(xlo, xhi)}"/>
    <position name="{jy}" joint="{jy}" {act} {force} ctrlrange="{_fmt(ylo, yhi)}"/>
    <position name="{jz}" joint="{jz}" {act} {force} ctrlrange="{_fmt(zlo, zhi)}"/>
  </actuator>
</mujoco>
"""
