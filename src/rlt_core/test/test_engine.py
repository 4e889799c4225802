from dataclasses import replace

import numpy as np
import pytest

from rlt_core.control.engine import EpisodeEngine
from rlt_core.control.profile import RobotProfile
from rlt_core.control.safety import ActionLimits
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA

C, A, D = 4, 3, 0.005
LOW, HIGH = np.array([-0.06, -0.06, -0.07]), np.array([0.06, 0.06, 0.04])


class FakeRobot:
    """Follows the newest command one point per tick, like the simulator's trajectory follower."""

    def __init__(self, arb, start=(0.0, 0.0, 0.0), tracking=1.0):
        self.arb, self.pos, self.cmd, self.k, self.t = arb, np.array(start, float), None, 0, 0
        self.tracking = tracking  # the fraction of the way to its commanded point a step covers (a real arm lags)
        self.sent = []

    def tick(self, ref=None, actor=None, inputs=True):
        if self.cmd is not None and self.k < len(self.cmd.points):
            self.pos = self.pos + self.tracking * (self.cmd.points[self.k] - self.pos)
            self.k += 1
        self.t += 1
        stamp = self.t * 1000
        self.arb.observe(stamp, self.pos, now=self.t * 0.05)
        if inputs:
            r = np.full((C + 2, A), 0.001) if ref is None else ref
            self.arb.add_inputs(stamp, np.full(5, self.t, np.float32), r, now=self.t * 0.05)
        if actor is not None:
            self.arb.add_actor_chunk(stamp, actor, now=self.t * 0.05)
        self.collect()
        return stamp

    def collect(self):
        commands, transitions, finished = self.arb.take()
        for c in commands:
            self.cmd, self.k = c, 0
            self.sent.append(c)
        self.transitions = getattr(self, 'transitions', []) + transitions
        self.finished = getattr(self, 'finished', []) + finished


def profile(critical_limits=None):
    """The gantry cell with chunk C, stride 2, limits D per step (critical: `critical_limits`, else the same)."""
    critical = critical_limits.high if critical_limits is not None else (D,) * A
    return replace(RobotProfile.load(), joint_lower=tuple(LOW), joint_upper=tuple(HIGH), max_delta=(D,) * A,
                   critical_max_delta=tuple(critical), actor_chunk_len=C, stride=2)


def make(warmup=0, critical_limits=None):
    return EpisodeEngine(profile(critical_limits), warmup_episodes=warmup)


def test_vla_chunks_are_limited_points_from_the_command_target():
    arb = make()
    robot = FakeRobot(arb, start=(0.0, 0.0, 0.0395))
    arb.start_episode(0)
    big = np.tile([0.02, -0.001, 0.003], (C + 2, 1))  # beyond the per-step limit, towards the z limit
    for _ in range(12):
        robot.tick(ref=big)
    assert robot.sent and all(c.source == SOURCE_VLA for c in robot.sent)
    for c in robot.sent:
        steps = np.diff(np.vstack([c.start, c.points]), axis=0)
        assert np.all(np.abs(steps) <= D + 1e-12)
        assert np.all(c.points >= LOW) and np.all(c.points <= HIGH)
    # Chunks follow each other without a gap: each starts where the previous one ended.
    np.testing.assert_allclose(robot.sent[1].start, robot.sent[0].points[-1])
    assert arb.episode.stats.steps_by_source['vla'] >= 8 and arb.episode.stats.steps_by_source['hold'] <= 2
    # At the z limit the points stop, but the recorded action is the chunk as chosen (per-step
    # limits only), as a simulator records an action whose joint is stopped.
    at_limit = robot.sent[-1]
    assert np.all(at_limit.points[:, 2] == HIGH[2])
    np.testing.assert_allclose(at_limit.executed, np.tile([D, -0.001, 0.003], (C, 1)), atol=1e-9)


