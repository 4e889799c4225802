"""Kinematics of the UR5e-like arm's description: Pinocchio's forward kinematics against MuJoCo's compile of the
same URDF, differential IK within joint position and velocity limits, and refusals with their reasons."""

import numpy as np
import pytest

from rlt_core.control.kinematics import REASONS, ArmKinematics, KinematicsError
from rlt_core.control.profile import RobotProfile

PROFILE = RobotProfile.load('ur5e_cell')
DT = PROFILE.dt
HOME = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0])
"""Tool pointing down above the table, well away from singularities."""


@pytest.fixture(scope='module')
def arm() -> ArmKinematics:
    return PROFILE.kinematics()


@pytest.fixture(scope='module')
def urdf() -> str:
    return PROFILE.urdf_path.read_text()


@pytest.fixture(scope='module')
def free() -> ArmKinematics:
    """The same arm without the cell's workspace box: anywhere it can reach within the cell's joint limits."""
    return PROFILE.kinematics(with_workspace=False)


def random_configurations(arm, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(arm.lower, arm.upper, size=(n, len(arm.joint_names)))


def well_conditioned(arm, n, seed=0, sigma=0.05):
    """n random configurations whose Jacobian's smallest singular value exceeds `sigma`."""
    out = [q for q in random_configurations(arm, 20 * n, seed)
           if np.linalg.svd(arm.jacobian(q), compute_uv=False)[-1] > sigma]
    assert len(out) >= n
    return np.array(out[:n])


def rotation_angle(a, b) -> float:
    return float(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))


def test_the_profile_names_the_description_joints_and_frames(arm):
    assert arm.joint_names == PROFILE.joint_names and (arm.base_frame, arm.tool_frame) == ('base_link', 'tool0')
    np.testing.assert_allclose(arm.velocity_limit, np.pi, atol=1e-6)  # the URDF's 180 deg/s
    assert PROFILE.joint_velocity_limits == tuple(arm.velocity_limit)
    np.testing.assert_allclose(arm.lower, PROFILE.joint_lower) and np.testing.assert_allclose(arm.upper,
                                                                                                PROFILE.joint_upper)


def test_forward_kinematics_agrees_with_mujoco_and_the_dh_parameters(arm, urdf):
    import mujoco
    model = mujoco.MjModel.from_xml_string(urdf)
    data = mujoco.MjData(model)
    tool, base = model.body('tool0').id, model.body('base_link').id
    qpos = [model.jnt_qposadr[model.joint(name).id] for name in arm.joint_names]
    # The UR5e's published DH parameters, independently of both libraries.
    d = [0.1625, 0, 0, 0.1333, 0.0997, 0.0996]
    a = [0, -0.425, -0.3922, 0, 0, 0]
    alpha = [np.pi / 2, 0, 0, np.pi / 2, -np.pi / 2, 0]

    def dh(q):
        pose = np.eye(4)
        for i in range(6):
            c, s, ca, sa = np.cos(q[i]), np.sin(q[i]), np.cos(alpha[i]), np.sin(alpha[i])
            pose = pose @ np.array([[c, -s * ca, s * sa, a[i] * c], [s, c * ca, -c * sa, a[i] * s],
                                    [0, sa, ca, d[i]], [0, 0, 0, 1]])
        return pose

    worst_mj = worst_dh = 0.0
    for q in random_configurations(arm, 200):
        pose = arm.fk(q)
        data.qpos[qpos] = q
        mujoco.mj_kinematics(model, data)
        rot_base = data.xmat[base].reshape(3, 3)
        p_mj = rot_base.T @ (data.xpos[tool] - data.xpos[base])
        r_mj = rot_base.T @ data.xmat[tool].reshape(3, 3)
        worst_mj = max(worst_mj, np.abs(pose[:3, 3] - p_mj).max(), np.abs(pose[:3, :3] - r_mj).max())
        worst_dh = max(worst_dh, np.abs(pose - dh(q)).max())
    assert worst_mj < 1e-6 and worst_dh < 1e-6, (worst_mj, worst_dh)
    # Stretched out at zero: tool0 at (a2 + a3, -(d4 + d6), d1 - d5)
    np.testing.assert_allclose(arm.fk(np.zeros(6))[:3, 3], [-0.8172, -0.2329, 0.0628], atol=1e-9)


def test_the_jacobian_is_the_derivative_of_the_pose(arm):
    q = HOME + 0.1
    jac, pose, eps = arm.jacobian(q), arm.fk(q), 1e-7
    for j in range(6):
        dq = np.zeros(6)
        dq[j] = eps
        moved = arm.fk(q + dq)
        np.testing.assert_allclose((moved[:3, 3] - pose[:3, 3]) / eps, jac[:3, j], atol=1e-5)
        skew = (moved[:3, :3] @ pose[:3, :3].T - np.eye(3)) / eps
        np.testing.assert_allclose([skew[2, 1], skew[0, 2], skew[1, 0]], jac[3:, j], atol=1e-5)


