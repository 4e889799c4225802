"""The episode engine driving an arm in end-effector space (the ur5e_cell profile): tool moves in, joint points out."""

from dataclasses import replace

import numpy as np

from rlt_core.control.engine import EpisodeEngine, command_violation, joint_step_limits
from rlt_core.control.profile import RobotProfile
from rlt_core.control.teleop import JoyMapping, joy_action
from rlt_core.rl.replay import SOURCE_HUMAN, SOURCE_VLA

PROFILE = RobotProfile.load('ur5e_cell')
C, DT = PROFILE.actor_chunk_len, PROFILE.dt
HOME = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0])
"""Tool pointing down inside the workspace box, away from singularities."""
KIN = PROFILE.kinematics()
STEP = np.asarray(joint_step_limits(PROFILE).high)


class Arm:
    """A robot that reaches each commanded joint point within one control step (the newest command replaces the one
    it follows) and reports its joints; the VLA answers every observation with the same reference chunk."""

    def __init__(self, engine: EpisodeEngine, q=HOME):
        self.engine, self.q, self.t = engine, np.array(q, float), 0
        self.command, self.k = None, 0
        self.sent, self.transitions, self.finished = [], [], []
        self.moves = []
        """The action of each point reached."""

    @property
    def now(self) -> float:
        return self.t * DT

    def step(self, delta, critical=None):
        self.collect()  # commands published since the last step reach the controller before it moves
        if self.command is not None and self.k < C:
            self.q = self.command.points[self.k]
            self.moves.append(self.command.executed[self.k])
            self.k += 1
        self.t += 1
        self.engine.observe(self.t * 1000, self.q, self.now, critical=critical)
        reference = np.tile(np.asarray(delta, np.float32), (PROFILE.vla_chunk_len, 1))
        self.engine.add_inputs(self.t * 1000, np.zeros(4, np.float32), reference, self.now)
        self.collect()

    def collect(self):
        commands, transitions, finished = self.engine.take()
        for command in commands:
            self.command, self.k = command, 0
        self.sent += commands
        self.transitions += transitions
        self.finished += finished

    def tool(self) -> np.ndarray:
        return KIN.fk(self.q)


def rotation_angle(rot) -> float:
    return float(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))


def assert_points_follow_the_chunk(command, atol=1e-6):
    """The tool at each point is where the chunk's EE deltas, chained from the tool at the start, put it; every
    point within the joint limits and one velocity-limited step of the one before."""
    target = KIN.fk(command.start)
    for point, delta in zip(command.points, command.executed, strict=True):
        target = KIN.apply_delta(target, delta)
        pose = KIN.fk(point)
        assert np.linalg.norm(pose[:3, 3] - target[:3, 3]) < atol
        assert rotation_angle(pose[:3, :3] @ target[:3, :3].T) < atol
    assert np.all(command.points >= np.array(PROFILE.joint_lower)) and np.all(command.points <= PROFILE.joint_upper)
    assert np.all(np.abs(np.diff(np.vstack([command.start, command.points]), axis=0)) <= STEP + 1e-12)


def test_the_joint_step_limit_is_one_control_step_at_the_urdf_velocity_limits():
    np.testing.assert_allclose(STEP, np.asarray(PROFILE.joint_velocity_limits) * DT)
    assert STEP.shape == (len(PROFILE.joint_names),) and PROFILE.action_dim == 6


def test_vla_tool_moves_become_joint_points_whose_tool_follows_them_and_are_recorded():
    engine = EpisodeEngine(PROFILE)
    arm = Arm(engine)
    engine.start_episode(0)
    delta = np.array([0.002, -0.001, 0.0015, 0.004, -0.002, 0.003])
    for _ in range(6):
        arm.step(delta)
    engine.set_phase_signal(True, now=arm.now)
    for _ in range(10):
        arm.step(delta)
    engine.end_episode(success=True, now=arm.now)
    arm.step(delta)
    assert len(arm.sent) >= 3 and all(c.source == SOURCE_VLA for c in arm.sent)
    assert engine.episode.stats.refused_commands == 0
    for command in arm.sent:
        assert command.points.shape == (C, 6) and command.executed.shape == (C, 6)
        assert_points_follow_the_chunk(command)
        limits = PROFILE.critical_limits if command.critical else PROFILE.limits
        np.testing.assert_allclose(command.executed, np.tile(np.clip(delta, limits.low, limits.high), (C, 1)),
                                   atol=1e-7)
    assert any(c.critical for c in arm.sent) and any(not c.critical for c in arm.sent)
    # The tool went where the executed moves say: chained from home, to the IK's accuracy.
    start = KIN.fk(HOME)
    moved = np.sum(arm.moves, axis=0, dtype=np.float64)
    np.testing.assert_allclose(arm.tool()[:3, 3] - start[:3, 3], moved[:3], atol=1e-5)
    # The transitions record the executed tool moves (critical limits; zero while the robot held).
    assert arm.transitions and arm.finished[0].success
    critical_move = np.clip(delta, *map(np.asarray, (PROFILE.critical_limits.low, PROFILE.critical_limits.high)))
    for transition in arm.transitions:
        assert transition.executed_chunk.shape == (C, 6)
        for row in transition.executed_chunk:
            assert np.allclose(row, critical_move, atol=1e-7) or not np.any(row)


