"""`ArmPegInsertionEnv`: the peg-in-hole task on the simulated 6-DoF arm, as a gymnasium environment."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from rlt_core.control.engine import joint_step_limits  # noqa: E402
from rlt_core.control.kinematics import ArmKinematics  # noqa: E402
from rlt_core.control.safety import within_lead  # noqa: E402
from rlt_sim.arm_cell import PEG_BODY, TIP_BODY, TOOL_DOWN, ArmCellConfig, build_arm_model  # noqa: E402
from rlt_sim.env import PegTaskEnv  # noqa: E402

PROPRIO_MAX_SPEED_RAD_S = np.pi
"""Joint speeds in the observation are clipped to +-this value (the space's bound)."""

REFERENCE_CONFIGURATION = (0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0)
"""The elbow-up configuration (tool pointing down) from which the start pose's inverse kinematics begins: every
episode starts on the same branch."""


class ArmPegInsertionEnv(PegTaskEnv):
    """Insert a peg held by the arm into a hole with about 1 mm clearance.

    The arm is the one `config.profile` describes (`ArmCellConfig.from_profile`; by default `ur5e_cell`).
    Two ways to command it, as a real arm offers: `step(action)` moves the tool by an end-effector delta
    (the profile's action: [dx, dy, dz, rx, ry, rz] in the base frame, clipped to the profile's per-step
    limits) through the profile's kinematics, holding where the kinematics refuses it (`info["refused"]` says
    why); `step_to(joint_positions)` sends a joint position target, as a trajectory controller's point (the
    episode engine's commands). Either way the target is kept within the joint limits and within one control
    step at the velocity limits of the measured joints. Observation: ``{"proprio": joint positions and velocities
    (12,), "images": {camera: uint8 (H, W, 3)}}``. Privileged state (hole and peg-tip positions, their
    offset, the hidden grip offset) is only in `info`. Reward is +1 on success, which ends the episode.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: ArmCellConfig | None = None, render_mode: str | None = None, **overrides) -> None:
        config = dataclasses.replace(config or ArmCellConfig.from_profile(), **overrides)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.config, self.render_mode = config, render_mode
        profile = self.profile = config.profile
        self.instruction = config.instruction
        self.metadata = {**self.metadata, "render_fps": profile.control_hz}
        self.kinematics: ArmKinematics = profile.kinematics()

        self.model = build_arm_model(config)
        self.data = mujoco.MjData(self.model)
        self._joint_qpos = np.array([self.model.joint(n).qposadr[0] for n in profile.joint_names])
        self._joint_qvel = np.array([self.model.joint(n).dofadr[0] for n in profile.joint_names])
        self._mount_qpos = np.array([self.model.joint(n).qposadr[0] for n in ("peg_mount_x", "peg_mount_y")])
        self._actuators = np.array([self.model.actuator(n).id for n in profile.joint_names])
        self._peg_body = self.model.body(PEG_BODY).id
        self._peg_home = self.model.body_pos[self._peg_body].copy()
        self._tip_body = self.model.body(TIP_BODY).id
        self._tool_body = self.model.body(profile.tool_frame).id
        self._hole_site = self.model.site("hole_entrance").id
        self._low, self._high = np.array(profile.joint_lower), np.array(profile.joint_upper)
        self._max_delta = np.array(profile.max_delta)
        self._lead = np.asarray(joint_step_limits(profile).high)

        mujoco.mj_kinematics(self.model, self.data)
        tool_rot = self.data.xmat[self._tool_body].reshape(3, 3)
        self._tip_in_tool = tool_rot.T @ (self.data.xpos[self._tip_body] - self.data.xpos[self._tool_body])
        """The peg tip in the tool frame without a grip offset: where the kinematics believes it."""

        limit = self._max_delta.astype(np.float32)
        self.action_space = gym.spaces.Box(-limit, limit, dtype=np.float32)
        speed = np.full(len(self._low), PROPRIO_MAX_SPEED_RAD_S)
        self._proprio_low = np.concatenate([self._low - 0.01, -speed])
        self._proprio_high = np.concatenate([self._high + 0.01, speed])
        spaces = {"proprio": gym.spaces.Box(self._proprio_low.astype(np.float32),
                                            self._proprio_high.astype(np.float32))}
        if config.render:
            size = (config.image_size, config.image_size, 3)
            spaces["images"] = gym.spaces.Dict({name: gym.spaces.Box(0, 255, shape=size, dtype=np.uint8)
                                                for name in profile.camera_names})
        self.observation_space = gym.spaces.Dict(spaces)

        self._renderer = None
        self._target = np.zeros(len(self._low))
        self._grip_offset = np.zeros(2)
        self._step = 0
        self._refused = ""

    # ----- episode -----

    def tool_pose_for_tip(self, tip) -> np.ndarray:
        """The tool pose (4x4, base frame), pointing down, that puts the nominal peg tip at `tip`."""
        pose = np.eye(4)
        pose[:3, :3] = TOOL_DOWN
        pose[:3, 3] = np.asarray(tip, dtype=np.float64) - TOOL_DOWN @ self._tip_in_tool
        return pose

    def joints_for_tip(self, tip) -> np.ndarray:
        """Joint positions that put the nominal peg tip at `tip` with the tool pointing down (from
        REFERENCE_CONFIGURATION, on its branch); ValueError if the arm cannot reach it."""
        target, q = self.tool_pose_for_tip(tip), np.array(REFERENCE_CONFIGURATION)
        for _ in range(100):
            result = self.kinematics.solve(q, target, dt=1.0)
            q = result.q
            if result.ok:
                return q
            if result.reason != "velocity_limit":
                break
        raise ValueError(f"the arm cannot put the peg tip at {np.round(tip, 4).tolist()}: {result.detail}")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. `options` may pin "hole_xy" (m, base frame) and "grip_offset" (m, (2,))."""
        super().reset(seed=seed)
        cfg, rng = self.config, self.np_random
        mujoco.mj_resetData(self.model, self.data)
        nominal = np.asarray(cfg.hole_xy_m, dtype=np.float64)
        hole_xy = nominal + rng.uniform(-cfg.hole_range_m, cfg.hole_range_m, size=2)
        self._grip_offset = rng.uniform(-cfg.grip_offset_range_m, cfg.grip_offset_range_m, size=2)
        start_xy = nominal + rng.uniform(-cfg.start_range_m, cfg.start_range_m, size=2)
        options = options or {}
        if "hole_xy" in options:
            hole_xy = np.asarray(options["hole_xy"], dtype=np.float64).reshape(2)
        if "grip_offset" in options:
            self._grip_offset = np.asarray(options["grip_offset"], dtype=np.float64).reshape(2)
        self._place(hole_xy, self._grip_offset)
        entrance_z = self.model.site_pos[self._hole_site][2]
        q = self.joints_for_tip([*start_xy, entrance_z + cfg.start_height_m])
        self.data.qpos[self._joint_qpos] = q
        self.data.ctrl[self._actuators] = q
        self._target = q.copy()
        self._step, self._refused = 0, ""
        mujoco.mj_forward(self.model, self.data)
        return self._observation(), self._info(success=False)

    def reset_scene(self, seed: int | None = None):
        """A new hole position and grip offset (drawn from `seed`) with the arm left where it is: what an operator
        does to the cell between episodes on a real robot. Returns the observation and info."""
        cfg, rng = self.config, np.random.default_rng(seed)
        hole_xy = np.asarray(cfg.hole_xy_m) + rng.uniform(-cfg.hole_range_m, cfg.hole_range_m, size=2)
        self._grip_offset = rng.uniform(-cfg.grip_offset_range_m, cfg.grip_offset_range_m, size=2)
        self._place(hole_xy, self._grip_offset)
        mujoco.mj_forward(self.model, self.data)
        self._step = 0
        return self._observation(), self._info(success=False)

    def _place(self, hole_xy, grip_offset):
        self.model.body_pos[self.model.body("block").id, :2] = hole_xy
        self.model.body_pos[self._peg_body] = self._peg_home + [*grip_offset, 0.0]

    def step(self, action):
        """Move the tool by the end-effector delta `action` (clipped to the profile's per-step limits)."""
        action = np.asarray(action, dtype=np.float64).reshape(len(self._max_delta))
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        delta = np.clip(action, -self._max_delta, self._max_delta)
        start = self._lead_limited(self._target)
        result = self.kinematics.step(start, delta, self.profile.dt)
        self._refused = "" if result.ok else f"{result.reason}: {result.detail}"
        return self._advance(result.q if result.ok else start)

    def step_to(self, joint_positions):
        """Send the arm to `joint_positions` (the profile's joints, in its order) over one control step."""
        q = np.asarray(joint_positions, dtype=np.float64).reshape(len(self._low))
        if not np.all(np.isfinite(q)):
            raise ValueError(f"joint positions must be finite, got {q}")
        self._refused = ""
        return self._advance(q)

    def _lead_limited(self, q) -> np.ndarray:
        """`q` within the joint limits and within one step at the velocity limits of the measured joints, pulled
        back along its way (the episode engine's rule for an arm)."""
        q = within_lead(q, self.data.qpos[self._joint_qpos], self._lead, keep_direction=True)
        return np.clip(q, self._low, self._high)

    def _advance(self, q):
        self._target = self._lead_limited(q)
        self.data.ctrl[self._actuators] = self._target
        mujoco.mj_step(self.model, self.data, nstep=self.config.substeps)
        self._step += 1
        success = self._is_success()
        terminated = success
        truncated = (not terminated) and self._step >= self.profile.max_steps
        return self._observation(), float(success), terminated, truncated, self._info(success)

    # ----- signals -----

    @property
    def position_target(self) -> np.ndarray:
        """The joints' current position targets."""
        return self._target.copy()

    @property
    def peg_tip_pos(self) -> np.ndarray:
        """Position of the peg tip in the base frame (privileged)."""
        return self.data.xpos[self._tip_body].copy()

    def _cell_info(self) -> dict:
        return {"mount_tilt": self.data.qpos[self._mount_qpos].copy(), "refused": self._refused}
