"""`PegInsertionEnv`: the peg-in-hole cell as a gymnasium environment."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from rlt_sim.cell import WRIST_JOINT_NAMES, SimConfig, build_mjcf  # noqa: E402

PROPRIO_MAX_SPEED_M_S = 1.0
"""Joint speeds in the observation are clipped to +-this value (the space's bound)."""


class PegTaskEnv(gym.Env):
    """What the gantry's and the arm's cells share: the peg-in-hole task's success, its privileged `info`, the
    observation (joint positions and velocities, camera images) and the rendering. A cell sets `config` (with
    `camera_names`, `image_size`, `render`, `hole_half_width_m`, `insert_depth_m`, `critical_radius_m`),
    `model`, `data`, `instruction`, `_joint_qpos`, `_joint_qvel`, `_proprio_low`, `_proprio_high`,
    `_hole_site`, `_grip_offset`, `_step`, `_renderer` and `peg_tip_pos`, and adds its own `info` entries in
    `_cell_info`."""

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._render_camera(self.config.camera_names[0])

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    @property
    def hole_pos(self) -> np.ndarray:
        """Position of the centre of the hole entrance in the base (world) frame (privileged)."""
        return self.data.site_xpos[self._hole_site].copy()

    def _is_success(self) -> bool:
        tip, hole = self.peg_tip_pos, self.hole_pos
        inside = np.all(np.abs(tip[:2] - hole[:2]) < self.config.hole_half_width_m)
        return bool(inside and tip[2] <= hole[2] - self.config.insert_depth_m)

    def _cell_info(self) -> dict:
        return {}

    def _info(self, success: bool) -> dict:
        tip, hole = self.peg_tip_pos, self.hole_pos
        critical = np.linalg.norm(tip - hole) <= self.config.critical_radius_m
        return {
            "success": bool(success),
            "critical_phase": bool(critical),
            "peg_hole_offset": tip[:2] - hole[:2],
            "hole_pos": hole,
            "peg_tip_pos": tip,
            "grip_offset": self._grip_offset.copy(),
            **self._cell_info(),
            "step": self._step,
            "instruction": self.instruction,
        }

    def _observation(self) -> dict:
        proprio = np.concatenate(
            [self.data.qpos[self._joint_qpos], self.data.qvel[self._joint_qvel]]
        )
        proprio = np.clip(proprio, self._proprio_low, self._proprio_high).astype(np.float32)
        obs = {"proprio": proprio}
        if self.config.render:
            obs["images"] = {name: self._render_camera(name) for name in self.config.camera_names}
        return obs

    def _render_camera(self, name: str) -> np.ndarray:
        if self._renderer is None:
            size = self.config.image_size
            self._renderer = mujoco.Renderer(self.model, height=size, width=size)
            flags = self._renderer.scene.flags
            for flag in (
                mujoco.mjtRndFlag.mjRND_SHADOW,
                mujoco.mjtRndFlag.mjRND_REFLECTION,
                mujoco.mjtRndFlag.mjRND_SKYBOX,
            ):
                flags[flag] = 0
        self._renderer.update_scene(self.data, camera=name)
        return self._renderer.render()


class PegInsertionEnv(PegTaskEnv):
    """Insert a peg held by a gantry robot into a hole with about 1 mm clearance.

    The robot is the one `config` describes (`SimConfig.from_profile`; by default the default robot
    profile's cell): joints `config.joint_names`, cameras `config.camera_names`.
    Action: gantry position deltas (x, y, z) in metres per control step, clipped to
    +-`max_delta_m` and the workspace. Observation: ``{"proprio": joint positions and
    velocities (6,), "images": {camera: uint8 (H, W, 3)}}`` (images only when
    `config.render`). Privileged state (hole and peg-tip positions, their offset, the
    hidden grip offset) is only in `info`. Reward is +1 on success, which ends the episode.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self, config: SimConfig | None = None, render_mode: str | None = None, **overrides
    ) -> None:
        config = dataclasses.replace(config or SimConfig(), **overrides)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self.instruction = config.instruction
        self.metadata = {**self.metadata, "render_fps": config.control_hz}

        self.model = mujoco.MjModel.from_xml_string(build_mjcf(config))
        self.data = mujoco.MjData(self.model)
        self._joint_qpos = np.array([self.model.joint(name).qposadr[0] for name in config.joint_names])
        self._joint_qvel = np.array([self.model.joint(name).dofadr[0] for name in config.joint_names])
        self._wrist_qpos = np.array([self.model.joint(n).qposadr[0] for n in WRIST_JOINT_NAMES])
        self._block_body = self.model.body("block").id
        self._peg_body = self.model.body("peg").id
        self._peg_body_home = self.model.body_pos[self._peg_body].copy()
        self._tip_site = self.model.site("peg_tip").id
        self._hole_site = self.model.site("hole_entrance").id
        self._joint_low = np.array([lo for lo, _ in config.joint_ranges_m])
        self._joint_high = np.array([hi for _, hi in config.joint_ranges_m])
        self._max_delta = np.asarray(config.max_delta_m, dtype=np.float64)

        limit = self._max_delta.astype(np.float32)
        self.action_space = gym.spaces.Box(-limit, limit, shape=(3,), dtype=np.float32)
        margin, max_speed = 0.01, PROPRIO_MAX_SPEED_M_S
        self._proprio_low = np.concatenate([self._joint_low - margin, [-max_speed] * 3])
        self._proprio_high = np.concatenate([self._joint_high + margin, [max_speed] * 3])
        proprio_space = gym.spaces.Box(
            self._proprio_low.astype(np.float32), self._proprio_high.astype(np.float32)
        )
        spaces = {"proprio": proprio_space}
        if config.render:
            size = (config.image_size, config.image_size, 3)
            spaces["images"] = gym.spaces.Dict(
                {name: gym.spaces.Box(0, 255, shape=size, dtype=np.uint8) for name in config.camera_names}
            )
        self.observation_space = gym.spaces.Dict(spaces)

        self._renderer = None
        self._target = np.zeros(3)
        self._grip_offset = np.zeros(2)
        self._step = 0

    # ----- episode -----

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. `options` may pin "hole_xy" and "grip_offset" (metres, (2,))."""
        super().reset(seed=seed)
        cfg, rng = self.config, self.np_random
        mujoco.mj_resetData(self.model, self.data)
        hole_xy = rng.uniform(-cfg.hole_range_m, cfg.hole_range_m, size=2)
        self._grip_offset = rng.uniform(-cfg.grip_offset_range_m, cfg.grip_offset_range_m, size=2)
        start = np.zeros(3)
        start[:2] = rng.uniform(-cfg.start_range_m, cfg.start_range_m, size=2)
        options = options or {}
        if "hole_xy" in options:
            hole_xy = np.asarray(options["hole_xy"], dtype=np.float64).reshape(2)
        if "grip_offset" in options:
            self._grip_offset = np.asarray(options["grip_offset"], dtype=np.float64).reshape(2)
        self.model.body_pos[self._block_body, :2] = hole_xy
        self.model.body_pos[self._peg_body] = self._peg_body_home + [*self._grip_offset, 0.0]
        self.data.qpos[self._joint_qpos] = start
        self.data.ctrl[:] = start
        self._target = start.copy()
        self._step = 0
        mujoco.mj_forward(self.model, self.data)
        info = self._info(success=False)
        return self._observation(), info

    def reset_scene(self, seed: int | None = None):
        """A new hole position and grip offset (drawn from `seed`) with the gantry left where it is: what an
        operator does to the cell between episodes on a real robot. Returns the observation and info."""
        cfg, rng = self.config, np.random.default_rng(seed)
        self._grip_offset = rng.uniform(-cfg.grip_offset_range_m, cfg.grip_offset_range_m, size=2)
        self.model.body_pos[self._block_body, :2] = rng.uniform(-cfg.hole_range_m, cfg.hole_range_m, size=2)
        self.model.body_pos[self._peg_body] = self._peg_body_home + [*self._grip_offset, 0.0]
        mujoco.mj_forward(self.model, self.data)
        self._step = 0
        return self._observation(), self._info(success=False)

    def step(self, action):
        cfg = self.config
        action = np.asarray(action, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        delta = np.clip(action, -self._max_delta, self._max_delta)
        joints = self.data.qpos[self._joint_qpos]
        target = np.clip(
            self._target + delta, joints - cfg.max_target_lead_m, joints + cfg.max_target_lead_m
        )
        self._target = np.clip(target, self._joint_low, self._joint_high)
        self.data.ctrl[:] = self._target
        mujoco.mj_step(self.model, self.data, nstep=cfg.substeps)
        self._step += 1
        success = self._is_success()
        info = self._info(success)
        terminated = success
        truncated = (not terminated) and self._step >= cfg.max_steps
        return self._observation(), float(success), terminated, truncated, info

    def step_to(self, joint_positions):
        """One control step towards the joint positions `joint_positions` (a trajectory controller's point): the
        action `joint_positions - position_target`."""
        return self.step(np.asarray(joint_positions, dtype=np.float64) - self._target)

    # ----- signals -----

    @property
    def position_target(self) -> np.ndarray:
        """The gantry's current position target (x, y, z); an action moves it by at most
        `max_delta_m` per axis."""
        return self._target.copy()

    @property
    def peg_tip_pos(self) -> np.ndarray:
        """World position of the peg tip (privileged)."""
        return self.data.site_xpos[self._tip_site].copy()

    def _cell_info(self) -> dict:
        return {"wrist_tilt": self.data.qpos[self._wrist_qpos].copy()}
