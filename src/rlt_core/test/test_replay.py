import numpy as np
import pytest
import torch

from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_DEMO, SOURCE_HUMAN, SOURCE_VLA, ChunkTransition, ReplayBuffer
from rlt_core.rl.transitions import TransitionBuilder


def _t(i, source=SOURCE_ACTOR, n=2):
    return ChunkTransition(state=np.full(3, i, np.float32), executed_chunk=np.full((2, 1), i + 0.5, np.float32),
                      reference_chunk=np.full((2, 1), -1.0, np.float32), rewards=np.ones(n, np.float32),
                      next_state=np.full(3, i + 1, np.float32),
                      next_reference_chunk=np.zeros((2, 1), np.float32), done=False, source=source,
                      episode_id=7)


def test_intervention_replaces_reference_and_is_mixed_into_batches():
    rb = ReplayBuffer(3, 2, 1, capacity=100, intervention_fraction=0.25)
    for i in range(40):
        rb.add(_t(i, SOURCE_ACTOR))
    rb.add(_t(100, SOURCE_HUMAN))
    assert rb.interventions.size == 1
    torch.testing.assert_close(rb.interventions.ref[0], torch.full((2, 1), 100.5))
    batch = rb.sample(64, torch.Generator().manual_seed(0))
    assert (batch['x'][:, 0] == 100).sum() >= 16  # a quarter of every batch


def test_partial_chunks_are_zero_padded_rewards():
    rb = ReplayBuffer(3, 2, 1)
    rb.add(_t(0, n=1))
    assert rb.online.n[0] == 1 and rb.online.r[0].tolist() == [1.0, 0.0]


def test_non_finite_transitions_are_refused():
    rb = ReplayBuffer(3, 2, 1)
    t = _t(0)
    t.state[0] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        rb.add(t)


def test_persistence_survives_a_crash_mid_record(tmp_path):
    rb = ReplayBuffer(3, 2, 1, path=tmp_path)
    for i in range(5):
        rb.add(_t(i))
    rb._file.write(b'\x01\x02\x03')  # a record cut short by a crash
    rb._file.flush()
    again = ReplayBuffer(3, 2, 1, path=tmp_path)
    assert len(again) == 5
    assert again.online.x[:5, 0].tolist() == [0, 1, 2, 3, 4]
    again.add(_t(5))
    again.close()
    assert len(ReplayBuffer(3, 2, 1, path=tmp_path)) == 6
    with pytest.raises(ValueError, match='another layout'):
        ReplayBuffer(4, 2, 1, path=tmp_path)


def test_corrupt_records_on_disk_are_skipped_when_reloaded(tmp_path):
    """A record altered on disk (NaN in its state, an impossible source, one flipped bit of a finite value) is not
    learned from after a restart: its checksum fails."""
    rb = ReplayBuffer(3, 2, 1, path=tmp_path)
    for i in range(5):
        rb.add(_t(i))
    rb.close()
    records = np.fromfile(tmp_path / 'transitions.bin', rb.dtype)
    records['state'][1, 0] = np.nan
    records['source'][2] = 9
    raw = bytearray(records.tobytes())
    raw[3 * rb.dtype.itemsize + rb.dtype.fields['executed_chunk'][1]] ^= 0x01  # still a finite float
    (tmp_path / 'transitions.bin').write_bytes(bytes(raw))
    again = ReplayBuffer(3, 2, 1, path=tmp_path)
    assert len(again) == 2 and again.skipped_on_load == 3
    assert again.online.x[:2, 0].tolist() == [0, 4]
    prior = ReplayBuffer(3, 2, 1)
    assert prior.load_prior(tmp_path) == 2 and prior.skipped_on_load == 3
    fixed = records[:1].copy()
    fixed['state'][0, 0] = 9.0  # a plausible value with a stale checksum
    assert 'checksum' in rb.record_problem(fixed[0])