def test_a_chunk_that_would_leave_the_workspace_is_refused_and_the_robot_holds():
    engine = EpisodeEngine(PROFILE)
    arm = Arm(engine)
    engine.start_episode(0)
    up = [0.0, 0.0, 0.005, 0.0, 0.0, 0.0]  # tool0 rises 5 mm per step towards the box's top (z 0.65 m)
    for _ in range(60):
        arm.step(up)
    stats = engine.episode.stats
    assert stats.refused_commands > 0
    refusals = [w for w in engine.warnings if 'refused' in w]
    assert refusals and all('workspace' in w for w in refusals), refusals
    assert all(KIN.fk(p)[2, 3] <= PROFILE.workspace_upper[2] + 1e-9 for c in arm.sent for p in c.points)
    assert PROFILE.workspace_upper[2] - arm.tool()[2, 3] < 4 * 0.005  # it got as far as the box allows
    held = arm.q.copy()
    for _ in range(5):
        arm.step(up)
    np.testing.assert_array_equal(arm.q, held)  # refused again: it holds where it is
    down = [0.0, 0.0, -0.005, 0.0, 0.0, 0.0]
    arm.step(down)
    arm.step(down)
    assert arm.sent[-1].executed[0, 2] < 0 and arm.tool()[2, 3] < held_z(held)


def held_z(q) -> float:
    return float(KIN.fk(q)[2, 3])


def test_critical_phase_tool_limits_bind_the_vla_and_the_human():
    engine = EpisodeEngine(PROFILE)
    arm = Arm(engine)
    engine.start_episode(0)
    engine.set_phase_signal(True, now=0.0)
    big = np.asarray(PROFILE.max_delta)
    arm.step(big)
    arm.step(big)
    critical = np.asarray(PROFILE.critical_limits.high)
    vla = arm.sent[-1]
    assert vla.source == SOURCE_VLA and vla.critical
    np.testing.assert_allclose(vla.executed, np.tile(critical, (C, 1)), atol=1e-7)
    assert_points_follow_the_chunk(vla)
    engine.set_human([0.005, -0.005, 0.0], now=arm.now)  # a full joystick deflection in x and y
    arm.collect()
    human = arm.sent[-1]
    assert human.source == SOURCE_HUMAN and human.critical
    np.testing.assert_allclose(human.executed, np.tile([critical[0], -critical[1], 0, 0, 0, 0], (C, 1)), atol=1e-7)
    assert_points_follow_the_chunk(human)


def test_the_joystick_moves_the_tool_along_the_base_frame_x_only():
    engine = EpisodeEngine(PROFILE)
    arm = Arm(engine)
    engine.start_episode(0)
    arm.step(np.zeros(6))
    mapping = JoyMapping()
    buttons = [0] * 8
    buttons[mapping.deadman_button] = 1
    axes = [0.0] * 8
    axes[mapping.axes[0]] = 1.0  # the x stick fully deflected
    move = joy_action(buttons, axes, mapping)
    assert move.shape == (3,)
    before = arm.tool()
    for _ in range(12):
        engine.set_human(move, now=arm.now)
        arm.step(np.zeros(6))
    human = [c for c in arm.sent if c.source == SOURCE_HUMAN]
    assert human and engine.episode.stats.refused_commands == 0
    for command in human:
        np.testing.assert_allclose(command.executed, np.tile([0.005, 0, 0, 0, 0, 0], (C, 1)), atol=1e-7)
        assert_points_follow_the_chunk(command)
    after = arm.tool()
    moved = after[:3, 3] - before[:3, 3]
    assert moved[0] > 0.04  # about 0.005 m a step
    np.testing.assert_allclose(moved[1:], 0.0, atol=1e-5)
    assert rotation_angle(after[:3, :3] @ before[:3, :3].T) < 1e-5


