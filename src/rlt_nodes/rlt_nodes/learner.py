"""Learner: the asynchronous chunked-TD3 learner behind the replay topic.

Every transition from rlt/transitions is appended, crash-safely, to a replay buffer on disk
(`rlt_core.rl.replay.ReplayBuffer(path=replay_dir)`; a restarted learner reloads it), once and in its
sender's order: a numbered transition (Transition.msg) already stored is not stored again, one that skips a
number is refused (its sender sends it again), and once a transition is on disk (written and fsync'ed) a
rlt_interfaces/TransitionAck on rlt/transitions_ack tells its sender it may forget it and those before. Once
`min_transitions` are in, an update thread makes `rlt_core.rl.td3.RLTLearner` updates as fast as it
may while keeping updates <= utd_ratio * learning transitions: those recorded after the arbiter's
warmup episodes (the in-process loop's schedule; a restarted learner also counts all it reloads,
and catches up on them). The executor's thread only receives and reports, so transitions keep
arriving while an update runs, the first one included (it waits for the compilation; a blocked
executor would let the transitions topic's queue overflow). Every `publish_every` updates
publishes the actor's weights on rlt/actor_weights (ActorWeights: safetensors + SHA-256,
RELIABLE + TRANSIENT_LOCAL depth 1, version strictly increasing, also across restarts: it never
falls below the wall-clock milliseconds of publication). Statistics (updates, transitions, losses,
weights version, checkpoint, disk) go to rlt/learner_stats as a JSON std_msgs/String.

Checkpoints (`rlt_core.rl.checkpoint`): every `checkpoint_every` updates and when it stops, the learner
writes its networks, optimisers and counters (updates, weights version, learning transitions) atomically
to `replay_dir/learner.pt` (the one before kept as `learner.prev.pt`, the fallback when the newest is
corrupt). A restarted learner resumes the newest whole one and, before any update, re-publishes its actor
with a version greater than every one published before: the actor never takes a fresh policy over a trained
one. A checkpoint is written before the weights of the same update are published (and they are not, if it
fails); with `checkpoint_every` equal to `publish_every` (the default) every published actor is on disk first,
so even after a crash the re-published actor is the last one published. A larger `checkpoint_every` writes
less often, and after a crash the re-published actor may be up to that many updates behind.
A checkpoint of another learner (robot profile, state_dim, C, A, widths) is refused with a logged error saying
what to do, and left as it is; the learner then takes no transitions. When a write fails (a full disk),
updates and checkpoints pause, numbered transitions are refused unacknowledged (their senders keep them and send
them again), unnumbered ones wait in memory (at most `max_unsaved_transitions`, the oldest dropped and counted),
and every `disk_retry_s` the learner tries again; once the disk takes them it resumes and acknowledges.
Refused transitions are counted on /diagnostics (`rlt_nodes.rejections`).

Hyper-parameters default to those of `rlt_train.train_rlt.RLTTrainConfig`. The actor's chunk length, action
dimension, scale and output range come from the robot profile (`robot_profile`), and its weights carry the
profile's hash; transitions of another shape are refused.
"""

import array
import json
import os
import threading
import time
from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import String

from rlt_core.control.profile import RobotProfile
from rlt_core.rl.actor import ActorConfig, pack_weights
from rlt_core.rl.checkpoint import CheckpointMismatchError, Checkpoints, LearnerDisk
from rlt_core.rl.schedule import updates_allowed
from rlt_core.rl.td3 import RLTLearner, TD3Config
from rlt_core.runtime import setup_torch
from rlt_interfaces.msg import ActorWeights, Transition, TransitionAck
from rlt_nodes.conversions import msg_to_transition
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import ACKS_QOS, LATCHED_QOS, TRANSITIONS_QOS
from rlt_nodes.rejections import Rejections
from rlt_nodes.spin import spin_node


