"""The RLT episode protocol, implemented once: who drives each chunk, what the robot executes, what is recorded.

The arbiter node (from its topics, as messages arrive) and the in-process trainer `train_rlt` (synchronously,
stepping the simulator) both drive an `EpisodeEngine`; nothing else implements the protocol.

The robot steps on its own clock and reports every control step as an observation o_1, o_2, ...
(`observe`: its joint positions, a stamp, optionally the task's phase signal and the operator's input at that
moment); a driver faster than the control rate reports its joint positions between steps too (`measure`), which
the safety checks and an emergency stop go by. The frozen VLA's reference chunk and the RL state x for an
observation arrive later (`add_inputs`), the actor's refined chunk later still (`add_actor_chunk`); in process they
arrive at once. At each chunk
boundary the engine picks the chunk to execute with `rlt_core.control.arbitration.arbitrate` (human > warmup
VLA > actor > VLA) from the newest inputs, limited per step by the robot profile's limits (in a chunk decided in
the critical phase, its own limits), and turns it into absolute joint positions, one point per control step,
from the current command target. In a joint_delta profile an action is a move of the joints: each point moves
by it and stays within the joint limits. In an ee_delta profile an action is a move of the tool (position and
rotation vector in the base frame, `rlt_core.control.profile.ACTION_SPACES`): the profile's kinematics
(`ArmKinematics.solve_chunk`, differential IK from the command target) gives the points, each within the joint
limits and one step of the joints' velocity limits (`joint_step_limits`); a chunk it refuses (outside the
workspace box, past a joint limit, a jump, near a singularity, out of reach) is not sent: the robot holds and
the next chunk is decided on the next observation, as for any refused command. A gripper dimension is an
action dimension (executed, recorded, learned) that moves no joint here. Joint positions are what the robot
reports (`observe`), what a hold and an emergency stop send, and what the joint limits bound. When the
critical phase begins in the middle of a VLA chunk, the rest of it is dropped (ahead of need, below: all but its
next `lead` points) and the next chunk is decided on that observation (the actor's hand-over). The operator's
input (a held dead-man button) interrupts the current chunk at once and is re-issued at every step while held; on
release the next chunk is decided on the newest observation. A chunk dropped or cut short with nothing to follow
it (the release, the hand-over while the actor is late, a refused chunk) is followed by a hold, `Command.is_hold`:
one point, the command target, so that the controller does not run its remaining points.

Ahead of need: the next chunk is decided on the observation at which `lead` points of the chunk in force are left
(`lead_steps`, or adapted to the 99th percentile of the recent decisions' latency), from its
reference's rows from `lead` on (the rows for the steps it will execute: the pending points are skipped), and sent
as the chunk in force runs out, with no inference on that path. A graph asks for that observation with its lead
(the actor refines the same rows). A decision that comes late follows held steps, during which the robot stood
still, so it starts at its first row. In process the inputs come at once and `lead` is 0.

The action a_n executed between o_n and o_{n+1} is the next point of the chunk in force when o_{n+1} arrives
(zero while the robot holds between chunks). Steps go, in order, into a `TransitionBuilder` once their action,
their reward (known when the next step's action or the episode's end is) and (on the stride, in the critical
phase) their RL state are known; a state the VLA never computed (it drops observations when busy) is replaced
by the next one it did. During an intervention the human's chunk replaces the stored reference. The episode
ends with `end_episode(success, final_step)` (the simulator's EPISODE_END, or an operator's label): the reward
of the last action is 1 on success, and the final observation's state closes the last windows. The first
`warmup_episodes` episodes execute the VLA's chunk and their transitions are flagged as warmup.

An emergency stop (`emergency_stop`) wins over every source of control, the human's included: the robot is
sent to hold where it is measured, the episode ends there (a failure, truncated: what it recorded is kept), and
nothing is issued and no episode starts until `reset_emergency_stop`.

No ROS here. `take()` returns what the caller sends on: commands, transitions and finished episodes' statistics.
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rlt_core.control.arbitration import arbitrate
from rlt_core.control.phase import CriticalPhase, PhaseConfig
from rlt_core.control.profile import RobotProfile
from rlt_core.control.safety import ActionLimits, InvalidChunkError, validate_chunk, within_lead
from rlt_core.control.sync import Latest
from rlt_core.control.teleop import human_action
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA, ChunkTransition
from rlt_core.rl.transitions import TransitionBuilder

SOURCE_NAMES = {SOURCE_VLA: 'vla', SOURCE_ACTOR: 'actor', SOURCE_HUMAN: 'human'}
KEEP = object()
"""`observe(..., human=KEEP)`: the operator's input is not part of this observation (it arrives on its own)."""


