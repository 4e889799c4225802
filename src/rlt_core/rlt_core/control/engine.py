"""The teleop arbiter's logic: chunks executed on a free-running robot clock, transitions recorded.

The robot (or simulator) steps on its own clock and reports every control step as an
observation o_1, o_2, ... (its joint state, with a stamp). The frozen VLA's reference chunk and
the RL state x for an observation arrive a little later (`add_inputs`), the actor's refined chunk
later still (`add_actor_chunk`). At each chunk boundary `ChunkArbiter` picks the chunk to execute
with `rlt_core.control.arbitration.arbitrate` (human > warmup VLA > actor > VLA) from the newest inputs
and turns it into absolute joint positions, one point per control step, from the current command
target: each point moves by at most the per-step action limits (in a chunk decided in the critical
phase, its own limits) and stays within the joint limits. A held dead-man button interrupts the
current chunk at once; the human's chunk is re-issued at every step while it is held.

The action a_n executed between o_n and o_{n+1} is the next point of the chunk in force when
o_{n+1} arrives (zero while the robot holds between chunks). Steps go, in order, into a
`TransitionBuilder` once their action, their reward (known when the next step's action or the
episode's end is) and (on the stride, in the critical phase) their RL state are known; a state
the VLA never computed (it drops observations when busy) is replaced by the next one it did.
The episode ends with `end_episode(success, final_step)` (the simulator's EPISODE_END, or an
operator's label): the reward of the last action is 1 on success, and the
final observation's state closes the last windows.

No ROS here: the arbiter node feeds this class from its topics and publishes what `take()` returns.
"""

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from rlt_core.control.arbitration import arbitrate
from rlt_core.control.phase import CriticalPhase, PhaseConfig
from rlt_core.control.safety import ActionLimits
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA, Transition
from rlt_core.rl.transitions import TransitionBuilder

SOURCE_NAMES = {SOURCE_VLA: 'vla', SOURCE_ACTOR: 'actor', SOURCE_HUMAN: 'human'}


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
class _Step:
    n: int
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
                'transitions': self.transitions, 'approximated_states': self.approximated_states,
                'unrecorded_transitions': self.unrecorded_transitions}


