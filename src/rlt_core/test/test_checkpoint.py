"""The learner's checkpoints (save, resume, fallback, refusal) and its pause on a full disk, without ROS."""

import errno
import os

import numpy as np
import pytest
import torch

from rlt_core.rl.actor import ActorConfig
from rlt_core.rl.checkpoint import CheckpointMismatchError, Checkpoints, LearnerDisk
from rlt_core.rl.replay import SOURCE_ACTOR, ChunkTransition, ReplayBuffer
from rlt_core.rl.td3 import RLTLearner, TD3Config

META = {'state_dim': 4, 'chunk_len': 2, 'action_dim': 1, 'profile_hash': 'abc', 'hidden': [8],
        'critic_layer_norm': True}


def _learner(updates=0, seed=0):
    cfg = ActorConfig(state_dim=4, chunk_len=2, action_dim=1, action_scale=(1.0,), hidden=(8,))
    learner = RLTLearner(cfg, TD3Config(critic_hidden=(8,), batch_size=4), seed=seed)
    rb = ReplayBuffer(4, 2, 1)
    for i in range(8):
        rb.add(_t(i))
    for _ in range(updates):
        learner.update(learner.prepare(rb.sample(4, learner.generator)))
    return learner


def _t(i):
    return ChunkTransition(state=np.full(4, i, np.float32), executed_chunk=np.full((2, 1), 0.1, np.float32),
                           reference_chunk=np.zeros((2, 1), np.float32), rewards=np.zeros(2, np.float32),
                           next_state=np.full(4, i + 1, np.float32), next_reference_chunk=np.zeros((2, 1), np.float32),
                           done=False, source=SOURCE_ACTOR, episode_id=i)


def _state(learner, version=7):
    return {'learner': learner.state_dict(), 'version': version, 'learning': 8, 'transitions': 8}


class FullDisk:
    """os.write as a full disk does it while `full`: part of the bytes written, then ENOSPC."""

    def __init__(self, monkeypatch):
        self.full, self.refused = False, 0
        real_write = os.write

        def write(fd, data):
            if not self.full:
                return real_write(fd, data)
            self.refused += 1
            if len(data) > 1 and self.refused % 2:  # every other time a part goes first
                return real_write(fd, bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, 'No space left on device')
        monkeypatch.setattr(os, 'write', write)


def test_a_checkpoint_resumes_networks_optimisers_and_counters(tmp_path):
    trained = _learner(updates=6)
    Checkpoints(tmp_path, META).save(_state(trained))
    fresh = _learner(seed=1)
    state = Checkpoints(tmp_path, META).load()
    fresh.load_state_dict(state['learner'])
    assert (fresh.num_updates, state['version'], state['learning']) == (6, 7, 8)
    for a, b in zip(trained.state_dict()['actor'].values(), fresh.state_dict()['actor'].values(), strict=True):
        torch.testing.assert_close(a, b)
    assert float(fresh.q_optimizer.t) == float(trained.q_optimizer.t) == 6


def test_no_checkpoint_is_none(tmp_path):
    assert Checkpoints(tmp_path / 'nothing', META).load() is None


@pytest.mark.parametrize('damage', ['truncate', 'flip', 'garbage'])
def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    ckpt = Checkpoints(tmp_path, META)
    ckpt.save(_state(_learner(), version=1))
    ckpt.save(_state(_learner(), version=2))
    data = ckpt.path.read_bytes()
    ckpt.path.write_bytes({'truncate': data[:len(data) // 2], 'garbage': b'not a checkpoint',
                           'flip': data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]}[damage])
    assert ckpt.load()['version'] == 1
    assert len(ckpt.errors) == 1 and 'corrupt' in ckpt.errors[0]
    # The corrupt one is set aside: the next save does not rotate it over the good previous one.
    assert not ckpt.path.exists() and (tmp_path / 'learner.corrupt.pt').exists()
    ckpt.save(_state(_learner(), version=3))
    assert ckpt.load()['version'] == 3
    ckpt.path.write_bytes(b'')
    assert ckpt.load()['version'] == 1


def test_both_corrupt_is_no_checkpoint_and_no_crash(tmp_path):
    (tmp_path / 'learner.pt').write_bytes(b'x' * 100)
    (tmp_path / 'learner.prev.pt').write_bytes(b'')
    ckpt = Checkpoints(tmp_path, META)
    assert ckpt.load() is None and len(ckpt.errors) == 2