@dataclass
class Command:
    """One chunk sent to the robot, or a hold: one point, the command target, and no actions."""

    points: np.ndarray
    """(C, J) absolute joint positions, one per control step ((1, J) for a hold)."""
    executed: np.ndarray
    """(C, A) (a hold: (0, A)) the chosen chunk within the per-step action limits, in the profile's action space:
    the action the transitions record. Where a joint limit stops a joint_delta move, the points stop there but the
    action stays as chosen, as a simulator's action does when its joint stops: the learner sees the policy's own
    output."""
    reference: np.ndarray | None
    """(C, A) the VLA's reference chunk the decision saw (None for a human chunk without one)."""
    source: int
    """SOURCE_VLA, SOURCE_ACTOR or SOURCE_HUMAN."""
    stamp_ns: int
    """Stamp of the observation the chunk was decided on."""
    start: np.ndarray
    """(J,) the command target the points start from."""
    episode_id: int = 0
    chunk_index: int = 0
    step_index: int = 0
    """The episode's latest observation when the chunk was issued (1-based): row k is the action after
    observation step_index + k (a chunk decided on an older observation starts later than that one)."""
    critical: bool = False

    @property
    def is_hold(self) -> bool:
        return len(self.executed) == 0


@dataclass
class PendingStep:
    """A control step whose action, reward or state is not yet known."""

    n: int
    """Its observation's index in the episode (1-based)."""
    stamp: int
    critical: bool
    time: float = 0.0
    """When the engine took the observation (the caller's clock, `now`)."""
    action: np.ndarray | None = None
    source: int = SOURCE_VLA
    reward: float = 0.0


@dataclass
class EpisodeStats:
    episode_id: int
    warmup: bool
    success: bool = False
    steps: int = 0
    critical_steps: int = 0
    steps_by_source: dict = field(default_factory=lambda: {'vla': 0, 'actor': 0, 'human': 0, 'hold': 0})
    chunks_by_source: dict = field(default_factory=lambda: {'vla': 0, 'actor': 0, 'human': 0})
    transitions: int = 0
    refused_commands: int = 0
    """Chunks that failed the last check before the controller (the robot held instead)."""
    emergency_stop: str | None = None
    """Why an emergency stop ended the episode, if one did."""
    approximated_states: int = 0
    unrecorded_transitions: int = 0
    """Critical-phase windows that could not be recorded: the VLA had not yet computed any state."""
    lead_steps: int = 0
    """The lead chunks were decided with when the episode ended (`EpisodeEngine.lead`)."""

    @property
    def intervention(self) -> bool:
        return self.steps_by_source['human'] > 0

    def as_dict(self) -> dict:
        return {'episode_id': self.episode_id, 'warmup': self.warmup, 'success': self.success,
                'steps': self.steps, 'critical_steps': self.critical_steps, 'intervention': self.intervention,
                'steps_by_source': dict(self.steps_by_source), 'chunks_by_source': dict(self.chunks_by_source),
                'transitions': self.transitions, 'refused_commands': self.refused_commands,
                'emergency_stop': self.emergency_stop,
                'approximated_states': self.approximated_states,
                'unrecorded_transitions': self.unrecorded_transitions, 'lead_steps': self.lead_steps}


def joint_step_limits(profile: RobotProfile) -> ActionLimits:
    """The largest move of each joint between two trajectory points: joint_delta, the profile's per-step action
    limits (an action is a joint move); ee_delta, one control step at the URDF's velocity limits (velocity x dt),
    the bound the differential IK keeps to."""
    if profile.action_space == 'joint_delta':
        return profile.limits
    return ActionLimits.symmetric(np.asarray(profile.joint_velocity_limits) * profile.dt)


def command_violation(start, points, measured, low, high, limits, max_lead, tol: float = 1e-9) -> str | None:
    """Why joint-position points must not reach the controller, or None: each is finite, inside [low, high],
    within the per-step limit `limits` (per joint, `joint_step_limits`) of the one before (the first of `start`,
    the point the robot was last sent to), `start` within `max_lead` (per joint) of the measured position, and
    that inside the box by `max_lead`."""
    if not (np.all(np.isfinite(points)) and np.all(np.isfinite(start))):
        return 'non-finite command'
    if measured is None:
        return 'no measured position yet'
    if np.any(measured < low - max_lead) or np.any(measured > high + max_lead):  # not a tracking lag
        return f'the robot is outside its joint limits (measured {np.round(measured, 4).tolist()})'
    if np.any(points < low - tol) or np.any(points > high + tol):
        return 'a point outside the joint limits'
    if np.any(np.abs(start - measured) > max_lead + tol):
        return f'the command would start {np.max(np.abs(start - measured)):.4f} from the measured position'
    steps = np.abs(np.diff(np.vstack([start, points]), axis=0))
    if np.any(steps > np.asarray(limits.high) + tol):
        return 'a step beyond the per-step limit'
    return None