def test_chunks_decided_in_the_critical_phase_keep_its_limits_whoever_drives():
    arb = make(critical_limits=ActionLimits.symmetric([0.001, 0.001, D]))
    robot = FakeRobot(arb)
    arb.start_episode(0)
    fast = np.tile([0.004, -0.003, -0.002], (C + 2, 1))
    for _ in range(6):
        robot.tick(ref=fast)  # outside the critical phase: the general limits
    arb.set_phase_signal(True, now=robot.t * 0.05)
    for _ in range(6):
        robot.tick(ref=fast, actor=fast[:C].astype(np.float32))
    arb.set_human(np.array([-0.004, 0.004, 0.003], np.float32), now=robot.t * 0.05)
    robot.tick(ref=fast)
    before = robot.sent[0]
    actor = [c for c in robot.sent if c.source == SOURCE_ACTOR][-1]
    human = [c for c in robot.sent if c.source == SOURCE_HUMAN][-1]
    assert before.source == SOURCE_VLA and not before.critical
    np.testing.assert_allclose(before.executed[0], [0.004, -0.003, -0.002], atol=1e-7)
    np.testing.assert_allclose(actor.executed[0], [0.001, -0.001, -0.002], atol=1e-7)
    np.testing.assert_allclose(human.executed[0], [-0.001, 0.001, 0.003], atol=1e-7)
    for c in (actor, human):
        assert np.all(np.abs(np.diff(np.vstack([c.start, c.points]), axis=0)[:, :2]) <= 0.001 + 1e-12)


def test_actor_in_the_critical_phase_after_warmup_and_transitions_at_stride():
    arb = make(warmup=1)
    robot = FakeRobot(arb)
    actor = np.full((C, A), -0.002, np.float32)
    for episode in range(2):
        arb.start_episode(episode, stamp_ns=robot.t * 1000)
        arb.set_phase_signal(True, now=robot.t * 0.05)
        for _ in range(15):
            robot.tick(actor=actor)
        arb.end_episode(success=episode == 1, final_step=15, now=robot.t * 0.05)
        robot.tick(actor=actor)
    first, second = robot.finished
    assert first.warmup and first.chunks_by_source['actor'] == 0
    assert not second.warmup and second.chunks_by_source['actor'] > 0 and second.success
    ep1 = [t for t in robot.transitions if t.episode_id == 1]
    assert ep1 and all(t.executed_chunk.shape == (C, A) for t in ep1)
    assert any(t.source == SOURCE_ACTOR for t in ep1)
    assert all(t.warmup == (t.episode_id == 0) for t in robot.transitions)  # the learner's update budget
    assert [t.done for t in ep1].count(True) >= 1 and ep1[-1].rewards[-1] == 1.0
    assert all(not t.done and t.truncated for t in robot.transitions if t.episode_id == 0 and t.rewards.size < C)
    # 14 recorded steps (o_1..o_14 act, o_15 is final) -> windows start at every 2nd step.
    assert len(ep1) == 7


def test_human_takeover_interrupts_at_once_and_replaces_the_reference():
    arb = make()
    robot = FakeRobot(arb)
    arb.start_episode(0)
    arb.set_phase_signal(True, now=0.0)
    for _ in range(3):
        robot.tick()
    before = len(robot.sent)
    arb.set_human(np.array([0.0, 0.0, -0.01]), now=robot.t * 0.05)  # clipped to the per-step limit
    robot.collect()
    assert len(robot.sent) == before + 1 and robot.sent[-1].source == SOURCE_HUMAN
    np.testing.assert_allclose(robot.sent[-1].executed, np.tile([0, 0, -D], (C, 1)), atol=1e-9)
    for _ in range(8):
        arb.set_human(np.array([0.0, 0.0, -0.01]), now=robot.t * 0.05 + 0.01)
        robot.tick()
    arb.set_human(None, now=robot.t * 0.05)
    for _ in range(6):
        robot.tick()
    arb.end_episode(success=False, now=robot.t * 0.05)
    robot.collect()
    human = [t for t in robot.transitions if t.source == SOURCE_HUMAN]
    assert human
    for t in human:
        np.testing.assert_array_equal(t.reference_chunk, t.executed_chunk)
    assert robot.finished[0].intervention and robot.sent[-1].source == SOURCE_VLA


def test_stale_human_counts_as_released():
    arb = make()
    robot = FakeRobot(arb)
    arb.start_episode(0)
    robot.tick()
    arb.set_human(np.array([0.001, 0, 0]), now=robot.t * 0.05)
    robot.collect()
    for _ in range(10):  # no further Joy: after the timeout the VLA drives again
        robot.tick()
    assert robot.sent[-1].source == SOURCE_VLA


