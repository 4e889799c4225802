"""The arbiter driving a 6-DoF arm (`ur5e_cell`, end-effector actions) in its own process, against a driver as
ros2_control presents one: joint_states of every joint in its own order with gripper fingers among them, and a
JointTrajectoryController's topic. The VLA's chunks of tool moves come out as joint trajectories whose forward
kinematics follow the commanded tool path, within the joint and per-step limits; a chunk that would leave the
workspace makes the arm hold."""

import os
from dataclasses import replace

import numpy as np
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from rlt_bringup.tiny_models import make_tiny_models
from rlt_core.control.engine import joint_step_limits
from rlt_core.control.profile import RobotProfile
from rlt_interfaces.msg import ActionChunk, RLToken
from rlt_nodes.conversions import chunk_to_msg, token_to_msg
from rlt_nodes.qos import CHUNK_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
HOME = (0.0, -1.57, 1.57, -1.57, -1.57, 0.0)
"""Tool pointing down above the table, inside the cell's workspace."""


def test_the_arbiter_turns_tool_move_chunks_into_joint_trajectories(processes, test_node, tmp_path):
    profile = replace(RobotProfile.load('ur5e_cell'), max_steps=100_000)
    path = profile.save(tmp_path / 'arm.yaml')
    vla, _ = make_tiny_models(tmp_path / 'models', str(path))
    arbiter = processes.spawn(os.path.join(INSTALL, 'rlt_nodes', 'lib', 'rlt_nodes', 'arbiter'), '--ros-args',
                              '-p', f'robot_profile:={path}', '-p', f'vla_path:={vla}',
                              '-p', 'episode_source:=operator', '-p', 'warmup_episodes:=1000')
    node = test_node.node
    trajectories = []
    node.create_subscription(JointTrajectory, f'{profile.controller_name}/joint_trajectory', trajectories.append, 50)
    joints = node.create_publisher(JointState, 'joint_states', 10)
    tokens = node.create_publisher(RLToken, 'rlt/rl_token', CHUNK_QOS)
    references = node.create_publisher(ActionChunk, 'rlt/reference_chunk', CHUNK_QOS)
    assert test_node.spin_until(lambda: joints.get_subscription_count() and references.get_subscription_count(),
                                timeout=60), 'the arbiter did not come up'
    arm = profile.kinematics()
    # The driver's order: fingers among the arm's joints, the arm's joints reversed.
    order = ['finger_left', *reversed(profile.joint_names), 'finger_right']
    q = np.array(HOME)
    move = np.array([0.002, -0.001, 0.0, 0.0, 0.0, 0.004])  # per step: 2 mm in x, -1 mm in y, 4 mrad about z
    out_of_box = np.array([0.0, 0.0, 0.005, 0.0, 0.0, 0.0])  # up, through the box's top after a few steps

    def step(stamp_s, reference):
        """One control step: the driver's joint state, then the VLA's token and reference for it."""
        msg = JointState(name=order)
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int(round(stamp_s % 1 * 1e9))
        by_name = dict(zip(profile.joint_names, q, strict=True))
        msg.position = [0.01, *(by_name[n] for n in order[1:-1]), 0.01]
        msg.velocity = [0.0] * len(order)
        joints.publish(msg)
        tokens.publish(token_to_msg(np.zeros(16, np.float32), header=msg.header))
        references.publish(chunk_to_msg(np.tile(reference, (profile.vla_chunk_len, 1)), ActionChunk.SOURCE_VLA,
                                        header=msg.header, action_names=profile.action_names))

    def check(traj, start):
        """A trajectory of the arm's joints, one point per control step within the limits, the tool moving by
        `move` from point to point."""
        assert list(traj.joint_names) == list(profile.joint_names)
        points = np.array([p.positions for p in traj.points])
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
        np.testing.assert_allclose(times, profile.dt * np.arange(1, len(points) + 1), atol=1e-6)
        assert np.all(points >= np.array(profile.joint_lower) - 1e-9) and np.all(points <= profile.joint_upper)
        steps = np.abs(np.diff(np.vstack([start, points]), axis=0))
        assert np.all(steps <= np.asarray(joint_step_limits(profile).high) + 1e-9)
        return points

    # Chunks are decided on the observation where the previous one runs out: steps 0, C, 2C, ... The arm
    # reaches each point at the next step, as a controller tracking the trajectory does.
    C, k, points = profile.actor_chunk_len, 0, None
    for k in range(3 * C):
        step(100.0 + k * profile.dt, move)
        if k % C == 0:
            assert test_node.spin_until(lambda n=k // C: len(trajectories) > n, timeout=10), 'no command'
            points = check(trajectories[-1], q)
            for before, after in zip(np.vstack([q, points])[:-1], points, strict=True):
                np.testing.assert_allclose(arm.fk(after), arm.apply_delta(arm.fk(before), move), atol=1e-5)
        q = points[k % C]
    # Upwards through the workspace box's top: a chunk that would leave it is refused and the arm holds.
    sent, refused = len(trajectories), ''
    for k in range(3 * C, 40 * C):
        step(100.0 + k * profile.dt, out_of_box)
        if k % C == 0:
            if not test_node.spin_until(lambda n=sent: len(trajectories) > n, timeout=5):
                refused = processes.read_until(arbiter, 'kinematics refused', timeout=10)
                break
            sent = len(trajectories)
            points = check(trajectories[-1], q)
            assert all(arm.fk(p)[2, 3] <= profile.workspace_upper[2] + 1e-9 for p in points)
        q = points[k % C]
    assert 'kinematics refused it (workspace)' in refused, refused[-2000:]
    assert arm.fk(q)[2, 3] > profile.workspace_upper[2] - 6 * 0.005  # it got near the top before holding
