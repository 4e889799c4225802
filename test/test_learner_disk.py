"""The learner node and its disk, in this process: on a full disk (os.write failing) updates pause, the transitions
it receives wait in memory, and once the disk takes writes again they are written and the updates resume, none
lost; another learner's checkpoint in its replay_dir is refused and left as it is."""

import errno
import os
import time

import rclpy
from conftest import replay_records
from test_learner_node import STATE, A, C, transition

from rlt_core.rl.checkpoint import Checkpoints
from rlt_nodes.learner import LearnerNode


def wait_for(condition, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


def start_learner(ros_env, **params):
    rclpy.init(args=['--ros-args', *[a for k, v in params.items() for a in ('-p', f'{k}:={v}')]],
               domain_id=int(ros_env['ROS_DOMAIN_ID']))
    return LearnerNode()  # its update thread runs; the test calls its subscription callback itself


def test_another_learners_checkpoint_is_refused_and_kept(ros_env, tmp_path):
    Checkpoints(tmp_path, {'state_dim': 99}).save({'learner': {}})
    before = (tmp_path / 'learner.pt').read_bytes()
    try:
        node = start_learner(ros_env, replay_dir=str(tmp_path), compile='false')
        try:
            node.on_transition(transition(0))
            node.on_transition(transition(1))
            assert node.refused == 2 and node.received == 0 and node.learner is None
            assert 'another replay_dir' in str(node.setup_error)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
    assert (tmp_path / 'learner.pt').read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == \
        ['learner.pt']


def test_learner_on_a_full_disk_pauses_keeps_what_it_receives_and_resumes(ros_env, tmp_path, monkeypatch):
    refused = []
    real_write = os.write

    def full_disk_write(fd, data):
        refused.append(len(data))
        raise OSError(errno.ENOSPC, 'No space left on device')

    params = {'replay_dir': str(tmp_path), 'min_transitions': 8, 'batch_size': 8, 'hidden': '[16, 16]',
              'compile': 'false', 'publish_every': 10, 'checkpoint_every': 20, 'disk_retry_s': 0.2}
    try:
        node = start_learner(ros_env, **params)
        try:
            for i in range(8):
                node.on_transition(transition(i))
            assert wait_for(lambda: node.learner.num_updates == 40 and node.checkpoint_updates == 40)
            monkeypatch.setattr(os, 'write', full_disk_write)
            for i in range(8, 16):
                node.on_transition(transition(i))  # none refused: they wait in memory
            assert node.received == 16 and node.refused == 0 and node.disk.paused
            assert len(node.replay.unsaved) == 8 and len(node.replay) == 16
            assert wait_for(lambda: len(refused) >= 3)  # the first write and two retries failed...
            assert node.learner.num_updates == 40  # ...and no update ran meanwhile (G=5 would allow 80)
            monkeypatch.setattr(os, 'write', real_write)
            assert wait_for(lambda: not node.disk.paused and node.learner.num_updates == 80)
            assert not node.replay.unsaved and node.replay.dropped_unsaved == 0
            assert replay_records(tmp_path) == 16
            assert wait_for(lambda: node.checkpoint_updates == 80)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
    assert replay_records(tmp_path) == 16


def test_with_checkpoint_every_dividing_publish_every_every_published_actor_is_on_disk(ros_env, tmp_path):
    published = []
    try:
        node = start_learner(ros_env, replay_dir=str(tmp_path), min_transitions=8, batch_size=8, hidden='[16, 16]',
                             compile='false', publish_every=10, checkpoint_every=10)
        real_publish = node.weights_pub.publish

        def publish(msg):  # what is on disk as each weights message goes out
            state = node.disk.checkpoints.load()
            published.append((msg.version, state['version'], state['learner']['num_updates'],
                              node.learner.num_updates))
            real_publish(msg)
        node.weights_pub.publish = publish
        try:
            for i in range(8):
                node.on_transition(transition(i))
            assert wait_for(lambda: len(published) == 4)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
    assert [p[2] for p in published] == [10, 20, 30, 40]
    assert all(version == on_disk and updates_on_disk == updates
               for version, on_disk, updates_on_disk, updates in published), published


def numbered(i: int, sequence: int, writer: int = 77, acked: int = 0):
    msg = transition(i)
    msg.writer_id, msg.sequence, msg.acked_sequence = writer, sequence, acked
    return msg


def test_numbered_transitions_are_stored_once_in_order_and_acknowledged_once_on_disk(ros_env, tmp_path, monkeypatch):
    acks = []
    real_write = os.write
    try:
        node = start_learner(ros_env, replay_dir=str(tmp_path), compile='false', min_transitions=1000,
                             disk_retry_s=0.1)
        node.ack_pub.publish = lambda m: acks.append((m.writer_id, m.sequence))
        try:
            for seq in (1, 2, 3):
                node.on_transition(numbered(seq, seq))
            assert acks == [(77, 1), (77, 2), (77, 3)] and replay_records(tmp_path) == 3
            node.on_transition(numbered(2, 2))  # sent again: not stored twice, acknowledged again
            node.on_transition(numbered(5, 5))  # skips 4: refused, unacknowledged (the sender sends 4 first)
            assert node.duplicates == 1 and node.refused == 1 and acks[-1] == (77, 3) and len(acks) == 4
            node.on_transition(numbered(9, 1, writer=78, acked=40))  # its sender had 40 acknowledged elsewhere
            node.on_transition(numbered(9, 41, writer=78, acked=40))
            assert acks[-1] == (78, 41) and node.duplicates == 2
            monkeypatch.setattr(os, 'write', lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'full')))
            node.on_transition(numbered(4, 4))  # the write fails: kept in memory, not acknowledged
            node.on_transition(numbered(5, 5))  # refused while the disk is full: its sender keeps it
            assert node.disk.paused and acks[-1] == (78, 41) and node.refused == 2
            monkeypatch.setattr(os, 'write', real_write)
            assert wait_for(lambda: not node.disk.paused)
            assert (77, 4) in acks and replay_records(tmp_path) == 5  # 4 written once the disk took it
            node.on_transition(numbered(5, 5))
            assert acks[-1] == (77, 5) and node.rejections.counts['rlt/transitions'] == 2
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
    from rlt_core.rl.replay import ReplayBuffer
    assert ReplayBuffer(STATE, C, A, path=tmp_path).last_sequence == {77: 5, 78: 41}