def test_the_dead_man_s_release_stops_the_robot_at_once():
    """Released mid-chunk, the human's chunk is dropped and the controller is sent a hold at the command target at
    once, not left to run the chunk's remaining points; the robot stands there until the next chunk."""
    arb = make()
    robot = FakeRobot(arb)
    arb.start_episode(0)
    robot.tick(inputs=False)
    arb.set_human(np.array([0.001, 0, 0]), now=robot.t * 0.05)
    robot.collect()
    robot.tick(inputs=False)
    arb.set_human(None, now=robot.t * 0.05)  # one point of the human's chunk executed
    robot.collect()
    hold = robot.sent[-1]
    assert hold.is_hold and hold.executed.shape == (0, A)
    np.testing.assert_allclose(hold.points, [arb.episode.target])
    first_human = next(c for c in robot.sent if c.source == SOURCE_HUMAN)
    np.testing.assert_allclose(hold.points[0], first_human.points[0])  # where its one executed point went
    for _ in range(3):  # the VLA computes nothing: the robot stays where the hold put it
        robot.tick(inputs=False)
        np.testing.assert_allclose(robot.pos, hold.points[0])
    assert arb.episode.stats.steps_by_source == {'vla': 0, 'actor': 0, 'human': 1, 'hold': 3}


def test_a_chunk_cut_at_the_hand_over_is_held_where_it_was_cut_until_the_actor_s_chunk_comes():
    """lead 2, the actor late: the VLA's chunk runs its 2 kept points, then the controller is sent a hold (not the
    chunk's other points); the actor's chunk follows. A chunk that runs out in full gets no hold."""
    engine = EpisodeEngine(profile(), lead_steps=2, actor_wait_s=1.0)
    engine.actor_ready = True
    robot, _, executed = run_with_slow_vla(engine, 4, ticks=6 * C, critical_from=12, actor=lambda rows: rows / 2)
    holds = [i for i, c in enumerate(robot.sent) if c.is_hold]
    assert len(holds) == 1 and robot.sent[holds[0]].step_index == 14  # the kept points ran at steps 12 and 13
    after_cut = robot.sent[holds[0] + 1]
    assert after_cut.source == SOURCE_ACTOR and after_cut.stamp_ns // 1000 == 12 and after_cut.step_index == 16
    assert [np.any(executed[n]) for n in (12, 13, 14, 15, 16)] == [True, True, False, False, True]


def test_missing_states_are_approximated_and_the_final_state_awaited():
    arb = make()
    robot = FakeRobot(arb)
    arb.start_episode(0)
    arb.set_phase_signal(True, now=0.0)
    for i in range(10):
        robot.tick(inputs=i % 3 != 1 and i != 9)  # the VLA dropped some observations, the last too
    arb.end_episode(success=True, final_step=10, now=robot.t * 0.05)
    robot.collect()
    assert not robot.finished  # waits for the final observation's state (or a later one)
    robot.tick()
    assert robot.finished and robot.finished[0].approximated_states > 0
    assert robot.transitions[-1].done


@pytest.mark.parametrize('order', ['event_first', 'observation_first'])
def test_episode_end_in_either_order(order):
    arb = make()
    robot = FakeRobot(arb)
    arb.start_episode(0)
    arb.set_phase_signal(True, now=0.0)
    for _ in range(7):
        robot.tick()
    if order == 'event_first':
        arb.end_episode(success=True, final_step=8, now=robot.t * 0.05)
        robot.tick()
    else:
        robot.tick()
        arb.end_episode(success=True, final_step=8, now=robot.t * 0.05)
        robot.collect()
    assert robot.finished and robot.finished[0].steps == 7
    assert sum(t.rewards.sum() for t in robot.transitions) >= 1.0


