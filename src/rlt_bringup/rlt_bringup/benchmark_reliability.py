"""Reliability of the sim graph: process kills, malformed input and a long run, measured from outside.

  benchmark_reliability [--kills 10] [--fuzz-messages 10000] [--soak-min 10] [--seed 0] [--output DIR]

Starts the sim graph (`rlt_bringup.graph.nodes('sim')`: the executables and parameter files of
`./rlt run`, each node its own process group; logs in OUTPUT/logs/<node>.log, appended across restarts;
the learner's replay in OUTPUT/replay) and, in this process, a node that watches the graph and
publishes into it. Three sections run in order on the same graph; at the end every process is stopped
(SIGINT, as `./rlt run` does; also on Ctrl-C or SIGTERM) and one JSON is printed and written to
OUTPUT/reliability.json. Messages are attributed to a node by their publisher's GID in the graph, so the
benchmark's own malformed messages never count as the robot's or the arbiter's.

Command checker (throughout). Every JointTrajectory the arbiter publishes on
/<controller_name>/joint_trajectory is checked against the robot profile with
`rlt_core.control.engine.command_violation`: joint names those of the profile; every value finite;
every point inside [joint_lower, joint_upper]; each step between consecutive points within the
profile's general per-step limit (`limits.high`); the first point within that limit plus the arbiter's
`max_target_lead` of the measured joint position. The measured position is that of the newest
sim_robot joint state stamped before the trajectory (a command is checked once a state stamped after it
has arrived); the one before it is also accepted (the arbiter may not have received the newest yet). Where
this process has no state stamped within two control steps before the trajectory (it missed some), the
start is not checked: `commands_start_unchecked` counts those.
`commands_outside_limits` counts the commands that fail, `violations` gives each reason's count, and
`violation_examples` the first ten, each with the age of the measured position it was checked against and
of the observation the arbiter decided it on (the stamp of the rlt/executed_chunk published with it), at the
trajectory's stamp.

1. Fault injection. For each kill (`--kills` per node of ingestion, vla_server, actor, learner and
   arbiter, in a seeded random order), after a random wait of `--kill-wait-s` the node's process
   group gets SIGKILL; after a random `--restart-delay-s` it is started again with the same argv, and
   the next kill waits until it is back (it logged the last line of its start-up, on /rosout: its
   subscriptions and publishers are up). Per node:
   - `recovery_s` (median, max): from the kill until the robot holds or is back on the VLA, whichever
     comes first. The robot holds once the command in force has run out: a trajectory is in force from
     its receipt until its receipt plus its last point's time_from_start, a newer one replaces it, and a
     gap shorter than one control step (`dt`) is not a hold. Back on the VLA: an rlt/executed_chunk of
     source VLA received after the kill and decided on an observation stamped after it. For nodes off
     the control path (learner, and actor outside the critical phase) it is the time to the next VLA
     chunk.
   - `restart_s` (median, max): from the restart until the node is back.
   - `transitions_lost`: those lost (below) of the episodes reported after a kill of this node and before
     the next kill.
2. Fuzz. `--fuzz-messages` malformed messages (`FuzzMessages`: every kind on every topic the graph's
   nodes subscribe to, evenly, at `--fuzz-rate` per second) beside the graph's own traffic. `crashes`:
   node processes that exited (each is restarted; the end of its traceback is kept); `rejections`: the
   refusals each node counted during the fuzz, per topic (from its diagnostic_msgs/DiagnosticArray on
   /diagnostics, `rlt_nodes.rejections`; nodes that do not count refusals do not appear).
3. Soak. `--soak-min` minutes of the graph as it is. Resident memory (VmRSS of each node's process,
   every `--rss-period-s`): `rss_mb_start` (the first sample a minute after the soak began and a minute
   after the learner first published weights: learning's own allocations are not growth), `rss_mb_end`, and
   `growth_pct` between them, `growth_pct_second_half` over the second half (a plateau reads near 0; the
   series is in OUTPUT/soak_rss.csv); hold-still steps (episodes' `steps_by_source['hold']`), episodes and
   success rate of the episodes reported during the soak; `exits`: node processes that exited (restarted).

Over the whole run:
- `transitions_lost`: for every episode the arbiter reported on rlt/episode_stats, its transitions minus
  the records of that episode in OUTPUT/replay/transitions.bin (read after the clean stop; unique
  (writer, sequence) pairs where the records carry them), never below zero per episode; also per section
  (the one in which the episode was reported) and per episode.
- `learner_weights_regressed`: whether any weights version the learner published on rlt/actor_weights,
  any version the actor latched on rlt/actor_version, or any non-zero `weights_version` or
  `checkpoint_updates` on rlt/learner_stats came below one seen before (a restarted learner reports
  zeros until it has loaded its checkpoint), or `updates` came below the last checkpoint's.
  `learner_updates_redone`: updates made after a checkpoint and lost with a killed learner, summed.
"""

import argparse
import array
import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rlt_bringup import embedded, graph
from rlt_core.control.engine import command_violation, joint_step_limits
from rlt_core.control.sync import joint_state_in_order
from rlt_core.rl.actor import Actor, pack_weights
from rlt_core.runtime import machine

FAULT_NODES = ('ingestion', 'vla_server', 'actor', 'learner', 'arbiter')
FUZZ_NODE = 'rlt_reliability_fuzz'
STARTUP_LINES = {'ingestion': 'ingestion', 'vla_server': 'VLA server', 'actor': 'actor', 'learner': 'learner',
                 'arbiter': 'arbiter'}
"""How the line each node logs at the end of its start-up begins."""
UNKNOWN_NODE = '_NODE_NAME_UNKNOWN_'
"""The node name of an endpoint whose participant's node list has not been discovered yet."""


# --- the command checker (no ROS) ---

