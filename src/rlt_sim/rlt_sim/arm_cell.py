"""The peg-in-hole cell of a 6-DoF arm: its configuration and its MuJoCo model, built from the robot description.

The arm is the one a robot profile with an ee_delta action space describes (`ur5e_cell` by default): its URDF
(`RobotProfile.urdf_path`, the file the kinematics layer reads too) is compiled by MuJoCo and placed on the
table with its base at the world origin, so the profile's base frame is the world frame. Around it the cell adds
what a URDF does not hold: the table, the block with the square hole (the gantry cell's block,
`rlt_sim.cell`), lights, a scene camera, two wrist cameras at right angles on the peg holder, a position servo
per joint (gravity compensated, torques limited to the URDF's efforts, as a joint trajectory controller drives
the arm), and a compliant mount between the peg holder and the peg: two hinges with springs, so a peg that lands
on the rim tilts and jams instead of sliding in. The kinematics layer sees the peg rigid and centred; each
episode shifts it in the holder by a hidden grip offset, which only the cameras reveal.
"""

from __future__ import annotations

import dataclasses
import math

import mujoco
import numpy as np

from rlt_core.control.profile import RobotProfile
from rlt_sim.cell import (
    BLOCK_TOP_Z_M,
    CAMERA_MOUNTS,
    HOLE_DEPTH_M,
    PEG_HALF_WIDTH_M,
    WRIST_CAMERA_ABOVE_M,
    WRIST_CAMERA_FOVY_DEG,
    WRIST_CAMERA_LOOK_BELOW_TIP_M,
    WRIST_CAMERA_SIDE_M,
    _camera_axes,
    _square_image_size,
    block_boxes,
)

ARM_PROFILE = "ur5e_cell"
"""The robot profile of the simulated arm."""

PEG_BODY, HOLDER_BODY, TIP_BODY = "peg", "peg_holder", "peg_tip"
"""The description's links that carry the peg, hold it, and mark its tip (the peg's collision box is the peg
link's)."""

TOOL_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
"""The tool frame's orientation in the cell (columns: its axes in the base frame): z pointing down, the peg
vertical, the flange's x along the base's y."""