def test_next_chunk_is_decided_on_the_observation_where_the_previous_one_runs_out():
    arb = make()
    arb.start_episode(0)
    ref = np.full((C, A), 0.001, np.float32)
    arb.observe(1000, np.zeros(A), now=0.0)
    arb.add_inputs(1000, np.zeros(5), ref, now=0.0)
    first = arb.take()[0]
    assert [(c.stamp_ns, c.step_index) for c in first] == [(1000, 1)]
    for t in range(2, C + 2):  # the robot executes the chunk; the VLA answers each observation late
        arb.observe(t * 1000, first[0].points[t - 2], now=t * 0.05)
        assert not arb.take()[0], 'no new chunk while one is in force or before the newest inputs'
        arb.add_inputs(t * 1000, np.zeros(5), ref, now=t * 0.05 + 0.02)
    # o_{C+1} arrived with the chunk exhausted: the new chunk waits for o_{C+1}'s inputs, not o_C's.
    (second,), _, _ = arb.take()
    assert second.stamp_ns == (C + 1) * 1000 and second.step_index == C + 1


def test_the_engine_asks_only_for_the_observations_it_decides_on_or_records():
    """What the arbiter asks of the VLA server: outside the critical phase the observation each chunk is decided
    on (every C steps); in it also those that start a transition window (every stride steps); the episode's
    final observation; nothing it already has."""
    arb = make()
    arb.start_episode(0)
    wanted, target, k = [], np.zeros(A), 0
    for n in range(1, 4 * C + 1):
        if n == 2 * C + 1:
            arb.set_phase_signal(True, now=n * 0.05, step=n)
        arb.observe(n * 1000, target, now=n * 0.05)
        steps = arb.wanted_observations(n * 0.05)
        if steps:
            assert [(s.n, s.stamp) for s in steps] == [(n, n * 1000)]
            wanted.append(n)
            arb.add_inputs(n * 1000, np.zeros(5), np.full((C, A), 0.001), now=n * 0.05)
            assert arb.wanted_observations(n * 0.05) == []
        commands = arb.take()[0]
        if commands:
            chunk, k = commands[-1], 0
        target, k = chunk.points[min(k, C - 1)], k + 1
    assert wanted == [1, 5, 9, 11, 13, 15]  # chunk boundaries; in the critical phase (from 9) every stride of 2
    arb.end_episode(True, final_step=4 * C + 1, now=1.0)
    arb.observe((4 * C + 1) * 1000, target, now=1.0)
    assert [s.n for s in arb.wanted_observations(1.0)] == [4 * C + 1]  # the final state closes the last window


def test_every_started_episode_is_reported_even_before_the_vla_answers():
    """A slow VLA start: the first (warmup) episode runs its critical phase before any inputs exist, so none
    of its steps can be recorded. It still ends and is reported, as is an episode the next one's start
    interrupts before its end was heard of; the warmup flags follow the order in which episodes started."""
    arb = make(warmup=1)
    robot = FakeRobot(arb)
    arb.start_episode(0, stamp_ns=0)
    arb.set_phase_signal(True, now=0.0)
    for _ in range(6):
        robot.tick(inputs=False)
    arb.end_episode(success=False, final_step=6, now=robot.t * 0.05)
    for _ in range(30):  # past the final wait: still no inputs
        robot.tick(inputs=False)
    assert [s.episode_id for s in robot.finished] == [0]
    first = robot.finished[0]
    assert first.warmup and first.critical_steps == 5 and first.transitions == 0
    assert first.unrecorded_transitions == 3  # the stride-2 windows of o_1..o_5
    arb.start_episode(1, stamp_ns=robot.t * 1000)
    arb.set_phase_signal(True, now=robot.t * 0.05)
    for _ in range(9):
        robot.tick()
    arb.start_episode(2, stamp_ns=robot.t * 1000)  # episode 1's end never arrived
    robot.collect()
    assert [s.episode_id for s in robot.finished] == [0, 1]
    second = robot.finished[1]
    assert not second.warmup and not second.success and second.steps == 8 and second.transitions > 0
    ep1 = [t for t in robot.transitions if t.episode_id == 1]
    assert ep1[-1].truncated and not ep1[-1].done