class CommandChecker:
    """Checks every command against the robot profile's limits and counts those that fail, by reason."""

    def __init__(self, profile, max_target_lead: float = 0.01):
        self.profile, self.max_target_lead = profile, max_target_lead
        self.low, self.high = np.array(profile.joint_lower), np.array(profile.joint_upper)
        self.step = joint_step_limits(profile)
        self.checked = 0
        self.start_unchecked = 0
        """Commands whose start was not checked: no measured position within two control steps before them."""
        self.section = ''
        """The benchmark's section now, noted with each example."""
        self.violations: Counter[str] = Counter()
        self.examples: list[dict] = []
        """The first few commands that failed, with their reason."""

    def violation(self, joint_names, points, measured) -> str | None:
        """Why a command (joint names, (K, J) points) must not reach the robot at `measured`, or None."""
        if list(joint_names) != list(self.profile.joint_names):
            return f'joint names {list(joint_names)} are not {list(self.profile.joint_names)}'
        points = np.asarray(points, dtype=float)
        if points.ndim != 2 or points.shape[1] != len(self.low):
            return f'points of shape {points.shape}'
        if measured is None:
            return 'no measured position yet'
        measured = np.asarray(measured, dtype=float)
        # The engine checks its start (the last target) against the measured position and the first step from it;
        # from outside, the first point may be up to the per-step limit plus the lead away from the measured position.
        start = measured + np.clip(points[0] - measured, -self.max_target_lead, self.max_target_lead)
        reason = command_violation(start, points, measured, self.low, self.high, self.step, self.max_target_lead)
        away = np.abs(points[0] - measured) - (np.asarray(self.step.high) + self.max_target_lead)
        if reason in (None, 'a step beyond the per-step limit') and np.any(away > 1e-9):
            return f'the command would start {np.max(np.abs(points[0] - measured)):.4f} from the measured position'
        return reason

    def check(self, joint_names, points, measured_candidates, context: dict | None = None) -> str | None:
        """Count one command; it passes if it passes against any of the candidate measured positions (none: all but
        its start is checked). `context` goes with its example if it fails."""
        self.checked += 1
        if not measured_candidates:
            self.start_unchecked += 1
            first = np.asarray(points, dtype=float)[:1].reshape(-1)
            measured_candidates = [first if first.size == len(self.low) else None]
        reasons = [self.violation(joint_names, points, m) for m in measured_candidates]
        if any(r is None for r in reasons):
            return None
        reason = reasons[0]
        self.violations[re.sub(r' -?[\d.]+ ', ' ', reason.split(' (')[0])] += 1  # counted without its figures
        if len(self.examples) < 10:
            self.examples.append({'reason': reason, 'section': self.section, 'points': np.round(points, 5).tolist(),
                                  'measured': [np.round(m, 5).tolist() for m in measured_candidates or []],
                                  **(context or {})})
        return reason

    @property
    def outside_limits(self) -> int:
        return sum(self.violations.values())


def hold_time(kill_t: float, trajectories, dt: float) -> float:
    """When the robot holds after `kill_t`: the command in force then (and those that replaced it while in
    force, or within one control step of running out) has run out. `trajectories`: (receipt, duration), in
    receipt order."""
    end = None
    for received, duration in trajectories:
        if received <= kill_t or (end is not None and received <= end + dt):
            end = received + duration
        else:
            break
    return kill_t if end is None else max(end, kill_t)


def recovery_time(kill_t: float, kill_wall_ns: int, trajectories, vla_chunks, dt: float) -> float:
    """Seconds from a kill until the robot holds or a VLA chunk decided after the kill was executed.
    `vla_chunks`: (receipt, observation stamp in ns) of executed VLA chunks, in receipt order."""
    hold = hold_time(kill_t, trajectories, dt)
    vla = next((received for received, stamp in vla_chunks if received > kill_t and stamp > kill_wall_ns), math.inf)
    return min(hold, vla) - kill_t


def monotone_regressions(values) -> int:
    """How many values came below the highest before them."""
    highest, count = -math.inf, 0
    for v in values:
        count += v < highest
        highest = max(highest, v)
    return count


def transitions_lost(episodes, replay_dir: Path) -> tuple[int, dict]:
    """(lost, lost per episode id): each reported episode's transitions minus its records on disk, at least 0."""
    stored = Counter()
    layout, data = replay_dir / 'layout.json', replay_dir / 'transitions.bin'
    if layout.exists() and data.exists():
        dtype = np.dtype([tuple(f) for f in json.loads(layout.read_text())['descr']])
        records = np.fromfile(data, dtype)
        if {'writer', 'sequence'} <= set(dtype.names):
            unique = {(int(r['episode_id']), int(r['writer']), int(r['sequence'])) for r in records}
            stored.update(e for e, _, _ in unique)
        else:
            stored.update(int(e) for e in records['episode_id'])
    lost = {e['episode_id']: e['transitions'] - stored.get(e['episode_id'], 0) for e in episodes}
    lost = {episode: n for episode, n in lost.items() if n > 0}
    return sum(lost.values()), lost


# --- malformed messages ---

@dataclass
class FuzzMessage:
    topic: str
    kind: str
    msg: object


