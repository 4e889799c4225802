"""The RLT episode protocol, implemented once: who drives each chunk, what the robot executes, what is recorded.

The arbiter node (from its topics, as messages arrive) and the in-process trainer `train_rlt` (synchronously,
stepping the simulator) both drive an `EpisodeEngine`; nothing else implements the protocol.

The robot steps on its own clock and reports every control step as an observation o_1, o_2, ...
(`observe`: its joint positions, a stamp, optionally the task's phase signal and the operator's input at that
moment). The frozen VLA's reference chunk and the RL state x for an observation arrive later (`add_inputs`),
the actor's refined chunk later still (`add_actor_chunk`); in process they arrive at once. At each chunk
boundary the engine picks the chunk to execute with `rlt_core.control.arbitration.arbitrate` (human > warmup
VLA > actor > VLA) from the newest inputs and turns it into absolute joint positions, one point per control
step, from the current command target: each point moves by at most the per-step limits of the robot profile
(in a chunk decided in the critical phase, its own limits) and stays within the joint limits. When the
critical phase begins in the middle of a VLA chunk, the rest of it is dropped and the next chunk is decided on
that observation (the actor's hand-over). The operator's input (a held dead-man button) interrupts the current
chunk at once and is re-issued at every step while held; on release the next chunk is decided on the newest
observation.

The action a_n executed between o_n and o_{n+1} is the next point of the chunk in force when o_{n+1} arrives
(zero while the robot holds between chunks). Steps go, in order, into a `TransitionBuilder` once their action,
their reward (known when the next step's action or the episode's end is) and (on the stride, in the critical
phase) their RL state are known; a state the VLA never computed (it drops observations when busy) is replaced
by the next one it did. During an intervention the human's chunk replaces the stored reference. The episode
ends with `end_episode(success, final_step)` (the simulator's EPISODE_END, or an operator's label): the reward
of the last action is 1 on success, and the final observation's state closes the last windows. The first
`warmup_episodes` episodes execute the VLA's chunk and their transitions are flagged as warmup.

No ROS here. `take()` returns what the caller sends on: commands, transitions and finished episodes' statistics.
"""

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from rlt_core.control.arbitration import arbitrate
from rlt_core.control.phase import CriticalPhase, PhaseConfig
from rlt_core.control.profile import RobotProfile
from rlt_core.control.safety import InvalidChunkError, validate_chunk
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA, ChunkTransition
from rlt_core.rl.transitions import TransitionBuilder

SOURCE_NAMES = {SOURCE_VLA: 'vla', SOURCE_ACTOR: 'actor', SOURCE_HUMAN: 'human'}
KEEP = object()
"""`observe(..., human=KEEP)`: the operator's input is not part of this observation (it arrives on its own)."""


@dataclass
class Command:
    """One chunk sent to the robot."""

    points: np.ndarray
    """(C, J) absolute joint positions, one per control step."""
    executed: np.ndarray
    """(C, A) the chosen chunk within the per-step action limits: the action the transitions record.
    Where a joint limit stops a move, the points stop there but the action stays as chosen, as a
    simulator's action does when its joint stops: the learner sees the policy's own output."""
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
    critical: bool = False


@dataclass
class PendingStep:
    """A control step whose action, reward or state is not yet known."""

    n: int
    """Its observation's index in the episode (1-based)."""
    stamp: int
    critical: bool
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
    approximated_states: int = 0
    unrecorded_transitions: int = 0
    """Critical-phase windows that could not be recorded: the VLA had not yet computed any state."""

    @property
    def intervention(self) -> bool:
        return self.steps_by_source['human'] > 0

    def as_dict(self) -> dict:
        return {'episode_id': self.episode_id, 'warmup': self.warmup, 'success': self.success,
                'steps': self.steps, 'critical_steps': self.critical_steps, 'intervention': self.intervention,
                'steps_by_source': dict(self.steps_by_source), 'chunks_by_source': dict(self.chunks_by_source),
                'transitions': self.transitions, 'refused_commands': self.refused_commands,
                'approximated_states': self.approximated_states,
                'unrecorded_transitions': self.unrecorded_transitions}