def test_a_robot_outside_its_joint_limits_holds_with_a_reason():
    """Started outside the profile's joint box, no command jumps to its edge: the robot holds and the engine says
    why; back inside, it moves again within the per-step limits."""
    arb = make()
    outside = HIGH + np.array([0.0, 0.0, 0.3])  # e.g. another robot's joints under the gantry's limits
    robot = FakeRobot(arb, start=outside)
    arb.start_episode(0)
    for _ in range(6):
        robot.tick()
    assert robot.sent == [] and arb.episode.stats.refused_commands >= 5
    assert any('outside its joint limits' in w for w in arb.warnings)
    robot.pos = np.zeros(A)  # moved back by hand
    for _ in range(6):
        robot.tick()
    assert robot.sent and all(np.all(np.abs(np.diff(np.vstack([c.start, c.points]), axis=0)) <= D + 1e-12)
                              for c in robot.sent)


def test_non_finite_observations_and_malformed_chunks_never_reach_the_robot():
    arb = make()
    robot = FakeRobot(arb)
    arb.start_episode(0)
    robot.tick()
    n = arb.episode.n
    arb.observe(10**9, [np.nan, 0.0, 0.0], now=1.0)
    arb.observe(10**9 + 1, [0.0, 0.0], now=1.0)
    assert arb.episode.n == n and len(arb.warnings) == 2
    with pytest.raises(ValueError, match='steps, expected'):
        arb.add_actor_chunk(robot.t * 1000, np.zeros((C + 1, A)), now=1.0)  # weights of another chunk length
    with pytest.raises(ValueError, match='NaN'):
        arb.add_inputs(robot.t * 1000, np.zeros(5), np.full((C, A), np.inf), now=1.0)
    with pytest.raises(ValueError, match='steps'):
        arb.add_inputs(robot.t * 1000, np.zeros(5), np.zeros((C - 1, A)), now=1.0)
    for _ in range(8):
        robot.tick()
    assert all(np.all(np.isfinite(c.points)) for c in robot.sent)


@pytest.mark.parametrize('ready', [False, True])
def test_a_running_actor_gets_the_first_chunk_of_the_critical_phase(ready):
    """The actor refines only in the critical phase, so at its start it has sent nothing for a while: with the
    actor known to run (actor_ready) the engine waits for its chunk; without, the VLA's chunk goes at once."""
    arb = make()
    arb.actor_ready = ready
    robot = FakeRobot(arb)
    arb.start_episode(0)
    for _ in range(3):
        robot.tick()
    arb.set_phase_signal(True, now=robot.t * 0.05, step=robot.t + 1)
    stamp = robot.tick()  # the VLA's inputs arrive first, the actor's chunk a moment later
    arb.add_actor_chunk(stamp, np.full((C, A), 0.0005, np.float32), now=robot.t * 0.05 + 0.01)
    robot.collect()
    assert robot.sent[-1].source == (SOURCE_ACTOR if ready else SOURCE_VLA)


def test_a_robot_that_lags_its_commands_is_never_refused():
    """A real arm (the simulator's too) trails its commanded points: each new chunk starts within
    max_target_lead of the measured position, not from the last point of a plan the robot has not reached."""
    arb = make()
    robot = FakeRobot(arb, tracking=0.25)
    arb.start_episode(0)
    fast = np.tile([D, -D, -D], (C + 2, 1))  # full speed, so the lag is the largest it gets
    behind = []
    for _ in range(10):
        sent = len(robot.sent)
        robot.tick(ref=fast)
        if len(robot.sent) > sent >= 1:  # a new chunk, decided on the position just measured
            assert np.all(np.abs(robot.sent[-1].start - robot.pos) <= arb.max_target_lead + 1e-12)
            behind.append(np.max(np.abs(robot.sent[-2].points[-1] - robot.pos)))
    assert arb.episode.stats.refused_commands == 0 and not arb.warnings
    assert arb.episode.stats.steps_by_source['hold'] <= 1
    assert max(behind) > arb.max_target_lead  # the robot was further behind its last plan than the lead


