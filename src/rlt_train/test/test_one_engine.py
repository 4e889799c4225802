"""One protocol: the arbiter's engine, driven as the arbiter node drives it, and the in-process trainer's loop
give the same executed actions and the same transitions for the same scripted stream."""

from dataclasses import dataclass, field

import numpy as np

from rlt_core.control.engine import EpisodeEngine
from rlt_core.control.profile import RobotProfile
from rlt_core.rl.replay import SOURCE_HUMAN
from rlt_train import train_rlt

PROFILE = RobotProfile.load()
A, C, H = PROFILE.action_dim, PROFILE.actor_chunk_len, PROFILE.vla_chunk_len
CRITICAL_FROM, HUMAN_STEPS, SUCCESS_AT = 9, range(20, 25), 37
"""Observation indices (1-based) of the scripted stream: the critical phase begins at o_9, the operator drives
from o_20 to o_24, and the action after o_37 succeeds."""


def x_of(n):
    return np.array([np.sin(n), np.cos(n), n / 10.0], np.float32)


def ref_of(n):
    """The VLA's chunk for o_n: H steps, well inside the critical limits on x/y and above them on z."""
    return (np.arange(H * A, dtype=np.float32).reshape(H, A) % 5 - 2) * 4e-4 + 1e-4 * n


def actor_of(x, ref):
    """A deterministic 'actor': the reference shifted by the state."""
    return (ref[:C] + 3e-4 * x[:A]).astype(np.float32)


def human_of(n):
    return np.array([0.002, -0.0015, 0.004], np.float32) * (1 if n % 2 else -1)


def follow(position, action):
    """A joint-position robot: it moves by the action and stops at its joint limits."""
    return np.clip(position + action, PROFILE.joint_lower, PROFILE.joint_upper)


class ScriptedCell:
    """A gym-like cell whose joints follow the actions; the phase, success and the operator follow the
    script. Observation o_n is the n-th of the episode (the reset's is o_1)."""

    instruction = 'script'

    def __init__(self):
        self.actions, self.position = [], np.zeros(A)

    def _out(self):
        n = len(self.actions) + 1
        position = self.position
        info = {'critical_phase': n >= CRITICAL_FROM, 'success': n > SUCCESS_AT, 'n': n}
        return {'proprio': np.concatenate([position, np.zeros(A)])}, info

    def reset(self, seed=None):
        self.actions, self.position = [], np.zeros(A)
        return self._out()

    def step(self, action):
        self.actions.append(np.asarray(action, np.float64))
        self.position = follow(self.position, self.actions[-1])
        obs, info = self._out()
        return obs, float(info['success']), info['success'], False, info


class ScriptedHuman:
    def reset(self, info):
        pass

    def wants_control(self, info):
        return info['n'] in HUMAN_STEPS

    def act(self, obs, info):
        return human_of(info['n'])


class ScriptedLearner:
    def select_chunk(self, x, ref, explore, generator):
        import torch
        return torch.from_numpy(actor_of(x, ref))


@dataclass
class Replay:
    transitions: list = field(default_factory=list)

    def add(self, t):
        self.transitions.append(t)

    def __len__(self):
        return len(self.transitions)


def in_process():
    env, replay = ScriptedCell(), Replay()
    cfg = train_rlt.RLTTrainConfig(batch_size=10**9)  # no learner updates
    stats = train_rlt.run_episode(env, lambda obs, instruction, info: (x_of(info['n']), ref_of(info['n'])),
                                  ScriptedLearner(), cfg, PROFILE, seed=0, train=True, warmup=False, replay=replay,
                                  human=ScriptedHuman())
    return env.actions, replay.transitions, stats


def as_the_arbiter_node():
    """Messages in the order the graph delivers them: the phase event of a step before its joint state, the
    joystick after the observation it reacts to, then the actor's chunk and the VLA's inputs (matched by stamp)."""
    engine = EpisodeEngine(PROFILE, warmup_episodes=0)
    engine.start_episode(0, stamp_ns=0)
    position, actions, commands, transitions = np.zeros(A), [], [], []
    command, k = None, 0
    n, now = 0, 0.0
    while True:
        n += 1
        now = n * PROFILE.dt
        if command is not None and k < len(command.executed):  # the robot executes the point sent
            action = command.executed[k].astype(np.float64)
            k += 1
        else:
            action = np.zeros(A)
        if n > 1:
            actions.append(action)
            position = follow(position, action)
        if n == CRITICAL_FROM:
            engine.set_phase_signal(True, now, step=n)
        if n == SUCCESS_AT + 1:
            engine.end_episode(True, final_step=n, terminated=True, now=now)
        engine.observe(n * 1000, position, now)
        if n in HUMAN_STEPS:
            engine.set_human(human_of(n), now)
        elif n - 1 in HUMAN_STEPS:
            engine.set_human(None, now)
        if engine.episode.phase.active and n <= SUCCESS_AT:
            engine.add_actor_chunk(n * 1000, actor_of(x_of(n), ref_of(n)), now)
        engine.add_inputs(n * 1000, x_of(n), ref_of(n), now)
        sent, recorded, _ = engine.take()
        if sent:
            command, k = sent[-1], 0
            commands += sent
        transitions += recorded
        if not engine.active:
            return actions, transitions, engine.episode.stats


def test_the_arbiter_and_the_trainer_run_one_protocol():
    actions, transitions, stats = in_process()
    node_actions, node_transitions, node_stats = as_the_arbiter_node()
    # The stream exercised every rule: VLA, hand-over to the actor mid-chunk, the operator, and back.
    assert stats['success'] and stats['steps'] == SUCCESS_AT == node_stats.steps
    assert stats['actor_chunks'] >= 3 and stats['human_steps'] == len(HUMAN_STEPS) and stats['hold_steps'] == 0
    assert node_stats.steps_by_source == {'vla': CRITICAL_FROM - 1, 'actor': SUCCESS_AT - CRITICAL_FROM + 1
                                          - len(HUMAN_STEPS), 'human': len(HUMAN_STEPS), 'hold': 0}
    np.testing.assert_array_equal(np.array(actions), np.array(node_actions))
    # The critical phase's limits hold whoever drives: z of the reference (1.6 mm) passes, x/y are clipped to 1 mm.
    critical = np.array(actions[CRITICAL_FROM - 1:])
    assert np.all(np.abs(critical) <= np.array(PROFILE.critical_max_delta) + 1e-9)
    assert len(transitions) == len(node_transitions) == (SUCCESS_AT - CRITICAL_FROM + 2) // PROFILE.stride
    for a, b in zip(transitions, node_transitions, strict=True):
        for name in ('state', 'executed_chunk', 'reference_chunk', 'rewards', 'next_state', 'next_reference_chunk'):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert (a.done, a.truncated, a.source, a.chunk_index) == (b.done, b.truncated, b.source, b.chunk_index)
    # The operator's chunk replaces the reference of every window it touches; the last window ends in success.
    human = [t for t in transitions if t.source == SOURCE_HUMAN]
    assert human and all(np.array_equal(t.reference_chunk, t.executed_chunk) for t in human)
    assert transitions[-1].done and transitions[-1].rewards[-1] == 1.0