def command_violation(start, points, measured, low, high, limits, max_lead: float, tol: float = 1e-9) -> str | None:
    """Why joint-position points must not reach the controller, or None: each is finite, inside [low, high],
    within the per-step limit of the one before (the first of `start`), and `start` within `max_lead` of the
    measured position."""
    if not (np.all(np.isfinite(points)) and np.all(np.isfinite(start))):
        return 'non-finite command'
    if measured is None:
        return 'no measured position yet'
    if np.any(measured < low - max_lead) or np.any(measured > high + max_lead):
        return f'the robot is outside its joint limits (measured {np.round(measured, 4).tolist()})'
    if np.any(points < low - tol) or np.any(points > high + tol):
        return 'a point outside the joint limits'
    if np.any(np.abs(start - measured) > max_lead + tol):
        return f'the command would start {np.max(np.abs(start - measured)):.4f} from the measured position'
    steps = np.abs(np.diff(np.vstack([start, points]), axis=0))
    if np.any(steps > np.asarray(limits.high) + tol):
        return 'a step beyond the per-step limit'
    return None


class EpisodeEngine:
    def __init__(self, profile: RobotProfile, warmup_episodes: int = 0, max_target_lead: float = 0.01,
                 actor_wait_s: float = 0.05, actor_alive_s: float = 2.0, human_timeout_s: float = 0.25,
                 final_wait_s: float = 1.0, phase_config: PhaseConfig | None = None, history: int = 400,
                 record: bool = True):
        if profile.action_space != 'joint_delta':
            raise ValueError(f'the engine executes joint_delta actions, not {profile.action_space!r}')
        self.profile = profile
        self.C = profile.actor_chunk_len
        self.limits, self.critical_limits = profile.limits, profile.critical_limits
        self.low = np.asarray(profile.joint_lower, np.float64)
        self.high = np.asarray(profile.joint_upper, np.float64)
        self.warmup_episodes, self.max_target_lead = warmup_episodes, max_target_lead
        self.actor_wait_s, self.actor_alive_s = actor_wait_s, actor_alive_s
        self.human_timeout_s, self.final_wait_s = human_timeout_s, final_wait_s
        self.record = record
        self.builder = TransitionBuilder(self.C, profile.stride)
        self.phase = CriticalPhase(phase_config or PhaseConfig())
        self.history = history
        self.inputs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.actor_chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        self.last_actor_time = -np.inf
        self.human_action, self.human_time = None, -np.inf
        self.episodes_started = 0
        self.active = False
        self.warmup = False
        self.stats: EpisodeStats | None = None
        self.latest_stamp = None
        self._commands: list[Command] = []
        self._transitions: list[ChunkTransition] = []
        self._finished: list[EpisodeStats] = []
        self.episode_id = 0
        self.start_stamp = -1
        self.n = 0
        self.pending_phase = None
        self.position = None
        self.warnings: list[str] = []
        """Why the robot held or an input was ignored, for the caller to log (it empties the list)."""

    # --- what the caller sends on ---

    def take(self) -> tuple[list[Command], list[ChunkTransition], list[EpisodeStats]]:
        out = self._commands, self._transitions, self._finished
        self._commands, self._transitions, self._finished = [], [], []
        return out

    @property
    def chunk_active(self) -> bool:
        return self.chunk is not None and self.k < self.C

    def pending_action(self) -> np.ndarray:
        """The action the robot executes after the latest observation: the next point's move, zero when holding."""
        if self.active and self.end_step is None and self.chunk_active:
            return self.chunk.executed[self.k].copy()
        return np.zeros(self.limits.action_dim, np.float32)

    def wants_inputs(self, now: float) -> bool:
        """Whether the latest observation's RL state and reference are needed: a chunk is to be decided on it,
        or (recording) it starts a transition window."""
        if not self.active or self.final is not None or not self.steps:
            return False
        if self._deciding(now):
            return True
        step = self.steps[-1]
        return self.record and step.critical and (step.n - 1) % self.builder.stride == 0

    def wants_actor_chunk(self, now: float) -> bool:
        """Whether a chunk is to be decided on the latest observation with the actor's refinement."""
        return self.active and self.phase.active and not self.warmup and self._deciding(now)

    def wants_final_state(self) -> bool:
        """Whether the episode waits for its final observation's state (recording)."""
        return self.active and self.final is not None and self.final.stamp not in self.inputs

    # --- episodes ---

    def start_episode(self, episode_id: int, stamp_ns: int = -1, warmup: bool | None = None):
        """A new episode begins; its first observation is the next one stamped after `stamp_ns`. It is a warmup
        episode while fewer than `warmup_episodes` have started, unless `warmup` says otherwise."""
        if self.active:
            self._close_unfinished()
        self.episode_id = episode_id
        self.start_stamp = int(stamp_ns)
        self.episodes_started += 1
        self.warmup = self.episodes_started <= self.warmup_episodes if warmup is None else bool(warmup)
        self.active = True
        self.n = 0
        self.steps: list[PendingStep] = []
        self.final: PendingStep | None = None
        self.end_step = None
        self.end_time = None
        self.terminated = False
        self.success = False
        self.builder.reset(episode_id)
        self.phase.reset()
        self.pending_phase = None
        self.chunk: Command | None = None
        self.k = 0
        self.chunk_index = 0
        self.target = None
        self.last_source = SOURCE_VLA
        self.decide_after = None
        self.wait_start = None
        self.human_action, self.human_time = None, -np.inf
        self.stats = EpisodeStats(episode_id, warmup=self.warmup)

    def end_episode(self, success: bool, final_step: int | None = None, terminated: bool | None = None,
                    now: float = 0.0):
        """The episode ended at observation o_{final_step} (default: the latest one)."""
        if not self.active or self.end_step is not None:
            return
        self.end_step = self.n if final_step is None else int(final_step)
        self.success = bool(success)
        self.terminated = self.success if terminated is None else bool(terminated)
        self.end_time = now
        self._settle_final()
        self._progress(now)

    def _close_unfinished(self):
        """The next episode starts before this one settled (its end never arrived, or its final observation
        never did): it ends at its latest observation, truncated unless its end said otherwise, and what it
        recorded is kept and reported."""
        if self.end_step is None:
            self.success = self.terminated = False
        self.end_step = self.n if self.end_step is None else min(self.end_step, self.n)
        self.end_time = -np.inf if self.end_time is None else self.end_time
        self._settle_final()
        self._flush(np.inf)

    def _settle_final(self):
        if self.final is None and self.n >= self.end_step:
            kept = [s for s in self.steps if s.n < self.end_step]
            final = [s for s in self.steps if s.n == self.end_step]
            self.final = final[0] if final else (self.steps[-1] if self.steps else None)
            self.steps = kept
            self.chunk, self.human_action = None, None
            if self.steps:
                last = self.steps[-1]
                if last.action is None:
                    last.action, last.source = np.zeros(self.limits.action_dim, np.float32), self.last_source
                last.reward = 1.0 if self.success else 0.0

    # --- the robot clock ---

    def observe(self, stamp_ns: int, position, now: float, critical: bool | None = None, human=KEEP):
        """Observation o_{n+1}: the robot's joint positions at `stamp_ns`. With it, where the caller has them at that
        moment: the task's critical-phase signal, and the operator's input (an action while driving, None when not)."""
        if self.active and stamp_ns <= self.start_stamp:
            return  # from before the episode began
        self.latest_stamp = int(stamp_ns)
        if not self.active or self.final is not None:
            self._progress(now)
            return
        position = np.asarray(position, np.float64)
        if position.shape != self.low.shape or not np.all(np.isfinite(position)):
            self.warnings.append(f'observation ignored: joint positions {position} are not {self.low.size} '
                                 'finite values')
            return
        self.position = position
        self.n += 1
        if self.target is None:
            self.target = np.clip(position, self.low, self.high)
        lead = self.max_target_lead
        self.target = np.clip(self.target, position - lead, position + lead)
        if self.steps and self.steps[-1].action is None:
            self._consume(self.steps[-1])
        if critical is None and self.pending_phase is not None and self.pending_phase[0] <= self.n:
            critical, self.pending_phase = self.pending_phase[1], None
        if critical is not None:
            before = self.phase.active
            self.phase.update(signal=critical)
            self._hand_over(before)
        if human is None:
            self.human_time = -np.inf  # released: the branch below hands back
        elif human is not KEEP:
            self.human_action, self.human_time = np.asarray(human, np.float32), now
        step = PendingStep(self.n, int(stamp_ns), critical=self.phase.active)
        self.steps.append(step)
        if self.end_step is not None:
            self._settle_final()
        elif self._human_fresh(now):
            self._issue_human(now)
        else:
            if self.human_action is not None:
                self.set_human(None, now)
            if not self.chunk_active and self.decide_after is None:
                self.decide_after = int(stamp_ns)  # the next chunk is decided on this, the newest observation
        self._progress(now)

    def _consume(self, step: PendingStep):
        """The robot executed one control step since `step`'s observation."""
        if self.chunk_active:
            step.action, step.source = self.chunk.executed[self.k].astype(np.float32), self.chunk.source
            self.target = self.chunk.points[self.k].copy()
            self.k += 1
            self.stats.steps_by_source[SOURCE_NAMES[step.source]] += 1
        else:
            step.action, step.source = np.zeros(self.limits.action_dim, np.float32), self.last_source
            self.stats.steps_by_source['hold'] += 1
        self.stats.steps += 1
        self.stats.critical_steps += int(step.critical)

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
        self.inputs[int(stamp_ns)] = (x, ref[:self.C])
        while len(self.inputs) > self.history:
            self.inputs.popitem(last=False)
        self._progress(now)

    def add_actor_chunk(self, stamp_ns: int, chunk, now: float):
        """The actor's refined chunk (C, A) for the observation at `stamp_ns`; InvalidChunkError if malformed."""
        self.actor_chunks[int(stamp_ns)] = validate_chunk(chunk, self.limits.action_dim, self.C)
        while len(self.actor_chunks) > self.history:
            self.actor_chunks.popitem(last=False)
        self.last_actor_time = now
        self._progress(now)

    def set_human(self, action, now: float):
        """The human's per-step action while the dead-man button is held; None when released."""
        if action is None:
            released = self.human_action is not None
            self.human_action = None
            if released and self.active and self.chunk is not None and self.chunk.source == SOURCE_HUMAN:
                self.chunk = None  # the robot holds; the next chunk is decided from the newest inputs
                self.decide_after = self.latest_stamp
            self._progress(now)
            return
        self.human_action = np.asarray(action, np.float32)
        self.human_time = now
        if self.active and self.final is None and self.end_step is None and self.target is not None:
            self._issue_human(now)  # a takeover interrupts the current chunk at once
        self._progress(now)

    def set_phase_signal(self, critical: bool, now: float, step: int | None = None):
        """The task's own critical-phase signal (the simulator's), when it arrives apart from the observations.
        With `step`, the index of the observation it belongs to: one not yet observed takes it when it arrives."""
        if step is not None and self.active and step > self.n:
            self.pending_phase = (int(step), bool(critical))
            return
        before = self.phase.active
        self.phase.update(signal=critical)
        self._hand_over(before)
        self._progress(now)

    def toggle_phase(self, now: float):
        """The human's phase button."""
        before = self.phase.active
        self.phase.human_toggle()
        self._hand_over(before)
        self._progress(now)

    def _hand_over(self, before: bool):
        if (self.active and self.phase.active and not before and not self.warmup
                and self.chunk_active and self.chunk.source == SOURCE_VLA):
            self.chunk = None  # the critical phase began mid-chunk: hand over to the actor now
            self.decide_after = self.latest_stamp

    def tick(self, now: float):
        """Call periodically: time-outs (waiting for the actor, for the final state)."""
        if self.human_action is not None and not self._human_fresh(now):
            self.set_human(None, now)
        self._progress(now)

    # --- decisions ---

    def _deciding(self, now: float) -> bool:
        """Whether a chunk is waiting to be decided."""
        return (self.end_step is None and not self.chunk_active and self.decide_after is not None
                and not self._human_fresh(now))

    def _human_fresh(self, now: float) -> bool:
        return self.human_action is not None and now - self.human_time <= self.human_timeout_s

    def _newest_inputs(self, after: int):
        for stamp in reversed(self.inputs):
            if stamp >= after:
                return stamp, *self.inputs[stamp]
            break
        return None

    def _progress(self, now: float):
        if not self.active:
            return
        self._try_decide(now)
        self._flush(now)

    def _try_decide(self, now: float):
        if not self._deciding(now):
            return
        found = self._newest_inputs(self.decide_after)
        if found is None:
            return
        stamp, _, ref = found
        critical, warmup = self.phase.active, self.warmup
        actor_chunk = self.actor_chunks.get(stamp)
        if (critical and not warmup and actor_chunk is None
                and now - self.last_actor_time <= self.actor_alive_s):
            if self.wait_start is None:
                self.wait_start = now
            if now - self.wait_start < self.actor_wait_s:
                return  # the actor is alive: give it a moment to refine this chunk
        decision = arbitrate(ref, self.limits, actor_chunk=actor_chunk, critical=critical, warmup=warmup,
                             critical_limits=self.critical_limits)
        self._issue(decision.executed, decision.source, ref, stamp, critical)

    def _issue_human(self, now: float):
        chunk = np.tile(self.human_action, (self.C, 1))
        newest = next(reversed(self.inputs), None)
        ref = self.inputs[newest][1] if newest is not None else np.zeros_like(chunk)
        decision = arbitrate(ref, self.limits, human_chunk=chunk, critical=self.phase.active, warmup=self.warmup,
                             critical_limits=self.critical_limits)
        self._issue(decision.executed, SOURCE_HUMAN, ref if newest is not None else None,
                    self.latest_stamp or 0, self.phase.active)

    def _issue(self, chunk: np.ndarray, source: int, ref, stamp: int, critical: bool):
        start = self.target.copy()  # the point the robot was last sent to (mid-chunk on an interruption)
        limits = self.critical_limits if critical else self.limits
        executed = np.clip(np.asarray(chunk, np.float64), limits.low, limits.high)
        points, p = [], start
        for delta in executed:
            p = np.clip(p + delta, self.low, self.high)
            points.append(p)
        points = np.array(points)
        unsafe = command_violation(start, points, self.position, self.low, self.high, limits, self.max_target_lead)
        if unsafe:  # the last check before the controller: hold instead, say why, decide again next step
            self.chunk, self.decide_after, self.wait_start = None, None, None
            self.stats.refused_commands += 1
            self.warnings.append(f'episode {self.episode_id}: robot holds, {SOURCE_NAMES[source]} chunk refused: '
                                 f'{unsafe}')
            return
        self.chunk = Command(points=points, executed=executed.astype(np.float32), reference=ref,
                             source=source, stamp_ns=int(stamp), start=start, episode_id=self.episode_id,
                             chunk_index=self.chunk_index, critical=bool(critical))
        self.k = 0
        self.chunk_index += 1
        self.last_source = source
        self.decide_after = None
        self.wait_start = None
        self.stats.chunks_by_source[SOURCE_NAMES[source]] += 1
        self._commands.append(self.chunk)

    # --- transitions ---

    def _state_for(self, stamp: int):
        """(x, ref, exact) for an observation: its own, else the next one the VLA computed."""
        if stamp in self.inputs:
            return *self.inputs[stamp], True
        for s, (x, ref) in self.inputs.items():
            if s > stamp:
                return x, ref, False
        return None

    def _flush(self, now: float):
        while self.steps and self.steps[0].action is not None:
            if self.end_step is None and (len(self.steps) < 2 or self.steps[1].action is None):
                return  # its reward is known once the step after it, or the episode's end, is
            if self.record and not self._record(self.steps[0], now):
                return
            self.steps.pop(0)
        if self.final is None and self.end_step is not None and self.n >= self.end_step and not self.steps:
            self._finish_stats()  # the episode ended before its first observation
            return
        if self.final is not None and not self.steps:
            if self.record:
                found = self._state_for(self.final.stamp)
                if found is None:
                    if now - self.end_time < self.final_wait_s:
                        return
                    found = self._latest_state()
                if found is not None:
                    x, ref, _ = found
                    self._transitions += self._count(self.builder.finish(x, ref, self.terminated))
            self._finish_stats()

    def _record(self, step: PendingStep, now: float) -> bool:
        """Record one step into the transition builder; False while its state is still awaited."""
        critical, needs = step.critical, step.critical and self.builder.needs_observation()
        x = ref = None
        if needs:
            found = self._state_for(step.stamp)
            if found is None:
                if self.final is None or now - self.end_time < self.final_wait_s:
                    return False
                found = self._latest_state()
            if found is None:  # the VLA has computed nothing yet: no window can start here
                critical = False
                self.stats.unrecorded_transitions += 1
            else:
                x, ref, exact = found
                self.stats.approximated_states += int(not exact)
        self._transitions += self._count(self.builder.record(step.action, step.reward, step.source, critical,
                                                             x=x, ref=ref))
        return True

    def _finish_stats(self):
        self.stats.success = self.success
        self._finished.append(self.stats)
        self.active = False

    def _latest_state(self):
        if not self.inputs:
            return None
        return *self.inputs[next(reversed(self.inputs))], False

    def _count(self, transitions):
        self.stats.transitions += len(transitions)
        for t in transitions:
            t.warmup = self.warmup
        return transitions
