"""Benchmark the arm's kinematics: agreement with MuJoCo, differential IK accuracy and refusals, time per step.

  ./rlt exec python -m rlt_bringup.benchmark_kinematics [--robot-profile ur5e_cell] [--samples 1000]

Forward kinematics (Pinocchio, `rlt_core.control.kinematics`) is compared with MuJoCo's compile of the same URDF
at random configurations within the profile's joint limits. Differential IK (without the cell's workspace
box) is asked for random per-step end-effector deltas within the profile's per-step limits, from random
configurations and from well-conditioned ones (the Jacobian's smallest singular value above 0.05): how many
are reached, the pose error of those, why the others are refused, and the median time of one step and of
one C-step chunk. Prints one JSON.
"""

import argparse
import json
import time

import numpy as np

from rlt_core.control.kinematics import REASONS
from rlt_core.control.profile import RobotProfile
from rlt_core.runtime import machine


def fk_agreement(arm, profile: RobotProfile, configurations) -> dict:
    import mujoco
    model = mujoco.MjModel.from_xml_string(profile.urdf_path.read_text())
    data = mujoco.MjData(model)
    tool, base = model.body(profile.tool_frame).id, model.body(profile.base_frame).id
    qpos = [model.jnt_qposadr[model.joint(name).id] for name in profile.joint_names]
    position, rotation = [], []
    for q in configurations:
        data.qpos[qpos] = q
        mujoco.mj_kinematics(model, data)
        base_rotation = data.xmat[base].reshape(3, 3)
        p = base_rotation.T @ (data.xpos[tool] - data.xpos[base])
        r = base_rotation.T @ data.xmat[tool].reshape(3, 3)
        pose = arm.fk(q)
        position.append(np.linalg.norm(pose[:3, 3] - p))
        rotation.append(np.abs(pose[:3, :3] - r).max())
    return {'configurations': len(configurations), 'max_position_error_m': float(max(position)),
            'max_rotation_matrix_error': float(max(rotation))}


def ik_steps(arm, profile: RobotProfile, configurations, rng) -> dict:
    limit = np.asarray(profile.max_delta[:6])
    reasons = dict.fromkeys(REASONS, 0)
    position, rotation, seconds = [], [], []
    for q in configurations:
        delta = rng.uniform(-limit, limit)
        began = time.perf_counter()
        result = arm.step(q, delta, profile.dt)
        seconds.append(time.perf_counter() - began)
        if result.ok:
            position.append(result.position_error)
            rotation.append(result.rotation_error)
        else:
            reasons[result.reason] += 1
    return {'steps': len(configurations), 'reached': len(position), 'refused': reasons,
            'max_position_error_m': float(max(position, default=0.0)),
            'median_position_error_m': float(np.median(position)) if position else None,
            'max_rotation_error_rad': float(max(rotation, default=0.0)),
            'median_step_ms': 1e3 * float(np.median(seconds))}


def chunk_time_ms(arm, profile: RobotProfile, configurations, rng) -> float:
    limit = np.asarray(profile.max_delta[:6])
    seconds = []
    for q in configurations:
        chunk = rng.uniform(-limit, limit, size=(profile.actor_chunk_len, 6))
        began = time.perf_counter()
        arm.solve_chunk(q, chunk, profile.dt)
        seconds.append(time.perf_counter() - began)
    return 1e3 * float(np.median(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--robot-profile', default='ur5e_cell', help='an ee_delta robot profile (path or name)')
    parser.add_argument('--samples', type=int, default=1000, help='configurations per figure')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    profile = RobotProfile.load(args.robot_profile)
    if profile.action_space != 'ee_delta':
        raise SystemExit(f'robot profile {profile.name!r} acts in {profile.action_space}; an ee_delta one is needed')
    # The arm over the profile's joint range, without the cell's workspace box: what the IK itself can do.
    arm = profile.kinematics(with_workspace=False)
    rng = np.random.default_rng(args.seed)
    uniform = rng.uniform(arm.lower, arm.upper, size=(args.samples, len(arm.joint_names)))
    candidates = rng.uniform(arm.lower, arm.upper, size=(20 * args.samples, len(arm.joint_names)))
    conditioned = np.array([q for q in candidates
                            if np.linalg.svd(arm.jacobian(q), compute_uv=False)[-1] > 0.05][:args.samples])
    print(json.dumps({
        'machine': machine(),
        'robot_profile': {'name': profile.name, 'hash': profile.hash},
        'fk_vs_mujoco': fk_agreement(arm, profile, uniform),
        'ik_random_configurations': ik_steps(arm, profile, uniform, rng),
        'ik_well_conditioned': ik_steps(arm, profile, conditioned, rng),
        'median_chunk_ms': chunk_time_ms(arm, profile, conditioned, rng),
    }, indent=1))


if __name__ == '__main__':
    main()