@dataclass
class Episode:
    """The state of one episode, made anew by `start_episode`."""

    episode_id: int
    start_stamp: int
    """Observations stamped at or before this belong to the episode before."""
    warmup: bool
    phase: CriticalPhase
    builder: TransitionBuilder
    n: int = 0
    """Observations so far (o_1 .. o_n)."""
    steps: list = field(default_factory=list)
    """PendingSteps not yet recorded, oldest first."""
    final: PendingStep | None = None
    end_step: int | None = None
    end_time: float | None = None
    terminated: bool = False
    success: bool = False
    chunk: Command | None = None
    """The chunk in force; `k` is the index of its next point, `chunk_end` one past its last (C, or fewer where the
    critical phase cut it short)."""
    k: int = 0
    chunk_end: int = 0
    chunk_index: int = 0
    sent: Command | None = None
    """The last chunk the controller got while it still has points of it to run (None once run out or held)."""
    target: np.ndarray | None = None
    """The joint positions the robot was last sent to."""
    position: np.ndarray | None = None
    """The latest measured joint positions."""
    last_source: int = SOURCE_VLA
    decide_after: int | None = None
    """The next chunk is decided on the newest inputs stamped at or after this."""
    decide_step: PendingStep | None = None
    """The observation stamped `decide_after`: the decision's latency counts from it."""
    decide_lead: int = 0
    """Control steps between the observation stamped `decide_after` and the start of the chunk decided on it: the
    points of the chunk in force still to run (0 while the robot holds)."""
    queued: tuple | None = None
    """A decided chunk waiting for the one in force to run out: `_issue`'s arguments."""
    wait_start: float | None = None
    pending_phase: tuple[int, bool] | None = None
    human_action: np.ndarray | None = None
    human_time: float = -np.inf
    stats: EpisodeStats = None

    def __post_init__(self):
        self.stats = self.stats or EpisodeStats(self.episode_id, warmup=self.warmup)