def test_small_deltas_are_reached_within_the_joint_limits_and_one_steps_speed(free):
    arm = free
    assert arm.workspace is None and PROFILE.kinematics().workspace is not None
    rng = np.random.default_rng(1)
    reach = arm.velocity_limit * DT
    errors = []
    for q in well_conditioned(arm, 200):
        delta = np.concatenate([rng.uniform(-1, 1, 3) * PROFILE.max_delta[:3], rng.uniform(-1, 1, 3) *
                                PROFILE.max_delta[3:]])
        result = arm.step(q, delta, DT)
        assert result.ok, (q, delta, result.detail)
        target = arm.apply_delta(arm.fk(q), delta)
        reached = arm.fk(result.q)
        errors.append((np.linalg.norm(reached[:3, 3] - target[:3, 3]), rotation_angle(reached[:3, :3],
                                                                                     target[:3, :3])))
        assert np.all(np.abs(result.q - q) <= reach + 1e-12)
        assert np.all(result.q >= arm.lower) and np.all(result.q <= arm.upper)
    errors = np.array(errors)
    assert errors[:, 0].max() < arm.position_tolerance and errors[:, 1].max() < arm.rotation_tolerance
    assert np.median(errors[:, 0]) < 1e-7  # converged, not merely within the tolerance


def test_the_rotation_is_about_base_axes_through_the_tool(arm):
    q = arm.step(HOME, [0, 0, 0, 0, 0, 0.01], DT).q
    before, after = arm.fk(HOME), arm.fk(q)
    np.testing.assert_allclose(after[:3, 3], before[:3, 3], atol=1e-7)
    c, s = np.cos(0.01), np.sin(0.01)
    np.testing.assert_allclose(after[:3, :3], np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ before[:3, :3],
                               atol=1e-7)


def test_a_target_outside_the_workspace_box_is_refused(arm, free, urdf):
    p = arm.fk(HOME)[:3, 3]
    assert np.all(p > PROFILE.workspace_lower) and np.all(p < PROFILE.workspace_upper)  # home is in the cell's box
    assert arm.step(HOME, [0.003, -0.003, 0.003, 0, 0, 0], DT).ok
    box = ArmKinematics(urdf, PROFILE.joint_names, 'base_link', 'tool0', workspace=(p - 0.1, p + [0.1, 0.1, 0.002]))
    result = box.step(HOME, [0, 0, 0.003, 0, 0, 0], DT)
    assert not result.ok and result.reason == 'workspace' and 'outside the workspace box' in result.detail
    np.testing.assert_array_equal(result.q, HOME)  # hold
    assert box.step(HOME, [0, 0, 0.001, 0, 0, 0], DT).ok
    assert free.step(HOME, [0, 0, 0.003, 0, 0, 0], DT).ok  # no box: the same target is fine


def test_a_target_beyond_a_joint_limit_is_refused(free):
    arm = free
    at_limit = HOME.copy()
    at_limit[1] = PROFILE.joint_upper[1] - 1e-4  # shoulder_lift at the cell's upper limit (0)
    at_limit[2] = 1.2
    jac = arm.jacobian(at_limit)
    push = jac[:3, 1] / np.linalg.norm(jac[:3, 1]) * 0.003  # where raising shoulder_lift would take the tool
    result = arm.step(at_limit, np.concatenate([push, jac[3:, 1] / np.linalg.norm(jac[:3, 1]) * 0.003]), DT)
    assert not result.ok and result.reason == 'joint_limit' and 'shoulder_lift_joint' in result.detail, result
    back = arm.step(at_limit, -np.concatenate([push, jac[3:, 1] / np.linalg.norm(jac[:3, 1]) * 0.003]), DT)
    assert back.ok


def test_a_move_faster_than_the_velocity_limit_is_refused(arm):
    result = arm.step(HOME, [0, 0, 0, 0, 0, 0.3], DT)  # 0.3 rad in 50 ms > 180 deg/s
    assert not result.ok and result.reason == 'velocity_limit' and 'wrist_3_joint' in result.detail
    assert arm.step(HOME, [0, 0, 0, 0, 0, 0.3], 0.2).ok  # the same move in 0.2 s is within the limit


@pytest.mark.parametrize('joint, value', [(4, 0.0), (2, 0.0)], ids=['wrist', 'elbow_stretched'])
def test_a_move_that_a_singular_configuration_cannot_make_is_refused(free, joint, value):
    arm = free
    q = HOME.copy()
    q[joint] = value
    u, sigma, _ = np.linalg.svd(arm.jacobian(q))
    assert sigma[-1] < 1e-9
    for sign in (1, -1):  # along the direction the arm cannot move in, either way
        result = arm.step(q, sign * 0.002 * u[:, -1], DT)
        assert not result.ok and result.reason == 'singular' and 'singular' in result.detail, result
    assert arm.step(q, 0.002 * u[:, 0], DT).ok  # along a direction it can move in