def test_each_writer_s_last_sequence_survives_a_restart(tmp_path):
    rb = ReplayBuffer(3, 2, 1, path=tmp_path)
    for seq in (1, 2, 3):
        rb.add(_t(seq), writer=11, sequence=seq)
    rb.add(_t(0), writer=12, sequence=7)
    rb.add(_t(0))  # in process: no writer
    assert rb.last_sequence == {11: 3, 12: 7}
    rb.close()
    again = ReplayBuffer(3, 2, 1, path=tmp_path)
    assert again.last_sequence == {11: 3, 12: 7} and len(again) == 5


def _run_episode(builder, T, critical_from=0, human_at=(), terminated=True):
    out = []
    for t in range(T):
        obs = builder.needs_observation(t)
        out += builder.record(action=[float(t)], reward=float(t == T - 1), critical=t >= critical_from,
                              source=SOURCE_HUMAN if t in human_at else SOURCE_VLA,
                              x=[float(t)] if obs else None, ref=[[float(-t)]] * 4 if obs else None)
    return out + builder.finish([float(T)], [[0.0]] * 4, terminated)


def test_stride_two_windows_by_hand():
    builder = TransitionBuilder(chunk_len=4, stride=2)
    out = _run_episode(builder, T=9, critical_from=2)
    # windows start at observed critical steps 2, 4, 6, 8
    assert [t.state[0] for t in out] == [2, 4, 6, 8]
    assert [len(t.rewards) for t in out] == [4, 4, 3, 1]
    assert out[0].executed_chunk[:, 0].tolist() == [2, 3, 4, 5] and out[0].next_state[0] == 6
    assert out[2].executed_chunk[:, 0].tolist() == [6, 7, 8, 0]  # zero-padded past the end
    assert [t.done for t in out] == [False, False, True, True]
    assert out[0].reference_chunk[0, 0] == -2


def test_stride_window_with_human_step_is_an_intervention():
    builder = TransitionBuilder(chunk_len=4, stride=2)
    out = _run_episode(builder, T=8, human_at=(5,), terminated=False)
    flagged = [t for t in out if t.intervention]
    assert [t.state[0] for t in flagged] == [2, 4]
    np.testing.assert_array_equal(flagged[0].reference_chunk, flagged[0].executed_chunk)
    assert out[-1].truncated and not out[-1].done


def test_builder_requires_observations_on_the_stride():
    builder = TransitionBuilder(chunk_len=4, stride=2)
    with pytest.raises(ValueError, match='required'):
        builder.record([0.0], 0.0, SOURCE_VLA, True)
    builder.record([0.0], 0.0, SOURCE_VLA, False)  # outside the critical phase no state is needed
    with pytest.raises(ValueError):
        TransitionBuilder(chunk_len=5, stride=2)


def test_prior_data_is_read_only_and_mixed_into_batches(tmp_path):
    prior = ReplayBuffer(3, 2, 1, path=tmp_path / 'demos')
    for i in range(10):
        prior.add(_t(200 + i, SOURCE_DEMO))
    prior.close()
    rb = ReplayBuffer(3, 2, 1, path=tmp_path / 'online', prior_fraction=0.5)
    assert rb.load_prior(tmp_path / 'demos') == 10
    batch = rb.sample(32, torch.Generator().manual_seed(0))  # no online data yet: all prior
    assert (batch['x'][:, 0] >= 200).all()
    for i in range(20):
        rb.add(_t(i))
    batch = rb.sample(32, torch.Generator().manual_seed(0))
    assert (batch['x'][:, 0] >= 200).sum() == 16 and len(rb) == 20
    rb.close()
    assert len(ReplayBuffer(3, 2, 1, path=tmp_path / 'online')) == 20  # prior data never enters the online file
    assert (tmp_path / 'demos' / 'transitions.bin').stat().st_size == 10 * rb.dtype.itemsize


def test_prior_data_of_another_layout_is_refused(tmp_path):
    ReplayBuffer(4, 2, 1, path=tmp_path / 'demos').close()
    with pytest.raises(ValueError, match='another layout'):
        ReplayBuffer(3, 2, 1).load_prior(tmp_path / 'demos')
    with pytest.raises(FileNotFoundError):
        ReplayBuffer(3, 2, 1).load_prior(tmp_path / 'nothing')
    with pytest.raises(ValueError, match='sum'):
        ReplayBuffer(3, 2, 1, intervention_fraction=0.5, prior_fraction=0.6)