@dataclasses.dataclass(frozen=True)
class ArmCellConfig:
    """The arm cell and its episodes. The robot's facts come from `profile` (`from_profile`); the rest is the
    cell's layout, physics and randomisation."""

    profile: RobotProfile
    """The arm's robot profile: joints and limits, description, base and tool frames, cameras, rate, episode
    length, per-step limits of the tool."""
    clearance_mm: float = 1.0
    """Gap between the peg and the hole wall on each side, in millimetres."""
    hole_xy_m: tuple[float, float] = (-0.45, -0.10)
    """The hole's nominal position in the base frame; each episode draws it within +-`hole_range_m`."""
    hole_range_m: float = 0.025
    grip_offset_range_m: float = 0.003
    """The peg's hidden x and y offset in the holder is drawn from +-this range."""
    start_height_m: float = 0.05
    """The peg tip starts this high above the hole's entrance..."""
    start_range_m: float = 0.01
    """...within +-this in x and y of the nominal hole position."""
    critical_radius_m: float = 0.015
    """The critical phase holds while the peg tip is this close to the hole entrance."""
    insert_depth_m: float = 0.01
    """Success once the peg tip is this far below the hole entrance."""
    servo_kp: tuple[float, ...] = (3000.0, 3000.0, 2000.0, 500.0, 500.0, 300.0)
    """Position gains of the joints' servos, N m/rad (critically damped for the arm's inertia)."""
    mount_stiffness: float = 8.0
    """Rotational stiffness of each hinge of the peg's compliant mount, N m/rad."""
    mount_damping: float = 0.05
    friction: float = 0.6
    """Sliding friction between the peg and the block."""
    timestep_s: float = 0.002
    render: bool = True
    instruction: str = "insert the peg into the hole"

    @classmethod
    def from_profile(cls, profile: RobotProfile | str | None = None, **cell) -> ArmCellConfig:
        """The cell of `profile` (a RobotProfile, or a path or name for `RobotProfile.load`; default the arm's)."""
        if not isinstance(profile, RobotProfile):
            profile = RobotProfile.load(profile or ARM_PROFILE)
        return cls(profile=profile, **cell)

    def __post_init__(self) -> None:
        p = self.profile
        if p.action_space != "ee_delta" or p.urdf_path is None:
            raise ValueError(f"the arm cell needs an ee_delta profile with a robot description; {p.name!r} is "
                             f"{p.action_space}")
        if p.gripper:
            raise ValueError(f"the arm cell's peg is held rigidly; profile {p.name!r} has a gripper dimension")
        if not 1 <= len(p.cameras) <= len(CAMERA_MOUNTS):
            raise ValueError(f"the arm cell has {len(CAMERA_MOUNTS)} camera mounts; profile {p.name!r} has "
                             f"{len(p.cameras)} cameras")
        _square_image_size(p)
        if len(self.servo_kp) != len(p.joint_names) or not all(k > 0 for k in self.servo_kp):
            raise ValueError(f"ArmCellConfig.servo_kp needs {len(p.joint_names)} positive gains")
        for name in ("clearance_mm", "critical_radius_m", "insert_depth_m", "timestep_s",
                     "mount_stiffness", "mount_damping", "start_height_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ArmCellConfig.{name} must be a positive number, got {value!r}")
        for name in ("hole_range_m", "grip_offset_range_m", "start_range_m", "friction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"ArmCellConfig.{name} must be >= 0, got {value!r}")
        if self.clearance_mm >= PEG_HALF_WIDTH_M * 1000 or self.insert_depth_m >= HOLE_DEPTH_M:
            raise ValueError("ArmCellConfig: clearance below the peg's half width, insertion depth below the hole's")
        if abs(self.substeps * self.timestep_s - p.dt) > 0.01 * p.dt:
            raise ValueError(f"ArmCellConfig: the control period {p.dt} s must be a whole number of timesteps "
                             f"({self.timestep_s} s)")

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.profile.joint_names

    @property
    def camera_names(self) -> tuple[str, ...]:
        return self.profile.camera_names

    @property
    def control_hz(self) -> float:
        return self.profile.control_hz

    @property
    def substeps(self) -> int:
        return max(1, round(self.profile.dt / self.timestep_s))

    @property
    def image_size(self) -> int:
        return _square_image_size(self.profile)

    @property
    def hole_half_width_m(self) -> float:
        return PEG_HALF_WIDTH_M + self.clearance_mm / 1000.0


def build_arm_spec(config: ArmCellConfig) -> mujoco.MjSpec:
    """The cell's MuJoCo spec: the arm's description as MuJoCo compiles it, and the cell added around it."""
    profile = config.profile
    spec = mujoco.MjSpec.from_file(str(profile.urdf_path))
    spec.modelname = "rlt_arm_peg_in_hole"
    option = spec.option
    option.timestep, option.impratio, option.iterations, option.tolerance = config.timestep_s, 10.0, 50, 1e-10
    option.integrator, option.cone = mujoco.mjtIntegrator.mjINT_IMPLICITFAST, mujoco.mjtCone.mjCONE_ELLIPTIC
    visual = spec.visual
    visual.global_.offwidth = visual.global_.offheight = max(640, config.image_size)
    visual.quality.shadowsize, visual.quality.offsamples = 0, 0
    visual.headlight.ambient, visual.headlight.diffuse = [0.3] * 3, [0.45] * 3
    visual.headlight.specular = [0.0] * 3

    for body in spec.bodies:  # the controller compensates gravity
        if body.name != "world":
            body.gravcomp = 1.0
    for geom in spec.geoms:  # the arm's geometry is seen, not touched: only the peg meets the block
        geom.contype = geom.conaffinity = 0
    contact = {"solref": [0.004, 1.0], "solimp": [0.95, 0.99, 0.0005, 0.5, 2.0],
               "friction": [config.friction, 0.005, 0.0001]}

    world = spec.worldbody
    hx, hy = config.hole_xy_m
    world.add_light(name="top", pos=[hx, hy - 0.2, 1.0], dir=[0.0, 0.2, -1.0], castshadow=False,
                    diffuse=[0.6] * 3)
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1.0, 1.0, 0.01],
                   rgba=[0.45, 0.5, 0.55, 1.0], contype=0, conaffinity=0)
    block = world.add_body(name="block", pos=[hx, hy, 0.0])
    for name, kind, pos, size in block_boxes(config.hole_half_width_m):
        collides = kind == "block"
        block.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(pos), size=list(size),
                       rgba=[0.72, 0.7, 0.64, 1.0] if collides else [0.05, 0.05, 0.08, 1.0],
                       contype=int(collides), conaffinity=2 * int(collides), **contact)
    block.add_site(name="hole_entrance", pos=[0.0, 0.0, BLOCK_TOP_Z_M], size=[0.001, 0.0, 0.0], group=5)

    peg = spec.body(PEG_BODY)
    for geom in [g for g in peg.geoms if g.group == 0] or list(peg.geoms):  # the description's collision box
        geom.contype, geom.conaffinity = 2, 1
        for key, value in contact.items():
            setattr(geom, key, value)
    for axis, name in (((1.0, 0.0, 0.0), "peg_mount_x"), ((0.0, 1.0, 0.0), "peg_mount_y")):
        peg.add_joint(name=name, type=mujoco.mjtJoint.mjJNT_HINGE, axis=list(axis),
                      stiffness=[config.mount_stiffness, 0.0, 0.0], damping=[config.mount_damping, 0.0, 0.0],
                      armature=0.0005)

    # The peg's last 3 mm are painted, as the gantry's are, so that the cameras see where its tip is.
    tip_z = spec.body(TIP_BODY).pos[2]
    peg.add_geom(name="peg_tip_band", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0.0, 0.0, tip_z - 0.0015],
                 size=[PEG_HALF_WIDTH_M + 0.0001, PEG_HALF_WIDTH_M + 0.0001, 0.0015],
                 rgba=[0.15, 0.35, 0.9, 1.0], contype=0, conaffinity=0, group=1)

    # The scene camera looks at the block from the front left. Two wrist cameras 90 degrees apart about the
    # tool axis, on brackets from the peg holder, look past the peg at its tip from where the gantry's hand
    # cameras do (the holder's z points down the peg).
    names = (*profile.camera_names, *(f"unused_{m}" for m in CAMERA_MOUNTS[len(profile.cameras):]))
    scene_pos = (hx - 0.22, hy - 0.26, 0.30)
    holder = spec.body(HOLDER_BODY)
    look_z = peg.pos[2] + tip_z + WRIST_CAMERA_LOOK_BELOW_TIP_M
    r, camera_z = WRIST_CAMERA_SIDE_M / math.sqrt(2), look_z - WRIST_CAMERA_ABOVE_M
    mounts = ((world, names[0], scene_pos, (hx, hy, BLOCK_TOP_Z_M), (0.0, 0.0, 1.0), 45.0),
              (holder, names[1], (-r, -r, camera_z), (0.0, 0.0, look_z), (0.0, 0.0, -1.0), WRIST_CAMERA_FOVY_DEG),
              (holder, names[2], (r, -r, camera_z), (0.0, 0.0, look_z), (0.0, 0.0, -1.0), WRIST_CAMERA_FOVY_DEG))
    for body, name, position, target, up, fovy in mounts:
        camera = body.add_camera(name=name, pos=list(position), fovy=fovy)
        camera.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
        camera.alt.xyaxes = [float(v) for v in _camera_axes(position, target, up=up).split()]

    for name, kp in zip(profile.joint_names, config.servo_kp, strict=True):
        joint = spec.joint(name)
        joint.armature = 0.1
        actuator = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_position(kp=kp, dampratio=1.0)
        actuator.ctrlrange = list(joint.range)
    return spec


def build_arm_model(config: ArmCellConfig) -> mujoco.MjModel:
    return build_arm_spec(config).compile()