def test_a_chunk_becomes_joint_points_or_is_refused_whole(arm):
    rng = np.random.default_rng(2)
    chunk = rng.uniform(-1, 1, (PROFILE.actor_chunk_len, 6)) * PROFILE.critical_max_delta
    result = arm.solve_chunk(HOME, chunk, DT)
    assert result.ok and result.points.shape == (PROFILE.actor_chunk_len, 6) and result.gripper is None
    pose = arm.fk(HOME)
    previous = HOME
    for delta, q in zip(chunk, result.points, strict=True):
        pose = arm.apply_delta(pose, delta)
        reached = arm.fk(q)
        assert np.linalg.norm(reached[:3, 3] - pose[:3, 3]) < 1e-6 and rotation_angle(reached[:3, :3],
                                                                                       pose[:3, :3]) < 1e-6
        assert np.all(np.abs(q - previous) <= arm.velocity_limit * DT + 1e-12)
        previous = q
    with_gripper = arm.solve_chunk(HOME, np.hstack([chunk, np.full((len(chunk), 1), 0.5)]), DT)
    np.testing.assert_allclose(with_gripper.points, result.points) and np.testing.assert_allclose(
        with_gripper.gripper, 0.5)

    bad = chunk.copy()
    bad[2, 5] = 0.5  # one step turns the wrist 0.5 rad in 50 ms
    refused = arm.solve_chunk(HOME, bad, DT)
    assert not refused.ok and refused.points.shape == (0, 6) and refused.failed_step == 2
    assert refused.reason == 'velocity_limit' and refused.detail.startswith('step 2:')
    assert refused.reason in REASONS


def test_joints_are_mapped_by_name_whatever_the_descriptions_order(urdf):
    order = ('wrist_3_joint', 'shoulder_pan_joint', 'elbow_joint', 'wrist_1_joint', 'shoulder_lift_joint',
             'wrist_2_joint')
    arm = ArmKinematics(urdf, PROFILE.joint_names, 'base_link', 'tool0')
    shuffled = ArmKinematics(urdf, order, 'base_link', 'tool0')
    index = [PROFILE.joint_names.index(n) for n in order]
    q = HOME + 0.2
    np.testing.assert_allclose(shuffled.fk(q[index]), arm.fk(q), atol=1e-12)
    peg = ArmKinematics(urdf, PROFILE.joint_names, 'base_link', 'peg_tip')  # another tool frame on the flange
    np.testing.assert_allclose(peg.fk(q)[:3, 3], arm.fk(q)[:3, 3] + 0.11 * arm.fk(q)[:3, 2], atol=1e-12)


@pytest.mark.parametrize('kwargs, message', [
    (dict(tool_frame='gripper_tcp'), "frame 'gripper_tcp' is not in the robot description"),
    (dict(base_frame='tool0'), "base frame 'tool0' moves with joint 'wrist_3_joint'"),
    (dict(joint_names=('shoulder_pan_joint', 'finger_joint')), "joint 'finger_joint' is not in the robot description"),
    (dict(upper=(7.0, 0, 3.1, 6.2, 6.2, 6.2)), r"joint limits of \['shoulder_pan_joint'\] go beyond"),
    (dict(workspace=((0, 0, 0), (0.1, -0.1, 0.1))), 'workspace needs'),
])
def test_bad_descriptions_frames_and_joints_are_refused(urdf, kwargs, message):
    args = dict(joint_names=PROFILE.joint_names, base_frame='base_link', tool_frame='tool0') | kwargs
    with pytest.raises(KinematicsError, match=message):
        ArmKinematics(urdf, args.pop('joint_names'), args.pop('base_frame'), args.pop('tool_frame'), **args)
    with pytest.raises(KinematicsError, match='cannot read'):
        ArmKinematics.from_file('/no/such.urdf', PROFILE.joint_names, 'base_link', 'tool0')
    with pytest.raises(KinematicsError, match='cannot read the robot description'):
        ArmKinematics('<robot name="x"><link name="a"/>', PROFILE.joint_names, 'base_link', 'tool0')


def test_malformed_inputs_raise(arm):
    with pytest.raises(KinematicsError, match='6 finite joint positions'):
        arm.fk(np.zeros(5))
    with pytest.raises(KinematicsError, match='6 finite entries'):
        arm.step(HOME, [0, 0, np.nan, 0, 0, 0], DT)
    with pytest.raises(KinematicsError, match=r'shape \(C, 6\) or \(C, 7\)'):
        arm.solve_chunk(HOME, np.zeros((4, 3)), DT)