def test_another_learners_checkpoint_is_refused_and_kept(tmp_path):
    Checkpoints(tmp_path, META).save(_state(_learner()))
    before = (tmp_path / 'learner.pt').read_bytes()
    with pytest.raises(CheckpointMismatchError, match=r"profile_hash: 'abc' there, 'xyz' here.*another replay_dir"):
        Checkpoints(tmp_path, {**META, 'profile_hash': 'xyz'}).load()
    assert (tmp_path / 'learner.pt').read_bytes() == before


def test_a_failed_checkpoint_write_leaves_the_old_files(tmp_path, monkeypatch):
    ckpt = Checkpoints(tmp_path, META)
    ckpt.save(_state(_learner(), version=1))
    ckpt.save(_state(_learner(), version=2))
    disk = FullDisk(monkeypatch)
    disk.full = True
    with pytest.raises(OSError, match='No space'):
        ckpt.save(_state(_learner(), version=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['learner.prev.pt', 'learner.pt']  # no temporary left
    assert ckpt.load()['version'] == 2


def test_replay_writes_wait_in_memory_while_the_disk_is_full(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    rb = ReplayBuffer(4, 2, 1, path=tmp_path, max_unsaved=100)
    for i in range(3):
        rb.add(_t(i))
    disk.full = True
    for i in range(3, 8):
        rb.add(_t(i))  # never raises: kept in memory, sampled from as usual
    assert rb.write_error.errno == errno.ENOSPC and len(rb.unsaved) == 5 and len(rb) == 8
    assert not rb.persist()  # a part written, then cut back to whole records
    assert (tmp_path / 'transitions.bin').stat().st_size == 3 * rb.dtype.itemsize
    disk.full = False
    assert rb.persist() and rb.write_error is None and not rb.unsaved
    rb.add(_t(8))
    rb.close()
    reloaded = ReplayBuffer(4, 2, 1, path=tmp_path)
    assert reloaded.online.x[:reloaded.online.size, 0].tolist() == list(range(9))


def test_unsaved_transitions_are_bounded_the_oldest_dropped_and_counted(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    rb = ReplayBuffer(4, 2, 1, path=tmp_path, max_unsaved=3)
    disk.full = True
    for i in range(5):
        rb.add(_t(i))
    assert rb.dropped_unsaved == 2 and [int(r['state'][0]) for r in rb.unsaved] == [2, 3, 4]


def test_learner_disk_pauses_on_a_full_disk_and_resumes_losing_nothing(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    now = [0.0]
    learner = _learner(updates=2)
    store = LearnerDisk(ReplayBuffer(4, 2, 1, path=tmp_path, max_unsaved=100), Checkpoints(tmp_path, META), retry_s=5.0,
                        clock=lambda: now[0])
    store.add(_t(0))
    assert store.checkpoint(_state(learner, version=1)) and not store.paused
    disk.full = True
    store.add(_t(1))
    assert store.paused and store.error.errno == errno.ENOSPC
    assert not store.checkpoint(_state(learner, version=2)) and store.paused
    assert store.retry(lambda: _state(learner, version=2)) is None  # not yet time
    now[0] = 6.0
    assert store.retry(lambda: _state(learner, version=2)) is False  # still full
    store.add(_t(2))
    disk.full = False
    now[0] = 9.0
    assert store.retry(lambda: _state(learner, version=2)) is None  # 5 s after the last try
    now[0] = 11.0
    assert store.retry(lambda: _state(learner, version=2)) is True and not store.paused
    assert store.checkpoints.load()['version'] == 2
    store.replay.close()
    assert len(ReplayBuffer(4, 2, 1, path=tmp_path)) == 3


def test_without_max_unsaved_a_failed_write_raises_and_keeps_whole_records(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    rb = ReplayBuffer(4, 2, 1, path=tmp_path)
    rb.add(_t(0))
    disk.full = True
    with pytest.raises(OSError, match='No space'):
        rb.add(_t(1))  # a part written, then cut back
    assert len(rb) == 1 and (tmp_path / 'transitions.bin').stat().st_size == rb.dtype.itemsize
    disk.full = False
    rb.add(_t(2))
    rb.close()
    assert ReplayBuffer(4, 2, 1, path=tmp_path).online.x[:2, 0].tolist() == [0, 2]
