"""One episode of the simulated cell driven through the episode engine, as the arbiter drives a robot.

What runs sim episodes outside the node graph and does not learn — the scripted expert's benchmark and
demonstrations, the VLA's closed-loop evaluation — steps them here, so that every action is chosen, limited
and counted by `rlt_core.control.engine.EpisodeEngine` as on the robot: an operator (the scripted expert)
gives a per-step action as a human at the joystick does, the VLA its chunks. `train_rlt` drives the engine in
its own loop, because it also learns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlt_core.control.engine import KEEP, EpisodeEngine
from rlt_core.control.profile import RobotProfile
from rlt_sim.arm_cell import ArmCellConfig
from rlt_sim.arm_env import ArmPegInsertionEnv
from rlt_sim.cell import SimConfig
from rlt_sim.env import PegInsertionEnv

NO_STATE = np.zeros(1, np.float32)
"""The RL state the engine is given with the VLA's chunk: nothing here records transitions."""


def make_env(profile: RobotProfile | str | None = None, **cell) -> PegInsertionEnv | ArmPegInsertionEnv:
    """The simulated cell of a robot profile (a RobotProfile, or a path or name for `RobotProfile.load`): the
    gantry's for a joint_delta profile, the arm's for an ee_delta one; `cell` sets its SimConfig or ArmCellConfig
    fields (clearance_mm, render, ...)."""
    if not isinstance(profile, RobotProfile):
        profile = RobotProfile.load(profile)
    if profile.action_space == 'ee_delta':
        return ArmPegInsertionEnv(ArmCellConfig.from_profile(profile, **cell))
    return PegInsertionEnv(SimConfig.from_profile(profile, **cell))


def check_profile(env, profile: RobotProfile) -> None:
    """ValueError unless the engine's limits and rate under `profile` are the simulated cell's."""
    cell = env.config
    if isinstance(env, ArmPegInsertionEnv):
        robot = ('joint_names', 'joint_lower', 'joint_upper', 'max_delta', 'critical_max_delta', 'control_hz', 'urdf',
                 'base_frame', 'tool_frame', 'workspace_lower', 'workspace_upper')
        ours, arm = ({f: getattr(p, f) for f in robot} for p in (profile, cell.profile))
        if ours != arm:
            raise ValueError(f'robot profile {profile.name!r} is not the simulated arm: '
                             f'{ {f: (ours[f], arm[f]) for f in robot if ours[f] != arm[f]} }')
        return
    ours = (tuple(zip(profile.joint_lower, profile.joint_upper, strict=True)), tuple(profile.max_delta),
            float(profile.control_hz))
    if ours != (tuple(cell.joint_ranges_m), tuple(cell.max_delta_m), float(cell.control_hz)):
        raise ValueError(f'robot profile {profile.name!r} (joint ranges, per-step limit, rate {ours}) is not the '
                         f'simulated cell ({cell.joint_ranges_m}, {cell.max_delta_m}, {cell.control_hz})')


def step_robot(env, engine: EpisodeEngine):
    """One control step of the simulated robot under the engine's command: the gantry takes the action (a joint
    move), the arm the joint positions the engine sent it to, as its trajectory controller does."""
    if isinstance(env, ArmPegInsertionEnv):
        return env.step_to(engine.pending_point())
    return env.step(engine.pending_action())


def run_engine_episode(env: PegInsertionEnv | ArmPegInsertionEnv, profile: RobotProfile, obs: dict, info: dict,
                       operator: Callable[[dict, dict], np.ndarray] | None = None,
                       reference: Callable[[dict], np.ndarray] | None = None,
                       on_step: Callable[..., None] | None = None) -> dict:
    """The episode that `env.reset` began with (obs, info), to its end.

    `operator(obs, info)` is the per-step action of an operator holding the dead-man button throughout;
    `reference(obs)` the VLA's (H, A) chunk for an observation, asked for when the engine decides a chunk (the
    first `profile.actor_chunk_len` actions execute). `on_step(obs, info, action, reward, done, next_info)` sees
    each step with the action the engine executed. Returns success, steps, critical_steps (steps decided in the
    critical phase) and reached_critical, the engine's counts.
    """
    check_profile(env, profile)
    engine = EpisodeEngine(profile, record=False)
    engine.start_episode(0, warmup=True)  # the VLA's chunk, whatever the phase, unless the operator drives
    reached = bool(info['critical_phase'])
    n, done = 0, False
    while True:
        n += 1
        now = n * profile.dt
        if done:  # the final observation closes the episode's counts
            engine.end_episode(bool(info['success']), final_step=n, now=now)
        human = KEEP if operator is None else None if done else operator(obs, info)
        engine.observe(n, obs['proprio'][:len(profile.joint_names)], now, critical=info['critical_phase'], human=human)
        if done:
            break
        if reference is not None and engine.wants_inputs(now):
            engine.add_inputs(n, NO_STATE, reference(obs), now)
        action = engine.pending_action()
        next_obs, reward, terminated, truncated, next_info = step_robot(env, engine)
        done = terminated or truncated
        if on_step is not None:
            on_step(obs, info, action, reward, done, next_info)
        obs, info = next_obs, next_info
        reached |= bool(info['critical_phase'])
    stats = engine.episode.stats
    return {'success': bool(info['success']), 'steps': stats.steps, 'critical_steps': stats.critical_steps,
            'reached_critical': reached}