class ChunkArbiter:
    def __init__(self, chunk_len: int, limits: ActionLimits, joint_low, joint_high, stride: int = 2,
                 warmup_episodes: int = 0, max_target_lead: float = 0.01, actor_wait_s: float = 0.05,
                 actor_alive_s: float = 2.0, human_timeout_s: float = 0.25, final_wait_s: float = 1.0,
                 phase_config: PhaseConfig | None = None, history: int = 400,
                 critical_limits: ActionLimits | None = None):
        self.C = chunk_len
        self.limits, self.critical_limits = limits, critical_limits or limits
        self.low = np.asarray(joint_low, np.float64)
        self.high = np.asarray(joint_high, np.float64)
        if self.low.shape != (limits.action_dim,):
            raise ValueError('actions are joint-position moves: one action dimension per joint')
        if self.critical_limits.action_dim != limits.action_dim:
            raise ValueError('critical_limits and limits need the same action dimension')
        self.warmup_episodes, self.max_target_lead = warmup_episodes, max_target_lead
        self.actor_wait_s, self.actor_alive_s = actor_wait_s, actor_alive_s
        self.human_timeout_s, self.final_wait_s = human_timeout_s, final_wait_s
        self.builder = TransitionBuilder(chunk_len, stride)
        self.phase = CriticalPhase(phase_config or PhaseConfig())
        self.history = history
        self.inputs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.actor_chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        self.last_actor_time = -np.inf
        self.human_action, self.human_time = None, -np.inf
        self.episodes_started = 0
        self.active = False
        self.stats: EpisodeStats | None = None
        self.latest_stamp = None
        self._commands: list[Command] = []
        self._transitions: list[Transition] = []
        self._finished: list[EpisodeStats] = []
        self.episode_id = 0
        self.start_stamp = -1

    # --- what the node publishes ---

    def take(self) -> tuple[list[Command], list[Transition], list[EpisodeStats]]:
        out = self._commands, self._transitions, self._finished
        self._commands, self._transitions, self._finished = [], [], []
        return out

    @property
    def warmup(self) -> bool:
        return self.episodes_started <= self.warmup_episodes

    @property
    def chunk_active(self) -> bool:
        return self.chunk is not None and self.k < self.C

    # --- episodes ---

    def start_episode(self, episode_id: int, stamp_ns: int = -1):
        """A new episode begins; its first observation is the next one stamped after `stamp_ns`."""
        if self.active:
            self._close_unfinished()
        self.episode_id = episode_id
        self.start_stamp = int(stamp_ns)
        self.episodes_started += 1
        self.active = True
        self.n = 0
        self.steps: list[_Step] = []
        self.final: _Step | None = None
        self.end_step = None
        self.end_time = None
        self.terminated = False
        self.success = False
        self.builder.reset(episode_id)
        self.phase.reset()
        self.chunk: Command | None = None
        self.k = 0
        self.chunk_index = 0
        self.target = None
        self.last_source = SOURCE_VLA
        self.decide_after = None
        self.wait_start = None
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

    def observe(self, stamp_ns: int, position, now: float):
        """Observation o_{n+1}: the robot's joint positions at `stamp_ns`."""
        if self.active and stamp_ns <= self.start_stamp:
            return  # from before the episode began
        self.latest_stamp = int(stamp_ns)
        if not self.active or self.final is not None:
            self._progress(now)
            return
        position = np.asarray(position, np.float64)
        self.n += 1
        if self.target is None:
            self.target = np.clip(position, self.low, self.high)
        lead = self.max_target_lead
        self.target = np.clip(self.target, position - lead, position + lead)
        if self.steps and self.steps[-1].action is None:
            self._consume(self.steps[-1])
        step = _Step(self.n, int(stamp_ns), critical=self.phase.active)
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

    def _consume(self, step: _Step):
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
        """The RL state x and the VLA's reference chunk (H >= C, A) for the observation at `stamp_ns`."""
        self.inputs[int(stamp_ns)] = (np.asarray(x, np.float32), np.asarray(ref, np.float32)[:self.C])
        while len(self.inputs) > self.history:
            self.inputs.popitem(last=False)
        self._progress(now)

    def add_actor_chunk(self, stamp_ns: int, chunk, now: float):
        self.actor_chunks[int(stamp_ns)] = np.asarray(chunk, np.float32)
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

    def set_phase_signal(self, critical: bool, now: float):
        """The task's own critical-phase signal (the simulator's)."""
        before = self.phase.active
        self.phase.update(signal=critical)
        self._phase_changed(before, now)

    def toggle_phase(self, now: float):
        """The human's phase button."""
        before = self.phase.active
        self.phase.human_toggle()
        self._phase_changed(before, now)

    def _phase_changed(self, before: bool, now: float):
        if (self.active and self.phase.active and not before and not self.warmup
                and self.chunk_active and self.chunk.source == SOURCE_VLA):
            self.chunk = None  # the critical phase began mid-chunk: hand over to the actor now
            self.decide_after = self.latest_stamp
        self._progress(now)

    def tick(self, now: float):
        """Call periodically: time-outs (waiting for the actor, for the final state)."""
        if self.human_action is not None and not self._human_fresh(now):
            self.set_human(None, now)
        self._progress(now)

    # --- decisions ---

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
        if self.end_step is not None or self.chunk_active or self.decide_after is None or self._human_fresh(now):
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
        self.chunk = Command(points=np.array(points), executed=executed.astype(np.float32), reference=ref,
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
            step = self.steps[0]
            critical, needs = step.critical, step.critical and self.builder.needs_observation()
            x = ref = None
            if needs:
                found = self._state_for(step.stamp)
                if found is None:
                    if self.final is None or now - self.end_time < self.final_wait_s:
                        return
                    found = self._latest_state()
                if found is None:  # the VLA has computed nothing yet: no window can start here
                    critical = False
                    self.stats.unrecorded_transitions += 1
                else:
                    x, ref, exact = found
                    self.stats.approximated_states += int(not exact)
            self._transitions += self._count(self.builder.record(step.action, step.reward, step.source,
                                                                 critical, x=x, ref=ref))
            self.steps.pop(0)
        if self.final is None and self.end_step is not None and self.n >= self.end_step and not self.steps:
            self._finish_stats()  # the episode ended before its first observation
            return
        if self.final is not None and not self.steps:
            found = self._state_for(self.final.stamp)
            if found is None:
                if now - self.end_time < self.final_wait_s:
                    return
                found = self._latest_state()
            if found is not None:
                x, ref, _ = found
                self._transitions += self._count(self.builder.finish(x, ref, self.terminated))
            self._finish_stats()

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
            t.warmup = self.stats.warmup
        return transitions