def test_emergency_stop_latches_a_hold_over_every_source_until_reset():
    arb = make()
    robot = FakeRobot(arb, start=(0.01, 0.0, 0.0))
    arb.start_episode(0)
    arb.set_phase_signal(True, now=0.0)
    for _ in range(2):
        robot.tick()
    assert robot.sent and arb.chunk_active  # mid-chunk
    hold = arb.emergency_stop('test', now=robot.t * 0.05)
    np.testing.assert_array_equal(hold, robot.pos)  # where the robot is measured, at once
    assert arb.warnings and 'emergency stop' in arb.warnings[-1]
    sent = len(robot.sent)
    for _ in range(6):  # the human, the VLA and the actor are all ignored; nothing is recorded after the stop
        arb.set_human(np.array([0.0, 0.0, -0.01]), now=robot.t * 0.05)
        robot.tick(actor=np.full((C, A), 0.001))
    assert len(robot.sent) == sent and not arb.chunk_active
    np.testing.assert_array_equal(arb.pending_action(), np.zeros(A))
    assert len(robot.finished) == 1
    stats = robot.finished[0]
    assert stats.emergency_stop == 'test' and not stats.success and stats.as_dict()['emergency_stop'] == 'test'
    assert robot.transitions and all(not t.done for t in robot.transitions)  # cut short: truncated, not terminal
    arb.start_episode(1)  # refused while latched
    robot.tick()
    assert not arb.active and len(robot.sent) == sent and 'not started' in arb.warnings[-1]
    assert arb.emergency_stop('again', now=robot.t * 0.05) is not None and arb.stop_reason == 'again'
    assert arb.reset_emergency_stop() and not arb.reset_emergency_stop()
    arb.start_episode(2)
    for _ in range(2):
        robot.tick()
    assert arb.active and len(robot.sent) == sent + 1  # control resumes


def test_emergency_stop_holds_a_robot_outside_its_box_where_it_is():
    arb = make()
    robot = FakeRobot(arb, start=(0.2, 0.0, 0.0))
    assert arb.emergency_stop('before any measurement', now=0.0) is None
    robot.tick()
    np.testing.assert_array_equal(arb.emergency_stop('outside', now=0.05), [0.2, 0.0, 0.0])


def test_an_old_or_repeated_measurement_is_never_taken_for_the_robot_s_position():
    arb = make()
    robot = FakeRobot(arb, start=(0.0, 0.0, 0.0))
    arb.start_episode(0)
    for _ in range(3):
        robot.tick()
    n, measured = arb.episode.n, arb.measured.copy()
    arb.observe(robot.t * 1000 - 500, [0.05, 0.05, -0.05], now=robot.t * 0.05)  # out of order, far away
    arb.observe(robot.t * 1000, [0.05, 0.05, -0.05], now=robot.t * 0.05)  # the same stamp again
    assert arb.episode.n == n and np.array_equal(arb.measured, measured)
    assert 'not after the latest' in arb.warnings[-1]
    robot.tick()
    assert arb.episode.n == n + 1 and np.all(np.abs(robot.sent[-1].start - robot.pos) <= 0.01)


def test_a_chunk_decided_on_an_older_observation_starts_at_the_newest_one():
    arb = make()
    arb.start_episode(0)
    arb.observe(1000, np.zeros(A), now=0.0)
    arb.observe(2000, np.zeros(A), now=0.05)  # the VLA answers o_1 after o_2 arrived
    arb.add_inputs(1000, np.zeros(5), np.full((C, A), 0.001, np.float32), now=0.06)
    (command,), _, _ = arb.take()
    assert (command.stamp_ns, command.step_index) == (1000, 2)  # its row 0 is the action after o_2



def test_measurements_between_control_steps_are_not_steps_but_the_safety_rules_go_by_the_latest():
    """A driver faster than the control rate: the joint states between steps move neither the episode nor a
    chunk on, but a chunk decided after them starts within max_target_lead of the latest one, and an emergency
    stop holds there."""
    arb = make()
    robot = FakeRobot(arb)
    arb.start_episode(0)
    stamp = robot.tick(inputs=False)  # the first step; its VLA inputs come later
    n, steps = arb.episode.n, arb.episode.stats.steps
    moved = np.array([0.03, -0.03, 0.025])  # pushed away from the command target (0) between steps
    for i in range(1, 5):
        assert arb.measure(stamp + 100 * i, moved * i / 4)
    assert arb.episode.n == n and arb.episode.stats.steps == steps and not robot.sent
    arb.add_inputs(stamp, np.zeros(5, np.float32), np.full((C + 2, A), 0.001), now=robot.t * 0.05)
    robot.collect()
    assert robot.sent and np.all(np.abs(robot.sent[0].start - moved) <= arb.max_target_lead + 1e-12)
    assert np.all(np.abs(robot.sent[0].start) > arb.max_target_lead)  # not from the step's measurement
    assert not arb.measure(stamp + 200, [0.05, 0.05, -0.05])  # older than the latest: ignored
    np.testing.assert_array_equal(arb.emergency_stop('test', now=robot.t * 0.05), moved)