class FuzzMessages:
    """Malformed messages for every topic the graph's nodes subscribe to: `KINDS` maps each topic to its message
    type and the kinds made for it. `make(topic, kind, i)` builds the i-th message of a kind."""

    OVERSIZED = 1_000_000
    """Elements of an oversized array (bytes of an image, characters of a string)."""

    def __init__(self, profile, token_dim: int, seed: int = 0, optional_topics=()):
        from rlt_interfaces.msg import ActionChunk
        self.profile, self.token_dim = profile, token_dim
        self.rng = np.random.default_rng(seed)
        self.joints = list(profile.joint_names)
        self.J, self.C, self.H = profile.action_dim, profile.actor_chunk_len, profile.vla_chunk_len
        self.state_dim = token_dim + 2 * self.J
        self.chunk_kinds = ('nan', 'inf', 'data_size_mismatch', 'wrong_action_dim', 'short_chunk', 'huge_values',
                            'unknown_source', 'wrong_action_names', 'oversized', 'stale_stamp')
        self.source = {'rlt/reference_chunk': ActionChunk.SOURCE_VLA, 'rlt/actor_chunk': ActionChunk.SOURCE_ACTOR}
        self.kinds = {
            'joint_states': ('sensor_msgs/JointState', ('nan_position', 'inf_velocity', 'short_positions',
                             'long_velocities', 'wrong_names', 'missing_names', 'repeated_name', 'stale_stamp',
                             'out_of_order_stamp', 'huge_positions', 'oversized')),
            **{c.image_topic: ('sensor_msgs/Image', (
                'wrong_encoding', 'wrong_size', 'short_data', 'wrong_step', 'stale_stamp', 'oversized', 'empty'))
               for c in profile.cameras},
            'rlt/observation': ('rlt_interfaces/Observation', (
                'nan_joints', 'wrong_joint_count', 'missing_images', 'wrong_image_size', 'wrong_encoding',
                'unknown_camera', 'oversized_instruction')),
            'rlt/rl_token': ('rlt_interfaces/RLToken', ('nan', 'inf', 'wrong_size', 'empty', 'oversized',
                                                        'stale_stamp')),
            'rlt/inference_request': ('rlt_interfaces/InferenceRequest', ('stale_stamp', 'future_stamp',
                                      'unobserved_stamp', 'zero_stamp', 'huge_step_index')),
            'rlt/reference_chunk': ('rlt_interfaces/ActionChunk', self.chunk_kinds),
            'rlt/actor_chunk': ('rlt_interfaces/ActionChunk', self.chunk_kinds),
            'joy': ('sensor_msgs/Joy', ('nan_axes', 'inf_axes', 'few_axes', 'few_buttons', 'huge_axes', 'empty')),
            'episode/events': ('rlt_interfaces/EpisodeEvent', ('unknown_event', 'oversized_detail',
                               'stale_episode_phase', 'huge_step_index')),
            'rlt/learner_stats': ('std_msgs/String', ('not_json', 'not_a_dict', 'nonnumeric_q', 'nan_q', 'oversized')),
            'rlt/actor_version': ('std_msgs/UInt64', ('zero', 'max_uint64')),
            'rlt/actor_weights': ('rlt_interfaces/ActorWeights', (
                'wrong_sha256', 'wrong_chunk_len', 'other_profile', 'wrong_state_dim', 'garbage_payload',
                'bad_config_json', 'unknown_format', 'not_newer')),
            'rlt/transitions': ('rlt_interfaces/Transition', (
                'nan_state', 'inf_rewards', 'state_size_mismatch', 'empty_state', 'chunk_size_mismatch',
                'too_many_rewards', 'wrong_chunk_len', 'wrong_state_dim', 'oversized')),
            f'{profile.controller_name}/joint_trajectory': ('trajectory_msgs/JointTrajectory', (
                'nan_point', 'outside_box', 'wrong_names', 'missing_names', 'ragged_points', 'no_points',
                'decreasing_time')),
            'sim/privileged': ('std_msgs/Float64MultiArray', ('wrong_size', 'nan', 'empty', 'oversized')),
        }
        if 'rlt/emergency_stop' in optional_topics:
            self.kinds['rlt/emergency_stop'] = ('std_msgs/Bool', ('release_without_reset',))
        if 'rlt/transitions_ack' in optional_topics:
            self.kinds['rlt/transitions_ack'] = ('rlt_interfaces/TransitionAck', (
                'unknown_writer', 'future_sequence', 'zero'))
        self._weights = None

    def message_type(self, topic: str):
        import importlib
        package, name = self.kinds[topic][0].split('/')
        return getattr(importlib.import_module(f'{package}.msg'), name)

    def pairs(self) -> list[tuple[str, str]]:
        return [(topic, kind) for topic, (_, kinds) in self.kinds.items() for kind in kinds]

    def messages(self, n: int):
        """`n` messages, every (topic, kind) in turn."""
        pairs = self.pairs()
        for i in range(n):
            topic, kind = pairs[i % len(pairs)]
            yield FuzzMessage(topic, kind, self.make(topic, kind, i // len(pairs)))

    # --- helpers ---

    def stamp(self, msg, kind: str):
        from rlt_nodes.conversions import set_stamp
        now = time.time_ns()
        if kind == 'stale_stamp':
            now -= 10 * 1_000_000_000
        elif kind == 'out_of_order_stamp':
            now -= int(self.rng.integers(1, 1000)) * 1_000_000
        set_stamp(msg.header, now)
        return msg

    def floats(self, n: int, kind: str = '') -> array.array:
        x = self.rng.normal(0.0, 0.01, n).astype(np.float32)
        if kind in ('nan', 'nan_state') and n:
            x[self.rng.integers(n)] = np.nan
        if kind == 'inf' and n:
            x[self.rng.integers(n)] = np.inf
        return array.array('f', x.tobytes())

    def inside_box(self) -> list[float]:
        return [float(v) for v in self.rng.uniform(self.profile.joint_lower, self.profile.joint_upper)]

    def make(self, topic: str, kind: str, i: int = 0):
        if topic == 'joint_states':
            return self.joint_state(kind)
        camera = next((c for c in self.profile.cameras if c.image_topic == topic), None)
        if camera is not None:
            return self.image_msg(camera, kind)
        if topic.endswith('joint_trajectory'):
            return self.trajectory(kind)
        return getattr(self, topic.split('/')[-1])(kind) if topic in (
            'rlt/observation', 'rlt/rl_token', 'joy', 'sim/privileged') else {
            'rlt/reference_chunk': lambda k: self.chunk(topic, k), 'rlt/actor_chunk': lambda k: self.chunk(topic, k),
            'episode/events': self.event, 'rlt/learner_stats': self.learner_stats,
            'rlt/actor_version': self.actor_version, 'rlt/actor_weights': lambda k: self.weights(k, i),
            'rlt/transitions': lambda k: self.transition(k, i), 'rlt/emergency_stop': self.emergency_stop,
            'rlt/transitions_ack': self.transitions_ack, 'rlt/inference_request': self.inference_request}[topic](kind)

    def joint_state(self, kind: str):
        from sensor_msgs.msg import JointState
        names, pos, vel = list(self.joints), self.inside_box(), [0.0] * self.J
        if kind == 'nan_position':
            pos[0] = math.nan
        elif kind == 'inf_velocity':
            vel[-1] = math.inf
        elif kind == 'short_positions':
            pos = pos[:-1]
        elif kind == 'long_velocities':
            vel = vel + [0.0]
        elif kind == 'wrong_names':
            names = [f'joint_{k}' for k in range(self.J)]
        elif kind == 'missing_names':
            names = []
        elif kind == 'repeated_name':
            names = [names[0]] * self.J
        elif kind == 'huge_positions':
            pos = [1e9] * self.J
        elif kind == 'oversized':
            n = self.OVERSIZED // 100
            names, pos, vel = [f'j{k}' for k in range(n)], [0.0] * n, [0.0] * n
        return self.stamp(JointState(name=names, position=pos, velocity=vel), kind)

    def image_msg(self, camera, kind: str):
        from sensor_msgs.msg import Image
        h, w, enc, channels = camera.height, camera.width, 'rgb8', 3  # what the VLA server accepts
        if kind == 'wrong_encoding':
            enc = 'mono16'
        elif kind == 'wrong_size':
            h, w = h // 2, w + 3
        elif kind == 'oversized':
            h = w = int(math.sqrt(self.OVERSIZED // channels))
        elif kind == 'empty':
            h = w = 0
        step = w * channels + (1 if kind == 'wrong_step' else 0)
        size = h * step - (h * step // 2 if kind == 'short_data' else 0)
        msg = Image(height=h, width=w, encoding=enc, step=step)
        msg.data = array.array('B', self.rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        return self.stamp(msg, kind)

    def observation(self, kind: str):
        from rlt_interfaces.msg import Observation
        js = self.joint_state('nan_position' if kind == 'nan_joints' else
                              'short_positions' if kind == 'wrong_joint_count' else '')
        cameras = list(self.profile.cameras)
        images = [self.image_msg(c, 'wrong_size' if kind == 'wrong_image_size' else
                                 'wrong_encoding' if kind == 'wrong_encoding' else '') for c in cameras]
        names = [c.name for c in cameras]
        if kind == 'missing_images':
            images = images[:-1]
        elif kind == 'unknown_camera':
            names[0] = 'no_such_camera'
        msg = Observation(camera_names=names, images=images, joint_state=js,
                          instruction='x' * self.OVERSIZED if kind == 'oversized_instruction' else 'insert the peg')
        msg.header = js.header
        return msg

    def rl_token(self, kind: str):
        from rlt_interfaces.msg import RLToken
        n = {'wrong_size': self.token_dim + 3, 'empty': 0, 'oversized': self.OVERSIZED // 4}.get(kind, self.token_dim)
        return self.stamp(RLToken(data=self.floats(n, kind)), kind)

    def chunk(self, topic: str, kind: str):
        from rlt_interfaces.msg import ActionChunk
        length, dim, values = self.H if topic == 'rlt/reference_chunk' else self.C, self.J, None
        data_len = length * dim
        if kind == 'data_size_mismatch':
            data_len -= 1
        elif kind == 'wrong_action_dim':
            dim += 2
            data_len = length * dim
        elif kind == 'short_chunk':
            length = 1
            data_len = length * dim
        elif kind == 'oversized':
            data_len = self.OVERSIZED // 4
        values = self.floats(data_len, kind)
        if kind == 'huge_values':
            values = array.array('f', [1e30] * data_len)
        msg = ActionChunk(chunk_length=length, action_dim=dim, data=values,
                          source=7 if kind == 'unknown_source' else self.source[topic],
                          action_names=['a', 'b'] if kind == 'wrong_action_names' else list(self.joints))
        return self.stamp(msg, kind)

    def joy(self, kind: str):
        from sensor_msgs.msg import Joy
        axes, buttons = [0.0] * 8, [0] * 12
        buttons[4] = 1  # the dead-man held: the values would drive the robot
        if kind == 'nan_axes':
            axes = [math.nan] * 8
        elif kind == 'inf_axes':
            axes = [math.inf, -math.inf] * 4
        elif kind == 'few_axes':
            axes = [0.5]
        elif kind == 'few_buttons':
            buttons = [1]
        elif kind == 'huge_axes':
            axes = [1e30] * 8
        elif kind == 'empty':
            axes, buttons = [], []
        return self.stamp(Joy(axes=axes, buttons=buttons), kind)

    def event(self, kind: str):
        from rlt_interfaces.msg import EpisodeEvent
        msg = EpisodeEvent(episode_id=0, step_index=0, event=EpisodeEvent.TAKEOVER_END, detail='fuzz')
        if kind == 'unknown_event':
            msg.event = 200
        elif kind == 'oversized_detail':
            msg.detail = 'x' * self.OVERSIZED
        elif kind == 'stale_episode_phase':
            msg.event, msg.detail = EpisodeEvent.PHASE_EXIT_CRITICAL, 'stale'
        elif kind == 'huge_step_index':
            msg.event, msg.step_index, msg.episode_id = EpisodeEvent.PHASE_ENTER_CRITICAL, 2**32 - 1, 2**64 - 1
        return self.stamp(msg, 'stale_stamp' if kind == 'stale_episode_phase' else kind)

    def learner_stats(self, kind: str):
        from std_msgs.msg import String
        return String(data={'not_json': '{"updates": ', 'not_a_dict': '[1, 2, 3]',
                            'nonnumeric_q': '{"values/q": "high"}', 'nan_q': '{"values/q": NaN}',
                            'oversized': '"' + 'x' * self.OVERSIZED + '"'}[kind])

    def actor_version(self, kind: str):
        from std_msgs.msg import UInt64
        return UInt64(data=0 if kind == 'zero' else 2**64 - 1)

    def weights(self, kind: str, i: int):
        """Forged ActorWeights (`pack_weights` of a small actor), each wrong in one way; versions above any a
        learner publishes, so that only their content can refuse them."""
        from rlt_interfaces.msg import ActorWeights
        config = self.profile.actor_config(self.state_dim, hidden=(16, 16))
        if kind == 'wrong_chunk_len':
            config = replace(config, chunk_len=self.C + 1)
        elif kind == 'other_profile':
            other = replace(self.profile, name='another_robot', max_steps=self.profile.max_steps + 1)
            config = other.actor_config(self.state_dim, hidden=(16, 16))
        elif kind == 'wrong_state_dim':
            config = replace(config, state_dim=self.state_dim + 5)
        packed = pack_weights(Actor(config))
        payload, sha, config_json, fmt = packed['payload'], packed['sha256'], packed['config_json'], packed['format']
        if kind == 'wrong_sha256':
            sha = hashlib.sha256(b'another payload').hexdigest()
        elif kind == 'garbage_payload':
            payload = self.rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
            sha = hashlib.sha256(payload).hexdigest()
        elif kind == 'bad_config_json':
            config_json = '{"state_dim": '
        elif kind == 'unknown_format':
            fmt = 'pickle'
        version = 1 if kind == 'not_newer' else 2**63 + i
        if kind == 'not_newer':
            sha = '0' * 64  # refused whatever the actor holds
        msg = ActorWeights(version=version, format=fmt, sha256=sha, config_json=config_json)
        msg.payload = array.array('B', payload)
        return self.stamp(msg, kind)

    def transition(self, kind: str, i: int):
        from rlt_interfaces.msg import Transition
        C, A, S = self.C, self.J, self.state_dim
        sizes = {'state': S, 'next_state': S, 'chunk': C * A, 'rewards': C}
        chunk_len = C
        if kind == 'state_size_mismatch':
            sizes['next_state'] = S - 1
        elif kind == 'empty_state':
            sizes['state'] = sizes['next_state'] = 0
        elif kind == 'chunk_size_mismatch':
            sizes['chunk'] = C * A + 1
        elif kind == 'too_many_rewards':
            sizes['rewards'] = C + 3
        elif kind == 'wrong_chunk_len':
            chunk_len = C + 2
            sizes['chunk'], sizes['rewards'] = chunk_len * A, chunk_len
        elif kind == 'wrong_state_dim':
            sizes['state'] = sizes['next_state'] = S + 5
        elif kind == 'oversized':
            sizes['state'] = sizes['next_state'] = self.OVERSIZED // 8
        msg = Transition(episode_id=2**40 + i, chunk_index=0, chunk_length=chunk_len, action_dim=A, source=0)
        msg.state = self.floats(sizes['state'], kind)
        msg.next_state = self.floats(sizes['next_state'])
        msg.executed_chunk = self.floats(sizes['chunk'])
        msg.reference_chunk = self.floats(sizes['chunk'])
        msg.next_reference_chunk = self.floats(sizes['chunk'])
        msg.rewards = self.floats(sizes['rewards'], 'inf' if kind == 'inf_rewards' else '')
        return self.stamp(msg, kind)

    def trajectory(self, kind: str):
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        names = list(self.joints)
        points = [self.inside_box() for _ in range(self.C)]
        times = [k + 1 for k in range(self.C)]
        if kind == 'nan_point':
            points[-1][0] = math.nan
        elif kind == 'outside_box':
            points[-1] = [hi + 1.0 for hi in self.profile.joint_upper]
        elif kind == 'wrong_names':
            names = [f'joint_{k}' for k in range(self.J)]
        elif kind == 'missing_names':
            names = []
        elif kind == 'ragged_points':
            points[1] = points[1][:-1]
        elif kind == 'no_points':
            points = []
        elif kind == 'decreasing_time':
            times = times[::-1]
        dt = self.profile.dt
        msg = JointTrajectory(joint_names=names, points=[
            JointTrajectoryPoint(positions=p, time_from_start=Duration(sec=int(t * dt), nanosec=int(t * dt % 1 * 1e9)))
            for p, t in zip(points, times, strict=False)])
        return self.stamp(msg, kind)

    def privileged(self, kind: str):
        from std_msgs.msg import Float64MultiArray
        n = {'wrong_size': 3, 'empty': 0, 'oversized': self.OVERSIZED // 8}.get(kind, 10)
        values = [math.nan] * n if kind == 'nan' else [0.0] * n
        return Float64MultiArray(data=values)

    def emergency_stop(self, kind: str):
        from std_msgs.msg import Bool
        return Bool(data=False)

    def inference_request(self, kind: str):
        """A request for an observation the VLA server never had (or a nonsense index): it must expire."""
        from rlt_interfaces.msg import InferenceRequest
        msg = self.stamp(InferenceRequest(step_index=2**32 - 1 if kind == 'huge_step_index' else 1), kind)
        if kind == 'future_stamp':
            msg.header.stamp.sec += 3600
        elif kind == 'unobserved_stamp':
            msg.header.stamp.nanosec = int(self.rng.integers(0, 1_000_000_000))
        elif kind == 'zero_stamp':
            msg.header.stamp.sec = msg.header.stamp.nanosec = 0
        return msg

    def transitions_ack(self, kind: str):
        from rlt_interfaces.msg import TransitionAck
        writer = int(self.rng.integers(1, 2**63))
        return TransitionAck(writer_id=writer, sequence={'unknown_writer': 1, 'future_sequence': 2**64 - 1,
                                                         'zero': 0}[kind])


# --- the graph's processes ---

class Processes:
    """The sim graph's node processes: each its own process group, its log appended across restarts."""

    def __init__(self, commands, logs: Path, env: dict):
        self.argv = dict(commands)
        self.logs, self.env = logs, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str):
        with open(self.logs / f'{name}.log', 'a') as log:
            self.procs[name] = subprocess.Popen(self.argv[name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def start_all(self):
        for name in self.argv:
            self.start(name)

    def kill(self, name: str):
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def exited(self) -> dict[str, int]:
        return {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}

    def last_error(self, name: str, lines: int = 8) -> str:
        """The end of the last traceback in the node's log, up to its exception line (else the log's last lines)."""
        text = (self.logs / f'{name}.log').read_text(errors='replace').splitlines()
        starts = [i for i, line in enumerate(text) if line.startswith('Traceback')]
        if not starts:
            return '\n'.join(text[-lines:])
        block = text[starts[-1]:]
        end = next((i for i in range(1, len(block)) if block[i] and not block[i][0].isspace()), len(block) - 1)
        return '\n'.join(block[max(0, end + 1 - lines):end + 1])

    def rss_mb(self, name: str) -> float | None:
        try:
            for line in Path(f'/proc/{self.procs[name].pid}/status').read_text().splitlines():
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self):
        embedded.stop(self.procs)


# --- the node in this process ---

class Watcher:
    """The benchmark's rclpy node: the command checker, what the graph reports, readiness, fuzz publishers."""

    def __init__(self, profile, max_target_lead: float):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.msg import Log
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String, UInt64
        from trajectory_msgs.msg import JointTrajectory

        from rlt_interfaces.msg import ActionChunk, ActorWeights, RLToken
        from rlt_nodes.qos import CHUNK_QOS, LATCHED_QOS, STATS_QOS
        self.rclpy, self.profile = rclpy, profile
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('rlt_reliability', context=self.context)
        self.fuzz_node = rclpy.create_node(FUZZ_NODE, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.fuzz_node)
        self.checker = CommandChecker(profile, max_target_lead)
        self.publishers_of: dict[bytes, str] = {}
        self.joint_states: list[tuple[int, list]] = []  # (stamp ns, positions in the profile's order), recent
        self.trajectories: list[tuple[float, float]] = []  # (receipt, duration)
        self.unchecked: list[tuple[int, list, list, float]] = []  # (stamp, names, points, receipt) to check
        self.executed: list[tuple[float, int]] = []  # (receipt, observation stamp ns) of the newest executed chunks
        self.vla_chunks: list[tuple[float, int]] = []  # (receipt, observation stamp ns)
        self.heard: dict[str, float] = {}  # node -> receipt of its newest message
        self.started: dict[str, float] = {}  # node -> receipt of its newest start-up line on /rosout
        self.episodes: list[dict] = []
        self.section = 'start'
        self.learner_stats: list[dict] = []
        self.weights_versions: list[int] = []
        self.first_weights_time: float | None = None
        """time.monotonic() of the first weights the learner published."""
        self.actor_versions: list[int] = []
        self.token_dim = None
        self.refusals: dict[tuple[str, str], int] = {}  # (node, topic) -> count, summed over its processes
        self._last_refusals: dict[tuple[str, str], int] = {}
        controller = f'{profile.controller_name}/joint_trajectory'
        sub = self.node.create_subscription
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        sub(JointState, 'joint_states', self.on_joint_state, 100)
        sub(JointTrajectory, controller, self.on_trajectory, 100)
        sub(ActionChunk, 'rlt/executed_chunk', self.on_executed, reliable)
        sub(String, 'rlt/episode_stats', self.on_episode_stats, STATS_QOS)
        sub(String, 'rlt/learner_stats', self.on_learner_stats, 10)
        sub(ActorWeights, 'rlt/actor_weights', self.on_weights, LATCHED_QOS)
        sub(UInt64, 'rlt/actor_version', self.on_actor_version, LATCHED_QOS)
        # TRANSIENT_LOCAL, as /rosout is published: a node's start-up line arrives even if it was logged before
        # this subscription matched the new process.
        sub(Log, '/rosout', self.on_log, QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                                    durability=DurabilityPolicy.TRANSIENT_LOCAL))
        sub(RLToken, 'rlt/rl_token', self.on_token, CHUNK_QOS)
        sub(DiagnosticArray, '/diagnostics', self.on_diagnostics, 100)
        self.fuzz_publishers = {}
        self.kills: list[tuple[float, str]] = []  # (time, node) of every kill

    # --- where a message came from ---

    def sender(self, topic: str, info) -> str | None:
        """The name of the node that published a message (by its publisher's GID), and note that it was heard."""
        gid = bytes(info['publisher_gid']['data']) if info and info.get('publisher_gid') else b''
        if gid not in self.publishers_of:  # a new publisher: its node's name, once discovery knows it
            for endpoint in self.node.get_publishers_info_by_topic(self.node.resolve_topic_name(topic)):
                if endpoint.node_name != UNKNOWN_NODE:
                    self.publishers_of[bytes(endpoint.endpoint_gid)] = endpoint.node_name
        name = self.publishers_of.get(gid)
        if name is not None:
            self.heard[name] = time.monotonic()
        return name

    # --- callbacks ---

    def on_log(self, msg):
        if msg.name in FAULT_NODES and msg.msg.startswith(f'{STARTUP_LINES[msg.name]}:'):
            self.started[msg.name] = time.monotonic()

    def on_joint_state(self, msg, info):
        if self.sender('joint_states', info) == FUZZ_NODE:  # the robot (sim_robot) is the only other
            return
        position, _ = joint_state_in_order(msg.name, msg.position, msg.velocity, self.profile.joint_names)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.joint_states.append((stamp, position))
        del self.joint_states[:-200]
        while self.unchecked and self.unchecked[0][0] < stamp:  # every state stamped before it is in
            self.check(*self.unchecked.pop(0))

    def on_trajectory(self, msg, info):
        if self.sender(f'{self.profile.controller_name}/joint_trajectory', info) == FUZZ_NODE:  # else the arbiter
            return
        received = time.monotonic()
        points = [list(p.positions) for p in msg.points]
        if points:
            last = msg.points[-1].time_from_start
            self.trajectories.append((received, last.sec + 1e-9 * last.nanosec))
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.unchecked.append((stamp, list(msg.joint_names), points, received))

    def check(self, stamp: int, joint_names: list, points: list, received: float):
        try:
            points = np.array(points, dtype=float)
        except ValueError:  # ragged
            points = np.full((1, 1), np.nan)
        fresh = stamp - int(2e9 * self.profile.dt)  # older, and the watcher missed states: the start is not checked
        measured = [(s, p) for s, p in self.joint_states if fresh <= s <= stamp][::-1][:2]
        # The observation the arbiter decided it on: that of the executed chunk it published next.
        decided = next((obs for t, obs in self.executed if t >= received), None)
        context = {'measured_age_s': round((stamp - measured[0][0]) * 1e-9, 3) if measured else None,
                   'decided_on_observation_age_s': round((stamp - decided) * 1e-9, 3) if decided else None}
        self.checker.check(joint_names, points, [p for _, p in measured], context)

    def on_executed(self, msg, info):
        from rlt_interfaces.msg import ActionChunk
        if self.sender('rlt/executed_chunk', info) != 'arbiter':
            return
        chunk = (time.monotonic(), msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        self.executed.append(chunk)
        del self.executed[:-100]
        if msg.source == ActionChunk.SOURCE_VLA:
            self.vla_chunks.append(chunk)

    def on_episode_stats(self, msg, info):
        if self.sender('rlt/episode_stats', info) != 'arbiter':
            return
        stats = json.loads(msg.data)
        if any(e['episode_id'] == stats['episode_id'] for e in self.episodes[-100:]):
            return  # the latched history again, from a restarted arbiter or a re-match
        self.episodes.append({**stats, 'section': self.section, 'received_t': time.monotonic()})

    def on_learner_stats(self, msg, info):
        if self.sender('rlt/learner_stats', info) == 'learner':
            self.learner_stats.append(json.loads(msg.data))

    def on_weights(self, msg, info):
        if self.sender('rlt/actor_weights', info) == 'learner':
            self.weights_versions.append(msg.version)
            if self.first_weights_time is None:
                self.first_weights_time = time.monotonic()

    def on_actor_version(self, msg, info):
        if self.sender('rlt/actor_version', info) == 'actor':
            self.actor_versions.append(msg.data)

    def on_token(self, msg, info):
        if self.sender('rlt/rl_token', info) == 'vla_server':
            self.token_dim = len(msg.data)

    def on_diagnostics(self, msg, info):
        """Each node's refusal counts per topic; a restarted node counts from zero, so the counts of its
        earlier processes are added."""
        for status in msg.status:
            node = status.hardware_id or status.name.split(':')[0]
            for kv in status.values:
                key = (node, kv.key)
                count = int(kv.value.split()[0])
                last = self._last_refusals.get(key, 0)
                self.refusals[key] = self.refusals.get(key, 0) + (count - last if count >= last else count)
                self._last_refusals[key] = count

    def forget_process(self, node: str):
        """A process of `node` was restarted: its refusal counts start again from zero."""
        for key in list(self._last_refusals):
            if key[0] == node:
                self._last_refusals[key] = 0

    # --- spinning ---

    def spin(self, seconds: float):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return bool(condition())

    def subscribers(self, topic: str) -> set:
        return {i.node_name for i in self.node.get_subscriptions_info_by_topic(self.node.resolve_topic_name(topic))}

    def fuzz_publisher(self, topic: str, msg_type):
        """A publisher in the fuzz node that every subscriber matches (RELIABLE, TRANSIENT_LOCAL)."""
        if topic not in self.fuzz_publishers:
            from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.fuzz_publishers[topic] = self.fuzz_node.create_publisher(msg_type, topic, qos)
        return self.fuzz_publishers[topic]

    def close_fuzz_publishers(self):
        """No fuzz message stays latched for a node that starts later."""
        for publisher in self.fuzz_publishers.values():
            self.fuzz_node.destroy_publisher(publisher)
        self.fuzz_publishers.clear()

    def close(self):
        self.executor.shutdown()
        self.fuzz_node.destroy_node()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


# --- the sections ---

def back(watcher: Watcher, node: str, since: float) -> bool:
    """Whether a restarted node is back: it logged the last line of its start-up (on /rosout) after `since`."""
    return watcher.started.get(node, 0.0) > since


def fault_injection(args, procs: Processes, watcher: Watcher, rng: random.Random) -> dict:
    order = [node for node in FAULT_NODES for _ in range(args.kills)]
    rng.shuffle(order)
    kills = defaultdict(list)
    for k, node in enumerate(order):
        watcher.spin(rng.uniform(*args.kill_wait_s))
        kill_t, kill_wall_ns = time.monotonic(), time.time_ns()
        procs.kill(node)
        watcher.spin(rng.uniform(*args.restart_delay_s))
        restart_t = time.monotonic()
        procs.start(node)
        watcher.forget_process(node)
        ok = watcher.spin_until(lambda node=node, t=restart_t: back(watcher, node, t), args.restart_timeout_s)
        kills[node].append({'kill_t': kill_t, 'kill_wall_ns': kill_wall_ns, 'restart_t': restart_t,
                            'restart_s': time.monotonic() - restart_t if ok else None})
        print(f'reliability: kill {k + 1}/{len(order)}: {node}, back after '
              f'{kills[node][-1]["restart_s"] or math.inf:.1f} s', file=sys.stderr, flush=True)
    watcher.spin(5.0)  # the commands after the last kill
    watcher.kills = [(r['kill_t'], node) for node, records in kills.items() for r in records]
    out = {}
    for node, records in kills.items():
        recovery = [recovery_time(r['kill_t'], r['kill_wall_ns'], watcher.trajectories, watcher.vla_chunks,
                                  watcher.profile.dt) for r in records]
        restart = [r['restart_s'] for r in records if r['restart_s'] is not None]
        finite = [r for r in recovery if math.isfinite(r)]
        out[node] = {'kills': len(records),
                     'recovery_s_median': float(np.median(finite)) if finite else None,
                     'recovery_s_max': max(finite) if finite else None,
                     'not_recovered': len(recovery) - len(finite),
                     'restart_s_median': float(np.median(restart)) if restart else None,
                     'restart_s_max': max(restart) if restart else None,
                     'not_back': len(records) - len(restart)}
    return out


def fuzz(args, procs: Processes, watcher: Watcher) -> dict:
    optional = {}
    for topic, type_name in (('rlt/emergency_stop', 'std_msgs/Bool'),
                             ('rlt/transitions_ack', 'rlt_interfaces/TransitionAck')):
        try:
            import importlib
            package, name = type_name.split('/')
            getattr(importlib.import_module(f'{package}.msg'), name)
        except (ImportError, AttributeError):
            optional[topic] = f'{type_name} not importable'
            continue
        if not watcher.subscribers(topic):
            optional[topic] = 'no subscriber'
    present = [t for t in ('rlt/emergency_stop', 'rlt/transitions_ack') if t not in optional]
    fuzzer = FuzzMessages(watcher.profile, watcher.token_dim or 64, seed=args.seed, optional_topics=present)
    before = dict(watcher.refusals)
    sent = defaultdict(Counter)
    crashes = []
    start = time.monotonic()
    for k, item in enumerate(fuzzer.messages(args.fuzz_messages)):
        watcher.fuzz_publisher(item.topic, type(item.msg)).publish(item.msg)
        sent[item.topic][item.kind] += 1
        due = start + (k + 1) / args.fuzz_rate
        watcher.executor.spin_once(timeout_sec=0.0)
        while time.monotonic() < due:
            watcher.executor.spin_once(timeout_sec=max(0.0, due - time.monotonic()))
        if k % 200 == 0:
            for node, code in procs.exited().items():
                crashes.append({'node': node, 'exit_code': code, 'after_messages': k + 1,
                                'error': procs.last_error(node)})
                print(f'reliability: {node} exited ({code}) under fuzz; restarted', file=sys.stderr, flush=True)
                procs.start(node)
                watcher.forget_process(node)
    watcher.close_fuzz_publishers()
    watcher.spin(3.0)  # the last refusal counts (/diagnostics once a second)
    for node, code in procs.exited().items():
        crashes.append({'node': node, 'exit_code': code, 'after_messages': args.fuzz_messages,
                        'error': procs.last_error(node)})
        procs.start(node)
    rejections = defaultdict(dict)
    for (node, topic), count in sorted(watcher.refusals.items()):
        if count - before.get((node, topic), 0) > 0:
            rejections[node][topic] = count - before.get((node, topic), 0)
    return {'messages': sum(sum(c.values()) for c in sent.values()), 'seconds': time.monotonic() - start,
            'sent': {topic: dict(kinds) for topic, kinds in sent.items()}, 'skipped_topics': optional,
            'crashes': len(crashes), 'crashed': crashes, 'rejections': dict(rejections)}


def soak(args, procs: Processes, watcher: Watcher, series_file: Path) -> dict:
    samples = defaultdict(list)  # node -> [(seconds since start, MB)]
    start = time.monotonic()
    exits = []
    while time.monotonic() - start < 60 * args.soak_min:
        for name in procs.procs:
            mb = procs.rss_mb(name)
            if mb is not None:
                samples[name].append((time.monotonic() - start, mb))
        for node, code in procs.exited().items():
            exits.append({'node': node, 'exit_code': code, 'error': procs.last_error(node)})
            procs.start(node)
            samples[node].clear()
        watcher.spin(args.rss_period_s)
    # Memory from a minute after learning began (the first weights the learner published: its optimiser state,
    # the actor's first weights) or after the soak began, whichever is later.
    learning = watcher.first_weights_time - start if watcher.first_weights_time is not None else 0.0
    rss = {}
    for name, series in samples.items():
        after = [(t, mb) for t, mb in series if t >= max(learning, 0.0) + 60.0] or series
        if after:
            middle = next(mb for t, mb in after if t >= (after[0][0] + after[-1][0]) / 2)
            rss[name] = {'rss_mb_start': round(after[0][1], 1), 'rss_mb_end': round(after[-1][1], 1),
                         'growth_pct': round(100.0 * (after[-1][1] - after[0][1]) / after[0][1], 2),
                         'growth_pct_second_half': round(100.0 * (after[-1][1] - middle) / middle, 2)}
    with open(series_file, 'w') as f:  # the whole series: a plateau or a slope
        f.write('node,seconds,rss_mb\n')
        f.writelines(f'{name},{t:.1f},{mb:.1f}\n' for name, series in samples.items() for t, mb in series)
    episodes = [e for e in watcher.episodes if e['section'] == 'soak']
    return {'minutes': args.soak_min, 'rss': rss, 'episodes': len(episodes),
            'success_rate': sum(e['success'] for e in episodes) / len(episodes) if episodes else None,
            'hold_steps': sum(e['steps_by_source']['hold'] for e in episodes), 'exits': exits}


def learner_figures(watcher: Watcher) -> dict:
    stats = watcher.learner_stats
    resumed = [s for s in stats if s.get('weights_version') or s.get('checkpoint_updates')]
    regressions = {
        'published_weights_versions': monotone_regressions(watcher.weights_versions),
        'actor_versions': monotone_regressions(watcher.actor_versions),
        'reported_weights_version': monotone_regressions([s['weights_version'] for s in resumed
                                                          if s['weights_version']]),
        'reported_checkpoint_updates': monotone_regressions([s['checkpoint_updates'] for s in resumed
                                                             if s['checkpoint_updates']]),
    }
    below_checkpoint, redone, checkpointed, highest = 0, 0, 0, 0
    for s in stats:
        if s.get('updates'):
            below_checkpoint += s['updates'] < checkpointed
            if s['updates'] < highest:  # a restarted learner, resumed from its last checkpoint
                redone += highest - s['updates']
                highest = s['updates']
            highest = max(highest, s['updates'])
        checkpointed = max(checkpointed, s.get('checkpoint_updates', 0))
    regressions['updates_below_checkpoint'] = below_checkpoint
    last = stats[-1] if stats else {}
    return {'learner_weights_regressed': any(regressions.values()), 'regressions': regressions,
            'learner_updates_redone': redone, 'weights_published': len(set(watcher.weights_versions)),
            'last_updates': last.get('updates'), 'last_weights_version': last.get('weights_version')}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='benchmark_reliability', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--kills', type=int, default=10, help='SIGKILLs per node (0: no fault injection)')
    parser.add_argument('--fuzz-messages', type=int, default=10_000, help='malformed messages (0: no fuzz)')
    parser.add_argument('--fuzz-rate', type=float, default=100.0, help='malformed messages per second')
    parser.add_argument('--soak-min', type=float, default=10.0, help='minutes of soak (0: none)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the kill order, moments and fuzz')
    parser.add_argument('--kill-wait-s', type=float, nargs=2, default=(2.0, 8.0), metavar=('MIN', 'MAX'),
                        help='a kill comes this long (uniform) after the node before it was back')
    parser.add_argument('--restart-delay-s', type=float, nargs=2, default=(0.5, 2.0), metavar=('MIN', 'MAX'),
                        help='a killed node is started again this long (uniform) after its kill')
    parser.add_argument('--restart-timeout-s', type=float, default=180.0,
                        help='how long to wait for a restarted node to be back')
    parser.add_argument('--rss-period-s', type=float, default=5.0, help='seconds between memory samples')
    parser.add_argument('--warmup-s', type=float, default=30.0,
                        help='seconds of the running graph after its first episode, before the sections')
    parser.add_argument('--output', default='', help='output folder (default: runs/reliability-<timestamp>)')
    parser.add_argument('--set', action='append', default=[], metavar='NODE.PARAM=VALUE',
                        help='override one node parameter (repeatable), e.g. arbiter.warmup_episodes=5')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    embedded.sigint_at_default()
    from rlt_core.control.profile import RobotProfile
    out = Path(args.output or f'runs/reliability-{time.strftime("%Y%m%d-%H%M%S")}').resolve()
    (out / 'logs').mkdir(parents=True, exist_ok=True)
    overrides = embedded.merge({'learner': {'replay_dir': str(out / 'replay')}}, embedded.parse_set(args.set))
    specs = graph.nodes('sim', overrides)
    profile = RobotProfile.load(overrides.get('arbiter', {}).get('robot_profile', ''))
    max_target_lead = overrides.get('arbiter', {}).get('max_target_lead', 0.01)
    env = embedded.ros_environment(private_domain=True)
    rng = random.Random(args.seed)
    procs = Processes(embedded.commands(specs, out / 'params' / 'overrides.yaml'), out / 'logs', env)
    result = {'command': 'benchmark_reliability ' + ' '.join(argv if argv is not None else sys.argv[1:]),
              'machine': machine(), 'robot_profile': profile.name, 'output': str(out),
              'ros_domain_id': env['ROS_DOMAIN_ID']}
    watcher, interrupted, start = None, False, time.monotonic()
    try:
        watcher = Watcher(profile, max_target_lead)
        procs.start_all()
        print(f'reliability: {len(procs.procs)} nodes started; logs in {out / "logs"}', file=sys.stderr, flush=True)
        if not watcher.spin_until(lambda: watcher.episodes, 300.0):
            raise RuntimeError(f'no episode within 300 s; see {out / "logs"}')
        watcher.spin(args.warmup_s)
        early = procs.exited()
        if early:
            raise RuntimeError(f'nodes exited before the sections: {early}; see {out / "logs"}')
        if args.kills:
            watcher.section = watcher.checker.section = 'fault_injection'
            result['fault_injection'] = fault_injection(args, procs, watcher, rng)
        if args.fuzz_messages:
            watcher.section = watcher.checker.section = 'fuzz'
            result['fuzz'] = fuzz(args, procs, watcher)
        if args.soak_min:
            watcher.section = watcher.checker.section = 'soak'
            result['soak'] = soak(args, procs, watcher, out / 'soak_rss.csv')
        watcher.section = watcher.checker.section = 'end'
        recorded = sum(e['transitions'] for e in watcher.episodes)
        watcher.spin_until(lambda: watcher.learner_stats and watcher.learner_stats[-1].get('transitions', 0)
                           >= recorded, 30.0)
    except KeyboardInterrupt:
        interrupted = True
        print('reliability: interrupted; stopping the graph', file=sys.stderr)
    finally:
        procs.stop()
        if watcher is not None:
            watcher.close()
    episodes = watcher.episodes if watcher else []
    lost, lost_by_episode = transitions_lost(episodes, out / 'replay')
    if 'fault_injection' in result:  # each loss goes to the last kill before its episode was reported
        for episode in episodes:
            kill = max(((t, node) for t, node in watcher.kills if t < episode['received_t']), default=None)
            if kill and episode['section'] == 'fault_injection':
                node = result['fault_injection'][kill[1]]
                node['transitions_lost'] = node.get('transitions_lost', 0) + lost_by_episode.get(
                    episode['episode_id'], 0)
    result.update({
        'interrupted': interrupted, 'wall_minutes': round((time.monotonic() - start) / 60, 1),
        'commands_checked': watcher.checker.checked if watcher else 0,
        'commands_outside_limits': watcher.checker.outside_limits if watcher else None,
        'commands_start_unchecked': watcher.checker.start_unchecked if watcher else None,
        'violations': dict(watcher.checker.violations) if watcher else {},
        'violation_examples': watcher.checker.examples if watcher else [],
        'episodes': len(episodes), 'transitions_recorded': sum(e['transitions'] for e in episodes),
        'transitions_lost': lost,
        'transitions_lost_by_section': {section: sum(lost_by_episode.get(e['episode_id'], 0) for e in episodes
                                                     if e['section'] == section)
                                        for section in sorted({e['section'] for e in episodes})},
        'transitions_lost_by_episode': lost_by_episode,
        **(learner_figures(watcher) if watcher else {}),
    })
    text = json.dumps(result, indent=1, default=str)
    (out / 'reliability.json').write_text(text)
    print(text)
    return 1 if interrupted else 0


if __name__ == '__main__':
    sys.exit(main())