class EpisodeEngine:
    def __init__(self, profile: RobotProfile, warmup_episodes: int = 0, max_target_lead: float = 0.01,
                 actor_wait_s: float = 0.05, actor_alive_s: float = 2.0, human_timeout_s: float = 0.25,
                 final_wait_s: float = 1.0, phase_config: PhaseConfig | None = None, history: int = 400,
                 record: bool = True, lead_steps: int | None = 0):
        self.profile = profile
        self.kinematics = profile.kinematics() if profile.action_space == 'ee_delta' else None
        """ee_delta: turns a chunk of tool moves into joint points; None for joint_delta (an action moves joints)."""
        self.C = profile.actor_chunk_len
        self.limits, self.critical_limits = profile.limits, profile.critical_limits
        self.low = np.asarray(profile.joint_lower, np.float64)
        self.high = np.asarray(profile.joint_upper, np.float64)
        self.joint_step_limits = joint_step_limits(profile)
        self.warmup_episodes = warmup_episodes
        self.max_target_lead = max_target_lead if self.kinematics is None else np.asarray(self.joint_step_limits.high)
        """How far (per joint) a command target may lead the measured joints: `max_target_lead` for joint_delta; for
        ee_delta one control step at the joints' velocity limits, and a target further ahead is pulled back
        along its way (`within_lead`), so the tool's path does not bend."""
        self.actor_wait_s, self.actor_alive_s = actor_wait_s, actor_alive_s
        if lead_steps is not None and not 0 <= lead_steps <= profile.vla_chunk_len - self.C:
            raise ValueError(f'lead_steps must be in [0, H - C = {profile.vla_chunk_len - self.C}], got {lead_steps}')
        self.lead_steps = lead_steps
        """Points of the chunk in force left when the next chunk is decided (0: when it runs out); None: adapted to
        the measured decision latency (`lead`)."""
        self.decision_latencies: deque[float] = deque(maxlen=100)
        """For each recent decision, the time from taking its observation to having its chunk, s."""
        self.human_timeout_s, self.final_wait_s = human_timeout_s, final_wait_s
        self.phase_config, self.record = phase_config or PhaseConfig(), record
        self.inputs: Latest[int, tuple[np.ndarray, np.ndarray]] = Latest(history)
        """(x, ref) of the newest observations the VLA computed, by stamp (they outlive an episode)."""
        self.actor_chunks: Latest[int, tuple[np.ndarray, int | None]] = Latest(history)
        self.last_actor_time = -np.inf
        self.actor_ready = False
        """Set by the caller while the actor is running with weights: at a critical-phase chunk boundary the engine
        then waits up to `actor_wait_s` for its chunk, even when it has sent none for `actor_alive_s` (as at the
        start of every critical phase, since the actor refines only there)."""
        self.episodes_started = 0
        self.active = False
        self.latest_stamp = None
        self.measured: np.ndarray | None = None
        """The latest measured joint positions (in or between episodes); observations stamped at or before
        `measured_stamp` are ignored."""
        self.measured_stamp: int | None = None
        self.stop_reason: str | None = None
        """Why an emergency stop holds the robot, latched until `reset_emergency_stop`; None when none does."""
        self.episode = Episode(0, -1, False, CriticalPhase(self.phase_config),
                               TransitionBuilder(self.C, profile.stride))
        """The current (or last) episode's state."""
        self._commands: list[Command] = []
        self._transitions: list[ChunkTransition] = []
        self._finished: list[EpisodeStats] = []
        self.warnings: list[str] = []
        """Why the robot held or an input was ignored, for the caller to log (it empties the list)."""

    # --- what the caller sends on ---

    def take(self) -> tuple[list[Command], list[ChunkTransition], list[EpisodeStats]]:
        out = self._commands, self._transitions, self._finished
        self._commands, self._transitions, self._finished = [], [], []
        return out

    @property
    def chunk_active(self) -> bool:
        ep = self.episode
        return ep.chunk is not None and ep.k < ep.chunk_end

    @property
    def lead(self) -> int:
        """Points of the chunk in force left when the next chunk is decided: `lead_steps`, or (adapted) the control
        periods that the 99th percentile of the last 100 decisions' latencies, plus a quarter period, reaches past
        the first, at most H - C. A chunk must be there before the observation after the one where the chunk in
        force runs out: a later one makes the robot hold, an earlier one only acts on an older observation."""
        if self.lead_steps is not None:
            return self.lead_steps
        if not self.decision_latencies:
            return 0
        p99 = np.percentile(np.asarray(self.decision_latencies), 99)
        periods = int(np.ceil((p99 + self.profile.dt / 4) / self.profile.dt))
        return int(np.clip(periods - 1, 0, self.profile.vla_chunk_len - self.C))

    def decides_on(self, stamp_ns: int) -> bool:
        """Whether the next chunk is planned on the observation at `stamp_ns`."""
        return self.active and stamp_ns == self.episode.decide_after

    def lead_for(self, stamp_ns: int) -> int:
        """Control steps between an observation and the start of the chunk decided on it (the rows of its
        reference the decision reads begin there): the decision's lead for the observation it was planned on,
        0 for any other (the robot holds: the chunk starts at once)."""
        return self.episode.decide_lead if self.decides_on(stamp_ns) else 0

    def decision_reference(self, stamp_ns: int, ref) -> np.ndarray:
        """The C rows of an observation's reference chunk (H, A) that a chunk decided on it executes: from
        `lead_for(stamp)` on. The actor refines these."""
        lead = min(self.lead_for(stamp_ns), len(ref) - self.C)
        return np.asarray(ref)[lead:lead + self.C]

    def pending_action(self) -> np.ndarray:
        """The action the robot executes after the latest observation: the next point's move, zero when holding."""
        ep = self.episode
        if self.active and ep.end_step is None and self.chunk_active:
            return ep.chunk.executed[ep.k].copy()
        return np.zeros(self.limits.action_dim, np.float32)

    def pending_point(self) -> np.ndarray | None:
        """The joint positions the robot is sent to after the latest observation (the trajectory point a controller
        receives): the chunk's next point, else the last command target (a hold); None before any observation."""
        ep = self.episode
        if self.active and ep.end_step is None and self.chunk_active:
            return ep.chunk.points[ep.k].copy()
        return None if ep.target is None else ep.target.copy()

    def wants_inputs(self, now: float) -> bool:
        """Whether the latest observation's RL state and reference are needed: a chunk is to be decided on it,
        or (recording) it starts a transition window."""
        ep = self.episode
        if not self.active or ep.final is not None or not ep.steps:
            return False
        step = ep.steps[-1]
        if self._deciding(now) and step.stamp == ep.decide_after:
            return True
        return self.record and step.critical and (step.n - 1) % ep.builder.stride == 0

    def wanted_observations(self, now: float) -> list[PendingStep]:
        """The observations (their steps: index and stamp) whose RL state and reference the engine waits for and
        does not have: the episode's final one (`wants_final_state`), the one the next chunk is decided on, the
        latest where it starts a recorded window (`wants_inputs`). What a graph asks its VLA server to compute."""
        ep = self.episode
        if self.wants_final_state():
            return [ep.final]
        wanted = []
        if self._deciding(now) and ep.decide_step is not None:
            wanted.append(ep.decide_step)
        if self.wants_inputs(now):
            wanted.append(ep.steps[-1])
        unique = {s.stamp: s for s in wanted if s.stamp not in self.inputs}
        return list(unique.values())

    def wants_actor_chunk(self, now: float) -> bool:
        """Whether a chunk is to be decided on the latest observation with the actor's refinement."""
        ep = self.episode
        return self.active and ep.phase.active and not ep.warmup and self._deciding(now)

    def wants_final_state(self) -> bool:
        """Whether the episode waits for its final observation's state (recording)."""
        ep = self.episode
        return self.active and ep.final is not None and ep.final.stamp not in self.inputs

    # --- episodes ---

    def start_episode(self, episode_id: int, stamp_ns: int = -1, warmup: bool | None = None):
        """A new episode begins; its first observation is the next one stamped after `stamp_ns`. It is a warmup
        episode while fewer than `warmup_episodes` have started, unless `warmup` says otherwise."""
        if self.active:
            self._close_unfinished()
        if self.stop_reason is not None:
            self.warnings.append(f'episode {episode_id} not started: emergency stop ({self.stop_reason}) until reset')
            return
        self.episodes_started += 1
        warmup = self.episodes_started <= self.warmup_episodes if warmup is None else bool(warmup)
        builder = TransitionBuilder(self.C, self.profile.stride)
        builder.reset(episode_id)
        self.episode = Episode(episode_id, int(stamp_ns), warmup, CriticalPhase(self.phase_config), builder)
        self.active = True

    def end_episode(self, success: bool, final_step: int | None = None, terminated: bool | None = None,
                    now: float = 0.0):
        """The episode ended at observation o_{final_step} (default: the latest one)."""
        ep = self.episode
        if not self.active or ep.end_step is not None:
            return
        ep.end_step = ep.n if final_step is None else int(final_step)
        ep.success = bool(success)
        ep.terminated = ep.success if terminated is None else bool(terminated)
        ep.end_time = now
        self._settle_final()
        self._progress(now)

    def emergency_stop(self, reason: str, now: float) -> np.ndarray | None:
        """Latch a hold of the robot until `reset_emergency_stop`, whoever drives. The current episode ends at the
        latest observation, a failure cut short (truncated). Returns the joint positions to send the robot to
        at once (the measured ones, brought into the joint limits if within `max_target_lead` of them), or None
        when nothing was measured yet."""
        first = self.stop_reason is None
        self.stop_reason = str(reason)
        ep = self.episode
        if first:
            self.warnings.append(f'emergency stop: {reason}; the robot holds until reset')
        if self.active and ep.end_step is None:
            ep.stats.emergency_stop = self.stop_reason
            ep.chunk, ep.human_action, ep.decide_after, ep.queued = None, None, None, None
            self.end_episode(False, terminated=False, now=now)
        if self.measured is None:
            return None
        inside = np.clip(self.measured, self.low, self.high)
        return inside if np.all(np.abs(inside - self.measured) <= self.max_target_lead) else self.measured.copy()

    def reset_emergency_stop(self) -> bool:
        """Release a latched emergency stop: the next episode may start. Returns whether one was latched."""
        latched, self.stop_reason = self.stop_reason is not None, None
        return latched

    def _close_unfinished(self):
        """The next episode starts before this one settled (its end never arrived, or its final observation
        never did): it ends at its latest observation, truncated unless its end said otherwise, and what it
        recorded is kept and reported."""
        ep = self.episode
        if ep.end_step is None:
            ep.success = ep.terminated = False
        ep.end_step = ep.n if ep.end_step is None else min(ep.end_step, ep.n)
        ep.end_time = -np.inf if ep.end_time is None else ep.end_time
        self._settle_final()
        self._flush(np.inf)

    def _settle_final(self):
        ep = self.episode
        if ep.final is None and ep.n >= ep.end_step:
            kept = [s for s in ep.steps if s.n < ep.end_step]
            final = [s for s in ep.steps if s.n == ep.end_step]
            ep.final = final[0] if final else (ep.steps[-1] if ep.steps else None)
            ep.steps = kept
            ep.chunk, ep.human_action, ep.queued = None, None, None
            if ep.steps:
                last = ep.steps[-1]
                if last.action is None:
                    last.action, last.source = np.zeros(self.limits.action_dim, np.float32), ep.last_source
                last.reward = 1.0 if ep.success else 0.0

    # --- the robot clock ---

    def measure(self, stamp_ns: int, position) -> bool:
        """The robot's joint positions at `stamp_ns` (the profile's joints, in its order), measured between control
        steps (a driver faster than the control rate; `rlt_core.control.steps`): not a step, but the position a
        command's start is checked against and an emergency stop holds at, as `observe`'s is. One not stamped after
        the latest measurement, or not finite, is ignored. Returns whether it was taken."""
        position = np.asarray(position, np.float64)
        if position.shape != self.low.shape or not np.all(np.isfinite(position)):
            self.warnings.append(f'measurement ignored: joint positions {position} are not {self.low.size} '
                                 'finite values')
            return False
        if self.measured_stamp is not None and stamp_ns <= self.measured_stamp:
            self.warnings.append(f'measurement ignored: stamped {stamp_ns}, not after the latest one '
                                 f'({self.measured_stamp}): an old measurement is never taken for the robot\'s '
                                 'position')
            return False
        self.measured, self.measured_stamp = position, int(stamp_ns)
        if self.active and self.episode.position is not None:
            self.episode.position = position
        return True

    def observe(self, stamp_ns: int, position, now: float, critical: bool | None = None, human=KEEP):
        """Observation o_{n+1}, a control step: the robot's joint positions at `stamp_ns`, taken as `measure` takes
        them (the profile's joints, in its order, whatever the action space). With it, where the caller has them at
        that moment: the task's critical-phase signal, and the operator's input (an action or a joystick's move,
        `human_action`, while driving; None when not)."""
        ep = self.episode
        if not self.measure(stamp_ns, position):
            return
        position = self.measured
        if self.active and stamp_ns <= ep.start_stamp:
            return  # from before the episode began
        self.latest_stamp = int(stamp_ns)
        if not self.active or ep.final is not None:
            self._progress(now)
            return
        ep.position = position
        ep.n += 1
        if ep.target is None:
            ep.target = np.clip(position, self.low, self.high)
        ep.target = self._within_lead(ep.target, position, ep.phase.active)
        if ep.steps and ep.steps[-1].action is None:
            self._consume(ep.steps[-1])
        if critical is None and ep.pending_phase is not None and ep.pending_phase[0] <= ep.n:
            critical, ep.pending_phase = ep.pending_phase[1], None
        if critical is not None:
            before = ep.phase.active
            ep.phase.update(signal=critical)
            self._hand_over(before)
        if human is None:
            ep.human_time = -np.inf  # released: the branch below hands back
        elif human is not KEEP:
            ep.human_action, ep.human_time = human_action(human, self.profile), now
        step = PendingStep(ep.n, int(stamp_ns), critical=ep.phase.active, time=now)
        ep.steps.append(step)
        if ep.decide_after == step.stamp:  # a hand-over above: its latency counts from this observation
            ep.decide_step = step
        if ep.end_step is not None:
            self._settle_final()
        elif self._human_fresh(now):
            self._issue_human(now)
        else:
            if ep.human_action is not None:
                self.set_human(None, now)
            if not self.chunk_active and ep.queued is not None:
                self._issue(*ep.queued)  # decided ahead of need: sent as the chunk in force runs out
            remaining = ep.chunk_end - ep.k if self.chunk_active else 0
            late = ep.decide_step is not None and ep.n - ep.decide_step.n > ep.decide_lead + self.C
            if (ep.decide_after is None or late) and ep.queued is None and remaining <= self.lead:
                self._decide_on(step, lead=remaining)  # the next chunk is decided on this, the newest observation
        self._progress(now)

    def _consume(self, step: PendingStep):
        """The robot executed one control step since `step`'s observation."""
        ep = self.episode
        if self.chunk_active:
            step.action, step.source = ep.chunk.executed[ep.k].astype(np.float32), ep.chunk.source
            ep.target = ep.chunk.points[ep.k].copy()
            ep.k += 1
            ep.stats.steps_by_source[SOURCE_NAMES[step.source]] += 1
        else:
            step.action, step.source = np.zeros(self.limits.action_dim, np.float32), ep.last_source
            ep.stats.steps_by_source['hold'] += 1
        ep.stats.steps += 1
        ep.stats.critical_steps += int(step.critical)

    # --- inputs from the graph ---

    def add_inputs(self, stamp_ns: int, x, ref, now: float):
        """The RL state x and the VLA's reference chunk (H >= C, A) for the observation at `stamp_ns`.
        Raises InvalidChunkError (a ValueError) for a reference of another shape or non-finite values."""
        x = np.asarray(x, np.float32)
        if x.ndim != 1 or not np.all(np.isfinite(x)):
            raise InvalidChunkError(f'RL state of shape {x.shape} or with non-finite values')
        ref = validate_chunk(ref, self.limits.action_dim)
        if len(ref) < self.C:
            raise InvalidChunkError(f'reference chunk of {len(ref)} steps, the actor chunk needs {self.C}')
        self.inputs[int(stamp_ns)] = (x, ref)
        self._progress(now)

    def add_actor_chunk(self, stamp_ns: int, chunk, now: float, lead: int | None = None):
        """The actor's refined chunk (C, A) for the observation at `stamp_ns`, refined from its reference's rows from
        `lead` on (None: those of `decision_reference`); InvalidChunkError if malformed."""
        self.actor_chunks[int(stamp_ns)] = (validate_chunk(chunk, self.limits.action_dim, self.C), lead)
        self.last_actor_time = now
        self._progress(now)

    def set_human(self, action, now: float):
        """The human's per-step action while the dead-man button is held (a joystick's move, `human_action`);
        None when released."""
        ep = self.episode
        if action is None:
            released = ep.human_action is not None
            ep.human_action = None
            if released and self.active and ep.chunk is not None and ep.chunk.source == SOURCE_HUMAN:
                ep.chunk = None  # the robot holds; the next chunk is decided from the newest inputs
                self._decide_on(None)
            self._progress(now)
            return
        if self.stop_reason is not None:
            return  # the emergency stop wins
        ep.human_action = human_action(action, self.profile)
        ep.human_time = now
        if self.active and ep.final is None and ep.end_step is None and ep.target is not None:
            self._issue_human(now)  # a takeover interrupts the current chunk at once
        self._progress(now)

    def set_phase_signal(self, critical: bool, now: float, step: int | None = None):
        """The task's own critical-phase signal (the simulator's), when it arrives apart from the observations.
        With `step`, the index of the observation it belongs to: one not yet observed takes it when it arrives."""
        ep = self.episode
        if step is not None and self.active and step > ep.n:
            ep.pending_phase = (int(step), bool(critical))
            return
        before = ep.phase.active
        ep.phase.update(signal=critical)
        self._hand_over(before)
        self._progress(now)

    def toggle_phase(self, now: float):
        """The human's phase button."""
        ep = self.episode
        before = ep.phase.active
        ep.phase.human_toggle()
        self._hand_over(before)
        self._progress(now)

    def _hand_over(self, before: bool):
        ep = self.episode
        if (self.active and ep.phase.active and not before and not ep.warmup
                and self.chunk_active and ep.chunk.source == SOURCE_VLA):
            # The critical phase began mid-chunk: hand over to the actor now, or, deciding ahead of need, as soon as
            # its chunk can be there (`lead` points on, if the VLA's chunk has them).
            keep = min(ep.chunk_end - ep.k, self.lead)
            if keep == 0:
                ep.chunk = None
            ep.chunk_end = ep.k + keep
            self._decide_on(None, lead=keep)

    def tick(self, now: float):
        """Call periodically: time-outs (waiting for the actor, for the final state)."""
        if self.episode.human_action is not None and not self._human_fresh(now):
            self.set_human(None, now)
        self._progress(now)

    # --- decisions ---

    def _deciding(self, now: float) -> bool:
        """Whether a chunk is waiting to be decided."""
        ep = self.episode
        return (ep.end_step is None and ep.queued is None and ep.decide_after is not None
                and not self._human_fresh(now) and self.stop_reason is None)

    def _human_fresh(self, now: float) -> bool:
        ep = self.episode
        return ep.human_action is not None and now - ep.human_time <= self.human_timeout_s

    def _decide_on(self, step: PendingStep | None, lead: int = 0):
        """The next chunk is to be decided on `step`'s observation (None: the latest), or a newer one while the robot
        holds, and to start `lead` control steps after it; a chunk decided before is dropped."""
        ep = self.episode
        if step is None and ep.steps and ep.steps[-1].stamp == self.latest_stamp:
            step = ep.steps[-1]
        ep.decide_after = self.latest_stamp if step is None else step.stamp
        ep.decide_step, ep.decide_lead, ep.queued, ep.wait_start = step, lead, None, None

    def _newest_inputs(self, after: int):
        """(stamp, x, ref) of the newest observation stamped at or after `after` that the VLA computed: while the
        chunk in force runs, only the observation planned on (a newer one's chunk would start elsewhere in its
        reference)."""
        if self.chunk_active:
            return (after, *self.inputs[after]) if after in self.inputs else None
        for stamp in reversed(self.inputs):
            if stamp >= after:
                return stamp, *self.inputs[stamp]
            break
        return None

    def _progress(self, now: float):
        if not self.active:
            return
        self._try_decide(now)
        self._hold_if_cut()
        self._flush(now)

    def _hold_if_cut(self):
        """A chunk dropped or cut short with nothing to follow it (the dead-man's release, the actor's hand-over, a
        refused chunk): the controller would run its remaining points while the engine counts held steps, so it is
        sent a hold at the command target."""
        ep = self.episode
        if ep.sent is None or (ep.sent is ep.chunk and self.chunk_active):
            return
        ran_out = ep.sent is ep.chunk and ep.k >= len(ep.chunk.points)
        if not ran_out and ep.end_step is None and self.stop_reason is None and ep.target is not None:
            self._commands.append(Command(
                points=ep.target[None].copy(), executed=np.zeros((0, self.limits.action_dim), np.float32),
                reference=None, source=ep.last_source, stamp_ns=int(self.latest_stamp or 0), start=ep.target.copy(),
                episode_id=ep.episode_id, chunk_index=ep.chunk_index, step_index=ep.n, critical=ep.phase.active))
        ep.sent = None

    def _try_decide(self, now: float):
        ep = self.episode
        if not self._deciding(now):
            return
        found = self._newest_inputs(ep.decide_after)
        if found is None:
            return
        stamp, _, ref = found
        ref = self.decision_reference(stamp, ref)
        critical, warmup = ep.phase.active, ep.warmup
        actor_chunk, actor_lead = self.actor_chunks.get(stamp, (None, None))
        if actor_lead is not None and actor_lead != self.lead_for(stamp):
            actor_chunk = None  # refined from other rows of the reference
        if (critical and not warmup and actor_chunk is None
                and (self.actor_ready or now - self.last_actor_time <= self.actor_alive_s)):
            if ep.wait_start is None:
                ep.wait_start = now
            if now - ep.wait_start < self.actor_wait_s:
                return  # the actor is alive: give it a moment to refine this chunk
        decision = arbitrate(ref, self.limits, actor_chunk=actor_chunk, critical=critical, warmup=warmup,
                             critical_limits=self.critical_limits)
        if ep.decide_step is not None:
            self.decision_latencies.append(now - ep.decide_step.time)
        if self.chunk_active:  # ahead of need: sent when the chunk in force runs out
            ep.queued = (decision.executed, decision.source, ref, stamp, critical)
        else:
            self._issue(decision.executed, decision.source, ref, stamp, critical)

    def _issue_human(self, now: float):
        ep = self.episode
        chunk = np.tile(ep.human_action, (self.C, 1))
        newest = next(reversed(self.inputs), None)
        ref = self.inputs[newest][1][:self.C] if newest is not None else np.zeros_like(chunk)
        decision = arbitrate(ref, self.limits, human_chunk=chunk, critical=ep.phase.active, warmup=ep.warmup,
                             critical_limits=self.critical_limits)
        self._issue(decision.executed, SOURCE_HUMAN, ref if newest is not None else None,
                    self.latest_stamp or 0, ep.phase.active)

    def _issue(self, chunk: np.ndarray, source: int, ref, stamp: int, critical: bool):
        ep = self.episode
        # From the point the robot was last sent to (mid-chunk on an interruption), brought within max_target_lead
        # of the measured position: a robot that lags its commands is not sent further ahead of itself.
        lead = self.max_target_lead
        start = self._within_lead(ep.target, ep.position, critical)
        limits = self.critical_limits if critical else self.limits
        executed = np.clip(np.asarray(chunk, np.float64), limits.low, limits.high)
        points, step_limits, refused = self._joint_points(start, executed, limits)
        # A robot outside its limits or a start too far from it is named first; then what the kinematics refused.
        unsafe = command_violation(start, points, ep.position, self.low, self.high, step_limits, lead) or refused
        if unsafe:  # the last check before the controller: hold instead, say why, decide again next step
            ep.chunk, ep.decide_after, ep.wait_start, ep.queued = None, None, None, None
            ep.stats.refused_commands += 1
            self.warnings.append(f'episode {ep.episode_id}: robot holds, {SOURCE_NAMES[source]} chunk refused: '
                                 f'{unsafe}')
            return
        ep.chunk = Command(points=points, executed=executed.astype(np.float32), reference=ref,
                           source=source, stamp_ns=int(stamp), start=start, episode_id=ep.episode_id,
                           chunk_index=ep.chunk_index, step_index=ep.n, critical=bool(critical))
        ep.k, ep.chunk_end = 0, self.C
        ep.chunk_index += 1
        ep.last_source = source
        ep.decide_after, ep.decide_step, ep.queued, ep.wait_start = None, None, None, None
        ep.stats.chunks_by_source[SOURCE_NAMES[source]] += 1
        self._commands.append(ep.chunk)
        ep.sent = ep.chunk

    def _within_lead(self, target, measured, critical: bool):
        target = within_lead(target, measured, self.max_target_lead, keep_direction=self.kinematics is not None)
        return target if self.kinematics is None else self._within_tool_lead(target, measured, critical)

    def tool_lead(self, critical: bool) -> np.ndarray:
        """ee_delta: how far a target's tool position may lead the measured one, per axis of the base frame (m):
        two control steps at the per-step limits in force. A tool that something stops (a peg on a rim) does not
        wind its target up into the part."""
        return 2 * np.asarray((self.critical_limits if critical else self.limits).high[:3], np.float64)

    def _within_tool_lead(self, target, measured, critical: bool):
        """The joint target whose tool is brought within `tool_lead` of the measured tool, axis by axis, its
        orientation kept as commanded. Pulling the whole configuration back towards the measured one would turn
        the target with a tool that a contact deflects, a little more at every chunk. If the kinematics cannot
        reach that pose, the target is pulled back along its way from `measured` instead."""
        lead = self.tool_lead(critical)
        here, there = self.kinematics.fk(measured)[:3, 3], self.kinematics.fk(target)
        offset = there[:3, 3] - here
        if np.all(np.abs(offset) <= lead):
            return target
        pose = there.copy()
        pose[:3, 3] = here + np.clip(offset, -lead, lead)
        solved = self.kinematics.solve(target, pose, self.profile.dt)
        if solved.ok:
            return solved.q
        return measured + (target - measured) * float(np.min(lead / np.maximum(np.abs(offset), 1e-12)))

    def _joint_points(self, start, executed, limits):
        """(points (C, J) from `start`, the per-step joint limits they keep to, why the kinematics refused or None).
        joint_delta: each action moves the joints, stopped at their limits. ee_delta: the differential IK of the
        tool's moves (a gripper column moves no joint); refused, no points."""
        if self.kinematics is None:
            points, p = [], start
            for delta in executed:
                p = np.clip(p + delta, self.low, self.high)
                points.append(p)
            return np.array(points), limits, None
        solved = self.kinematics.solve_chunk(start, executed, self.profile.dt)
        refused = None if solved.ok else f'kinematics refused it ({solved.reason}): {solved.detail}'
        return solved.points, self.joint_step_limits, refused

    # --- transitions ---

    def _state_for(self, stamp: int):
        """(x, ref, exact) for an observation: its own, else the next one the VLA computed."""
        if stamp in self.inputs:
            x, ref = self.inputs[stamp]
            return x, ref[:self.C], True
        for s, (x, ref) in self.inputs.items():
            if s > stamp:
                return x, ref[:self.C], False
        return None

    def _flush(self, now: float):
        ep = self.episode
        while ep.steps and ep.steps[0].action is not None:
            if ep.end_step is None and (len(ep.steps) < 2 or ep.steps[1].action is None):
                return  # its reward is known once the step after it, or the episode's end, is
            if self.record and not self._record(ep.steps[0], now):
                return
            ep.steps.pop(0)
        if ep.final is None and ep.end_step is not None and ep.n >= ep.end_step and not ep.steps:
            self._finish_stats()  # the episode ended before its first observation
            return
        if ep.final is not None and not ep.steps:
            if self.record:
                found = self._state_for(ep.final.stamp)
                if found is None:
                    if now - ep.end_time < self.final_wait_s:
                        return
                    found = self._latest_state()
                if found is not None:
                    x, ref, _ = found
                    self._transitions += self._count(ep.builder.finish(x, ref, ep.terminated))
            self._finish_stats()

    def _record(self, step: PendingStep, now: float) -> bool:
        """Record one step into the transition builder; False while its state is still awaited."""
        ep = self.episode
        critical, needs = step.critical, step.critical and ep.builder.needs_observation()
        x = ref = None
        if needs:
            found = self._state_for(step.stamp)
            if found is None:
                if ep.final is None or now - ep.end_time < self.final_wait_s:
                    return False
                found = self._latest_state()
            if found is None:  # the VLA has computed nothing yet: no window can start here
                critical = False
                ep.stats.unrecorded_transitions += 1
            else:
                x, ref, exact = found
                ep.stats.approximated_states += int(not exact)
        self._transitions += self._count(ep.builder.record(step.action, step.reward, step.source, critical,
                                                             x=x, ref=ref))
        return True

    def _finish_stats(self):
        ep = self.episode
        ep.stats.success, ep.stats.lead_steps = ep.success, self.lead
        self._finished.append(ep.stats)
        self.active = False

    def _latest_state(self):
        if not self.inputs:
            return None
        x, ref = self.inputs[next(reversed(self.inputs))]
        return x, ref[:self.C], False

    def _count(self, transitions):
        ep = self.episode
        ep.stats.transitions += len(transitions)
        for t in transitions:
            t.warmup = ep.warmup
        return transitions