H = RobotProfile.load().vla_chunk_len


def run_with_slow_vla(engine, delay, ticks, critical_from=None, actor=None, actor_lead=None):
    """The robot steps every tick; the VLA answers each observation the engine asks for `delay` ticks after it
    (after that tick's observation), the actor (`actor(ref rows)`, with the lead the request named, or
    `actor_lead`) at once after.
    Returns the robot, the reference chunk the VLA answered with, and the actions the robot executed after each
    observation, by its index."""
    robot, due, leads, executed = FakeRobot(engine), {}, {}, {}
    ref = np.arange(1, H + 1)[:, None] * np.full((H, A), 1e-4)  # row i: (i + 1) x 0.1 mm, to tell rows apart
    engine.start_episode(0)
    for t in range(1, ticks + 1):
        moving = robot.cmd is not None and robot.k < len(robot.cmd.executed)
        executed[t - 1] = robot.cmd.executed[robot.k] if moving else np.zeros(A)  # held
        if critical_from == t:
            engine.set_phase_signal(True, now=t * 0.05, step=t)  # as the simulator's event names its step
        robot.tick(inputs=False)
        for step in engine.wanted_observations(t * 0.05):
            due.setdefault(step.stamp, (t + delay, step.n))
            leads.setdefault(step.n, engine.lead_for(step.stamp))
        for stamp, (when, n) in list(due.items()):
            if when <= t:
                if actor is not None:
                    lead = leads[n] if actor_lead is None else actor_lead
                    engine.add_actor_chunk(stamp, actor(ref[lead:lead + C]), now=t * 0.05, lead=lead)
                engine.add_inputs(stamp, np.full(5, n, np.float32), ref, now=t * 0.05)
                del due[stamp]
        robot.collect()
    return robot, ref, executed


@pytest.mark.parametrize('delay', [1, 2, 3])
def test_a_chunk_decided_ahead_of_need_starts_where_the_one_in_force_ends_without_a_held_step(delay):
    """lead_steps = the VLA's latency in control steps: after the first chunk the robot never holds; each chunk
    decided on an observation with `lead` points of the one in force left executes its reference's rows from
    `lead` on, sent at the step the chunk in force runs out."""
    engine = EpisodeEngine(profile(), lead_steps=delay)
    robot, ref, _ = run_with_slow_vla(engine, delay, ticks=15 * C)
    first, *later = robot.sent
    assert first.step_index == delay + 1 and engine.episode.stats.steps_by_source['hold'] == delay  # the start
    assert len(later) >= 12
    for previous, command in zip(robot.sent, later, strict=False):
        assert command.step_index == previous.step_index + C  # no step between two chunks
        decided_on = command.stamp_ns // 1000
        lead = command.step_index - decided_on
        assert lead == delay
        np.testing.assert_allclose(command.executed, ref[lead:lead + C], rtol=1e-6)


def test_the_lead_adapts_to_the_measured_latency():
    """lead_steps None: the engine holds while it measures, then decides ahead by the 99th percentile of its
    decisions' latency, and the robot no longer holds."""
    engine = EpisodeEngine(profile(), lead_steps=None)
    robot, _, _ = run_with_slow_vla(engine, 2, ticks=20 * C)
    assert engine.lead == 2 and engine.episode.stats.steps_by_source['hold'] == 2  # the first chunk's wait
    starts = [c.step_index for c in robot.sent]
    assert np.all(np.diff(starts) == C), starts