def test_near_a_singularity_the_chunk_is_refused_not_jumped():
    q = HOME.copy()
    q[4] = 1e-4  # wrist_2 almost 0: wrist_1 and wrist_3 nearly aligned
    u, sigma, _ = np.linalg.svd(KIN.jacobian(q))
    assert sigma[-1] < 1e-3
    engine = EpisodeEngine(PROFILE)
    arm = Arm(engine, q)
    engine.start_episode(0)
    stuck = 0.002 * u[:, -1]  # a move the arm can only make by spinning its wrist
    for _ in range(6):
        arm.step(stuck)
    assert not arm.sent and engine.episode.stats.refused_commands >= 5
    assert engine.episode.stats.steps_by_source['hold'] == engine.episode.stats.steps
    assert all('singular' in w for w in engine.warnings if 'refused' in w)
    np.testing.assert_array_equal(arm.q, q)
    arm.step(0.002 * u[:, 0])  # a direction it can move in
    assert arm.sent and np.all(np.abs(arm.sent[-1].points - q) <= C * STEP)


def test_a_robot_outside_its_joint_limits_holds_in_joint_space():
    engine = EpisodeEngine(PROFILE)
    q = HOME.copy()
    q[1] = PROFILE.joint_upper[1] + 1.5 * engine.max_target_lead[1]  # shoulder_lift past its limit, beyond the lead
    arm = Arm(engine, q)
    engine.start_episode(0)
    arm.step([0.001, 0, 0, 0, 0, 0])
    assert not arm.sent and 'outside its joint limits' in engine.warnings[-1]
    np.testing.assert_array_equal(engine.emergency_stop('test', now=arm.now), q)  # held where measured


def test_a_gripper_dimension_is_executed_and_recorded_but_moves_no_joint():
    profile = replace(PROFILE, gripper=True, max_delta=(*PROFILE.max_delta, 0.1),
                      critical_max_delta=(*PROFILE.critical_max_delta, 0.1))
    engine = EpisodeEngine(profile)
    arm = Arm(engine)
    engine.start_episode(0)
    for _ in range(3):
        arm.step([0.001, 0, 0, 0, 0, 0, 0.05])
    command = arm.sent[-1]
    assert command.points.shape == (C, 6) and command.executed.shape == (C, 7)
    np.testing.assert_allclose(command.executed[:, 6], 0.05, atol=1e-7)
    assert_points_follow_the_chunk(replace(command, executed=command.executed[:, :6]))
    engine.set_human([0.0, 0.002, 0.0], now=arm.now)  # the joystick: x, y, z of the tool; the gripper still
    arm.collect()
    np.testing.assert_allclose(arm.sent[-1].executed, np.tile([0, 0.002, 0, 0, 0, 0, 0], (C, 1)), atol=1e-7)


def test_the_last_check_bounds_each_joint_step_of_an_arm_command():
    low, high, limits = np.array(PROFILE.joint_lower), np.array(PROFILE.joint_upper), joint_step_limits(PROFILE)
    within = HOME + np.outer(np.arange(1, C + 1), 0.9 * STEP)
    assert command_violation(HOME, within, HOME, low, high, limits, 0.01) is None
    jump = within.copy()
    jump[2:, 5] += 0.2  # wrist_3 turning 0.2 rad in one control step
    assert command_violation(HOME, jump, HOME, low, high, limits, 0.01) == 'a step beyond the per-step limit'
    ahead = HOME + 0.011  # the first point's start beyond the target lead of the measured position
    assert 'from the measured position' in command_violation(ahead, within + 0.011, HOME, low, high, limits, 0.01)
    past = within.copy()
    past[:, 1] = PROFILE.joint_upper[1] + 0.001  # shoulder_lift above its limit
    assert command_violation(HOME, past, HOME, low, high, limits, 0.01) == 'a point outside the joint limits'