class LearnerNode(Node):
    def __init__(self):
        super().__init__('learner')
        p = self.declare_parameter
        self.profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        ros_home = os.environ.get('ROS_HOME', os.path.expanduser('~/.ros'))
        self.replay_dir = p('replay_dir', '', desc(f'replay log folder (empty: {ros_home}/rlt/replay)')).value \
            or os.path.join(ros_home, 'rlt', 'replay')
        d = TD3Config  # the library's defaults
        self.utd_ratio = p('utd_ratio', d.utd_ratio, desc('G: learner updates per transition')).value
        self.batch_size = p('batch_size', d.batch_size, desc('transitions per update')).value
        self.min_transitions = p('min_transitions', 256, desc('transitions before the first update')).value
        self.publish_every = p('publish_every', 50, desc('updates between weight publications')).value
        self.checkpoint_every = p('checkpoint_every', 50, desc(
            'updates between checkpoints in replay_dir (learner.pt; also written when the learner stops; '
            '0: only then)')).value
        self.max_unsaved = p('max_unsaved_transitions', 100_000, desc(
            'transitions kept in memory while the disk refuses writes; the oldest beyond are dropped')).value
        self.disk_retry_s = p('disk_retry_s', 5.0, desc('seconds between tries of a write that failed')).value
        self.td3 = TD3Config(
            gamma=p('gamma', d.gamma, desc('discount per control step')).value,
            beta=p('beta', d.beta, desc('weight of ||a - ref_chunk||^2 in the actor loss')).value,
            ref_dropout=p('ref_dropout', d.ref_dropout,
                          desc('fraction of actor samples with a zeroed reference')).value,
            actor_lr=p('actor_lr', d.actor_lr, desc('actor learning rate')).value,
            critic_lr=p('critic_lr', d.critic_lr, desc('critic learning rate')).value,
            critic_hidden=tuple(p('hidden', list(d.critic_hidden), desc('hidden widths of actor and critics')).value),
            critic_layer_norm=p('critic_layer_norm', d.critic_layer_norm,
                                desc('LayerNorm after each critic hidden layer')).value,
            target_range=tuple(p('target_range', list(d.target_range), desc(
                'returns an episode can earn (sparse +1 on success); TD targets are clipped to it')).value),
            critic_only_updates=p('critic_only_updates', d.critic_only_updates, desc(
                'updates that train only the critics before the actor learns (it acts as it began meanwhile)')).value,
            batch_size=self.batch_size, utd_ratio=self.utd_ratio)
        self.actor_std = p('actor_std', ActorConfig.std,
                           desc('fixed std of the actor Gaussian (normalised units)')).value
        self.actor_start_at_reference = p('actor_start_at_reference', ActorConfig.start_at_reference, desc(
            'the actor is the reference plus a correction that starts at zero (it acts as the VLA until it '
            'learns)')).value
        self.seed = p('seed', 0, desc('seed of the networks and sampling')).value
        self.threads = p('threads', 1, desc('torch threads')).value
        self.device = p('device', 'cpu', desc("torch device: 'cpu', or 'cuda' on a GPU workstation")).value
        self.compile = p('compile', True, desc("compile the update with TorchInductor (a slow first update)")).value
        setup_torch(self.threads, self.seed)
        self.learner = self.replay = self.disk = None
        self.setup_error = None  # why the learner refuses to start (another learner's checkpoint)
        self.version, self.received, self.refused, self.learning = 0, 0, 0, 0
        self.duplicates = 0  # numbered transitions received again (already stored)
        self.checkpoint_updates = 0  # updates of the last checkpoint written or resumed
        self.metrics, self.failure = {}, None
        self.lock = threading.Lock()  # the replay and its counters, shared by the executor and the update thread
        self.stopping = threading.Event()
        self.updater = threading.Thread(target=self.update_loop, name='learner-updates', daemon=True)
        self.weights_pub = self.create_publisher(ActorWeights, 'rlt/actor_weights', LATCHED_QOS)
        self.stats_pub = self.create_publisher(String, 'rlt/learner_stats', 10)
        self.ack_pub = self.create_publisher(TransitionAck, 'rlt/transitions_ack', ACKS_QOS)
        self.rejections = Rejections(self)
        self.create_subscription(Transition, 'rlt/transitions', self.on_transition, TRANSITIONS_QOS)
        self.create_timer(1.0, self.publish_stats)
        self.get_logger().info(f'learner: robot profile {self.profile.name} ({self.profile.hash}), '
                               f'replay in {self.replay_dir}, G={self.utd_ratio}, batch {self.batch_size}, '
                               f'min {self.min_transitions} transitions, on {self.device}')
        self.updater.start()

    def _setup(self, t):
        """The replay, the learner and its checkpoint, on the first transition (its state_dim); the caller holds
        the lock. Raises ValueError (CheckpointMismatchError) when replay_dir holds another learner's."""
        from rlt_core.rl.replay import ReplayBuffer
        chunk_len, action_dim = self.profile.actor_chunk_len, self.profile.action_dim
        checkpoints = Checkpoints(self.replay_dir, {
            'state_dim': int(t.state.size), 'chunk_len': chunk_len, 'action_dim': action_dim,
            'profile_hash': self.profile.hash, 'hidden': list(self.td3.critic_hidden),
            'critic_layer_norm': bool(self.td3.critic_layer_norm)})
        state = checkpoints.load()  # CheckpointMismatchError: refused before anything is written
        for error in checkpoints.errors:
            self.get_logger().error(f'{error}; falling back to the previous checkpoint')
        replay = ReplayBuffer(t.state.size, chunk_len, action_dim, path=Path(self.replay_dir),
                              max_unsaved=self.max_unsaved)
        # C, the action dimension, scale (max_delta) and output range (critical_max_delta) and the hash: the profile's
        learner = RLTLearner(self.profile.actor_config(t.state.size, hidden=self.td3.critic_hidden,
                                                       std=self.actor_std,
                                                       start_at_reference=self.actor_start_at_reference),
                             self.td3, seed=self.seed, device=self.device, compile=self.compile)
        self.replay, self.learner = replay, learner
        self.disk = LearnerDisk(replay, checkpoints, retry_s=self.disk_retry_s)
        self.get_logger().info(f'replay of state_dim {t.state.size}, C={chunk_len}, A={action_dim}: '
                               f'{len(replay)} transitions loaded')
        if state is None:
            self.learning = len(replay)
            return
        learner.load_state_dict(state['learner'])
        # Transitions stored after the checkpoint earn updates (their warmup flag is not stored), as a reload does.
        self.learning = state['learning'] + max(0, replay.num_added - state['transitions'])
        self.version = max(self.version, state['version'])
        self.checkpoint_updates = learner.num_updates
        self.publish_weights()  # before any update: the checkpoint's actor, newer than all published before
        self.get_logger().info(f'resumed checkpoint {checkpoints.path} of {learner.num_updates} updates; its actor '
                               f're-published as weights version {self.version}')

    def checkpoint_state(self, version: int | None = None) -> dict:
        """What a checkpoint holds (`version`: the last published, or the one about to be); called with the lock
        held, by the thread that updates (or after it)."""
        return {'learner': self.learner.state_dict(), 'version': version or self.version, 'learning': self.learning,
                'transitions': self.replay.num_added}

    def checkpoint(self, state: dict) -> bool:
        if self.disk.checkpoint(state):
            self.checkpoint_updates = state['learner']['num_updates']
            return True
        then = 'lost' if self.stopping.is_set() else f'updates paused, retried every {self.disk_retry_s} s'
        self.get_logger().error(f'checkpoint not written ({self.disk.error}): {then}')
        return False

    def on_transition(self, msg: Transition):
        writer, sequence = msg.writer_id, msg.sequence
        try:
            t = msg_to_transition(msg)
            if t.executed_chunk.shape != (self.profile.actor_chunk_len, self.profile.action_dim):
                raise ValueError(f'chunk of shape {t.executed_chunk.shape}; robot profile {self.profile.name} has '
                                 f'C={self.profile.actor_chunk_len} and {self.profile.action_dim} joints')
            with self.lock:
                if self.setup_error is not None:
                    raise self.setup_error
                if self.replay is None:
                    try:
                        self._setup(t)
                    except CheckpointMismatchError as err:
                        self.setup_error = err
                        raise
                    except OSError as err:  # tried again with the next transition
                        raise ValueError(f'replay or checkpoint in {self.replay_dir} not readable or '
                                         f'writable: {err}') from err
                if writer:
                    expected = max(self.replay.last_sequence.get(writer, 0), msg.acked_sequence) + 1
                    if sequence < expected:  # sent again: stored before
                        self.duplicates += 1
                        self.acknowledge(writer)
                        return
                    if sequence > expected:
                        raise ValueError(f'sequence {sequence} of sender {writer:x} skips {expected} (it is sent '
                                         'again)')
                if self.disk.paused and writer:
                    raise ValueError(f'the disk refuses writes ({self.disk.error}): not stored, not acknowledged')
                self.disk.add(t, writer, sequence)
                self.learning += not t.warmup
                if self.disk.paused:
                    self.get_logger().error(f'replay not written ({self.disk.error}): updates paused, numbered '
                                            'transitions refused (their senders keep them), others kept in memory; '
                                            f'writes retried every {self.disk_retry_s} s')
                elif writer:
                    self.acknowledge(writer)
        except ValueError as err:
            self.refused += 1
            if isinstance(err, CheckpointMismatchError) or isinstance(err.__cause__, OSError):
                self.get_logger().error(f'refused transition: {err}', throttle_duration_sec=10.0)
            self.rejections.refuse('rlt/transitions', err)
            return
        self.received += 1

    def acknowledge(self, writer: int):
        """Tell `writer` that all its transitions up to the last one stored are on disk (the lock held)."""
        stored = self.replay.last_sequence.get(writer)
        if stored is not None and not self.disk.paused:
            self.ack_pub.publish(TransitionAck(writer_id=writer, sequence=stored))

    def update_loop(self):
        """The update thread: sample under the lock, update outside it, publish the weights now and then."""
        setup_torch(self.threads)  # OpenMP's thread count is per calling thread
        try:
            while not self.stopping.is_set():
                with self.lock:
                    if self.disk is not None and self.disk.paused:
                        self.retry_disk()
                        budget = 0
                    else:
                        budget = 0 if self.replay is None else updates_allowed(
                            self.learner.num_updates, self.learning, len(self.replay), self.utd_ratio,
                            self.min_transitions)
                    batch = self.replay.sample(self.batch_size, self.learner.generator) if budget > 0 else None
                if batch is None:
                    self.stopping.wait(0.005)
                    continue
                self.metrics = dict(self.learner.update(self.learner.prepare(batch)))
                publish = self.learner.num_updates % self.publish_every == 0
                version = self.next_version() if publish else self.version
                if self.checkpoint_every > 0 and self.learner.num_updates % self.checkpoint_every == 0:
                    # First the checkpoint (with the version about to be published), then the weights: what was
                    # published is on disk. Weights the disk refused are not published.
                    with self.lock:
                        state = self.checkpoint_state(version)
                    publish = self.checkpoint(state) and publish  # written outside the lock: transitions go on
                if publish:
                    self.publish_weights(version)
        except Exception as err:  # noqa: BLE001 -- reported by the executor's thread, which stops the node
            self.failure = err

    def retry_disk(self):
        """Paused on a failed write: try again now and then (the lock held)."""
        checkpoint_due = self.disk.checkpoint_error is not None
        written = self.disk.retry(self.checkpoint_state)
        if written:
            if checkpoint_due:
                self.checkpoint_updates = self.learner.num_updates
            for writer in self.replay.last_sequence:
                self.acknowledge(writer)
            self.get_logger().info('the disk takes writes again: what waited is written, updates resumed')
        elif written is False:
            self.get_logger().error(f'disk still refuses writes ({self.disk.error}): {len(self.replay.unsaved)} '
                                    f'transitions wait in memory, {self.replay.dropped_unsaved} dropped',
                                    throttle_duration_sec=30.0)

    def next_version(self) -> int:
        return max(self.version + 1, time.time_ns() // 1_000_000)

    def publish_weights(self, version: int | None = None):
        self.version = version or self.next_version()
        packed = pack_weights(self.learner.actor)
        msg = ActorWeights(version=self.version, format=packed['format'], sha256=packed['sha256'],
                           config_json=packed['config_json'])
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.payload = array.array('B', packed['payload'])
        self.weights_pub.publish(msg)

    def publish_stats(self):
        if self.failure is not None:
            raise RuntimeError('the learner\'s update thread failed') from self.failure
        stats = {'updates': self.learner.num_updates if self.learner else 0,
                 'transitions': self.replay.num_added if self.replay else 0, 'learning_transitions': self.learning,
                 'received': self.received, 'refused': self.refused, 'duplicates': self.duplicates,
                 'weights_version': self.version,
                 'checkpoint_updates': self.checkpoint_updates, 'disk_paused': bool(self.disk and self.disk.paused),
                 'unsaved': len(self.replay.unsaved) if self.replay else 0,
                 'dropped_unsaved': self.replay.dropped_unsaved if self.replay else 0}
        stats.update({k: float(v) for k, v in self.metrics.items()})
        self.stats_pub.publish(String(data=json.dumps(stats)))

    def destroy_node(self):
        # An update in flight finishes first; a first update still compiling is left behind (the thread is
        # a daemon): the replay is closed either way, and the update thread takes no batch after that.
        # Then the last checkpoint, unless that update still runs.
        self.stopping.set()
        self.updater.join(timeout=5.0)
        with self.lock:
            if self.replay is not None:
                self.replay.close()
                if self.replay.unsaved:
                    self.get_logger().error(f'{len(self.replay.unsaved)} received transitions lost: the disk refused '
                                            f'them ({self.replay.write_error})')
                if not self.updater.is_alive() and self.learner.num_updates > self.checkpoint_updates:
                    self.disk.checkpoint_error = None  # one more try, whatever failed before
                    self.checkpoint(self.checkpoint_state())
                self.replay = None
        return super().destroy_node()


def main(args=None):
    spin_node(LearnerNode, args)


if __name__ == '__main__':
    main()