def test_recorded_transitions_hold_what_the_robot_executed_after_each_window_s_first_observation():
    """Ahead of need in the critical phase, with the actor: every recorded window's actions are the ones the robot
    executed after its first observation, its state that observation's, and its reference that observation's
    first C rows (the transition's definition, as in process); the actor refines the rows its chunk executes."""
    engine = EpisodeEngine(profile(), lead_steps=2)
    engine.actor_ready = True
    robot, ref, executed = run_with_slow_vla(engine, 2, ticks=15 * C, critical_from=1,
                                             actor=lambda rows: rows + 0.0005)
    transitions = robot.transitions
    assert len(transitions) >= 20 and {t.source for t in transitions[1:]} == {SOURCE_ACTOR}  # the first: holds
    for t in transitions:
        n = int(t.state[0])  # the window's first observation (x is filled with its index)
        np.testing.assert_allclose(t.executed_chunk, np.stack([executed[n + i] for i in range(C)]), rtol=1e-6)
        np.testing.assert_allclose(t.reference_chunk, ref[:C], rtol=1e-6)
    for command in robot.sent[1:]:
        lead = command.step_index - command.stamp_ns // 1000
        np.testing.assert_allclose(command.executed, np.minimum(ref[lead:lead + C] + 0.0005, D), rtol=1e-6)


def test_an_actor_chunk_refined_from_other_rows_is_not_executed():
    """An actor that refined the reference's first rows for a chunk that starts 2 steps later: the VLA's chunk
    executes (after the actor's wait), never the misplaced one."""
    for actor_lead, source in ((None, SOURCE_ACTOR), (0, SOURCE_VLA)):
        engine = EpisodeEngine(profile(), lead_steps=2, actor_wait_s=0.0)
        engine.actor_ready = True
        robot, _, _ = run_with_slow_vla(engine, 1, ticks=8 * C, critical_from=1, actor=np.zeros_like,
                                        actor_lead=actor_lead)
        assert {c.source for c in robot.sent[1:]} == {source}


def test_ahead_of_need_the_hand_over_to_the_actor_keeps_the_vla_s_next_points_while_the_actor_decides():
    """The critical phase begins mid-chunk with lead 2: the VLA's chunk runs 2 more points, the actor's chunk
    (decided on that observation, from its reference's rows 2..) follows with no step between."""
    engine = EpisodeEngine(profile(), lead_steps=2, actor_wait_s=1.0)
    engine.actor_ready = True
    robot, ref, _ = run_with_slow_vla(engine, 2, ticks=6 * C, critical_from=12, actor=lambda rows: rows / 2)
    vla = [c for c in robot.sent if c.source == SOURCE_VLA and not c.is_hold]
    actor = [c for c in robot.sent if c.source == SOURCE_ACTOR]
    assert vla and actor and engine.episode.stats.steps_by_source['hold'] == 2  # only the first chunk's wait
    cut, handed = vla[-1], actor[0]
    # The phase began at o_12, one point into a VLA chunk: 2 more of its points ran, then the actor's.
    assert (cut.step_index, handed.stamp_ns // 1000, handed.step_index) == (11, 12, 14)
    np.testing.assert_allclose(handed.executed, ref[2:2 + C] / 2, rtol=1e-6)


def test_a_decision_whose_inputs_never_come_is_planned_again_on_the_newest_observation():
    """The VLA never answers for o_1 (its request or image lost): after more than a chunk of held steps the engine
    asks for the newest observation instead, and decides on it."""
    arb = make()
    arb.start_episode(0)
    for n in range(1, C + 3):
        arb.observe(n * 1000, np.zeros(A), now=n * 0.05)
        assert [s.n for s in arb.wanted_observations(n * 0.05)] == [1 if n <= C + 1 else n]
    arb.add_inputs((C + 2) * 1000, np.zeros(5), np.full((C, A), 0.001), now=1.0)
    (command,), _, _ = arb.take()
    assert command.stamp_ns == (C + 2) * 1000


@pytest.mark.parametrize('latency_periods, lead', [(0.0, 0), (0.7, 0), (0.8, 1), (1.5, 1), (1.9, 2), (50.0, H - C)])
def test_the_adapted_lead_covers_the_99th_percentile_latency_with_a_quarter_period_to_spare(latency_periods, lead):
    """A chunk decided with lead L must be there within L + 1 periods of its observation; the lead keeps a quarter
    of a period in hand over the 99th percentile of the last 100 decisions, at most H - C."""
    engine = EpisodeEngine(profile(), lead_steps=None)
    dt = engine.profile.dt
    engine.decision_latencies.extend([0.1 * dt] * 98 + [latency_periods * dt] * 2)
    assert engine.lead == lead