def test_a_lagging_arm_is_sent_on_from_a_start_pulled_back_along_its_way():
    """A command target further than one step at the velocity limits ahead of the measured joints is pulled back
    towards them along the way between the two configurations, not joint by joint (the tool's own lead set wide
    enough not to bind)."""
    engine = EpisodeEngine(replace(PROFILE, max_delta=(1.0, 1.0, 1.0, *PROFILE.max_delta[3:])))
    lead = engine.max_target_lead
    np.testing.assert_allclose(lead, np.array(PROFILE.joint_velocity_limits) * PROFILE.dt)
    measured, ahead = HOME.copy(), HOME + np.array([3.0, 1.0, 0.5, 0.0, 0.0, 0.0]) * lead
    start = engine._within_lead(ahead, measured, critical=False)
    scale = (start - measured)[0] / (ahead - measured)[0]
    assert 0 < scale <= 1 / 3
    np.testing.assert_allclose(start - measured, scale * (ahead - measured))  # scaled, its direction kept
    near = measured + 0.01 * lead
    np.testing.assert_array_equal(engine._within_lead(near, measured, critical=False), near)


def test_a_blocked_tool_does_not_wind_its_target_up_into_the_part():
    """The VLA pushes the tool down and sideways against something that stops it (the arm reports the same joints
    at every step): every chunk starts with the tool within two steps of the limits in force (general, then
    critical) of the measured tool, however long it pushes, not a joint step at the velocity limits ahead
    (centimetres)."""
    engine = EpisodeEngine(PROFILE)
    engine.start_episode(0)
    here = KIN.fk(HOME)[:3, 3]
    push = [PROFILE.max_delta[0], 0.0, -PROFILE.max_delta[2], 0, 0, 0]
    down = np.tile(np.array(push, np.float32), (PROFILE.vla_chunk_len, 1))
    for t in range(1, 41):
        critical = t > 20
        engine.observe(t * 1000, HOME, t * DT, critical=critical)
        engine.add_inputs(t * 1000, np.zeros(4, np.float32), down, t * DT)
        lead = engine.tool_lead(critical)[:3]
        for command in engine.take()[0]:  # starts within the lead; its C points go on, a step each
            assert command.critical == critical
            assert np.all(np.abs(KIN.fk(command.start)[:3, 3] - here) <= lead + 1e-5)
            offset = KIN.fk(command.points[-1])[:3, 3] - here
            assert np.all(np.abs(offset) <= lead + C * np.asarray(PROFILE.max_delta[:3]) + 1e-5)
    assert engine.tool_lead(True)[0] < engine.tool_lead(False)[0]  # 2 mm sideways in the critical phase, not 10
    assert engine.episode.stats.refused_commands == 0 and engine.episode.stats.steps_by_source['vla'] == 39


def test_a_tool_turned_by_a_contact_does_not_turn_its_target():
    """A peg pressed on a rim: the tool stays where it is, turned 40 mrad by the contact (the arm reports the same
    joints at every step), while the VLA pushes down and holds the tool's orientation. Every chunk starts at the
    commanded orientation, its position within the lead: pulled back with the measured configuration, the target
    would turn with the deflected tool a little more at every chunk."""
    engine = EpisodeEngine(PROFILE)
    engine.start_episode(0)
    commanded = KIN.fk(HOME)
    deflected = KIN.step(HOME, [0, 0, 0, 0, 0.04, 0], DT)
    assert deflected.ok
    here = KIN.fk(deflected.q)
    down = np.tile(np.array([0, 0, -PROFILE.critical_max_delta[2], 0, 0, 0], np.float32), (PROFILE.vla_chunk_len, 1))
    starts = []
    for t in range(1, 41):
        measured = HOME if t == 1 else deflected.q  # the first chunk from HOME, then the contact
        engine.observe(t * 1000, measured, t * DT, critical=True)
        engine.add_inputs(t * 1000, np.zeros(4, np.float32), down, t * DT)
        starts += [command.start for command in engine.take()[0]][t == 1:]
    assert len(starts) == 9
    lead = engine.tool_lead(True)
    for start in starts:
        tool = KIN.fk(start)
        turn = KIN.pose_error(tool, commanded[:3, 3], commanded[:3, :3])[3:]
        assert np.linalg.norm(turn) < 1e-4  # the commanded orientation, not the deflected one (40 mrad away)
        assert np.all(np.abs(tool[:3, 3] - here[:3, 3]) <= lead + 1e-5)
    assert engine.episode.stats.refused_commands == 0
