"""Every training entry point runs end to end on a tiny budget (CleanRL-style smoke tests)."""

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from rlt_train.cli import parse_config

from rlt_core.control.profile import DEFAULT_PROFILE, Camera, RobotProfile
from rlt_core.models.rl_token import RLTokenModel
from rlt_core.models.vla.small_vla import SmallVLA
from rlt_core.rl.replay import SOURCE_DEMO, record_dtype
from rlt_core.rl.td3 import RLTLearner
from rlt_core.runtime import default_models_dir
from rlt_sim.dataset import PRIVILEGED_KEYS
from rlt_sim.record import RecordConfig, record
from rlt_train import demo_replay, readout, train_rl_token, train_rlt, train_vla


@pytest.fixture(scope='module')
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp('demos')
    record(RecordConfig(output=str(path), episodes=6, sigma_mm=1.0, progress=False))
    return path


def short_episodes(tmp_path, max_steps: int) -> str:
    """The default robot profile with shorter episodes, as a profile file."""
    return str(replace(RobotProfile.load(), max_steps=max_steps).save(tmp_path / f'short_{max_steps}.yaml'))


@pytest.fixture(scope='module')
def models(demos, tmp_path_factory):
    root = tmp_path_factory.mktemp('models')
    train_vla.main(['--demos', str(demos), '--output', str(root / 'vla'), '--steps', '4', '--batch-size', '8',
              '--val-episodes', '1', '--d-model', '32', '--n-layers', '1', '--stem-channels', '8', '16', '32', '64',
              '--eval-episodes', '1', '--threads', '1'])
    train_rl_token.main(['--vla', str(root / 'vla'), '--demos', str(demos), '--output', str(root / 'rl_token'),
                '--steps', '4', '--batch-size', '8', '--val-episodes', '1', '--token-dim', '8', '--d-model', '16',
                '--threads', '1', '--cache-dir', str(root / 'cache')])
    return root


def test_vla_and_token_entry_points_write_checkpoints_and_reports(models):
    vla_report = json.loads((models / 'vla' / 'report.json').read_text())
    assert vla_report['closed_loop']['episodes'] == 1 and vla_report['val_loss'] > 0
    assert (models / 'vla' / 'model.safetensors').exists()
    token_report = json.loads((models / 'rl_token' / 'report.json').read_text())
    assert token_report['reconstruction']['ratio'] > 0
    assert {'linear', 'mlp'} <= set(token_report['probe_offset'])
    assert (models / 'rl_token' / 'rl_token.safetensors').exists()


def test_token_training_reads_the_frozen_vlas_embeddings_from_its_cache(models, demos, tmp_path, capsys):
    assert len(list((models / 'cache').glob('embeddings-*.pt'))) == 1
    train_rl_token.main(['--vla', str(models / 'vla'), '--demos', str(demos), '--output', str(tmp_path), '--steps', '2',
                '--batch-size', '8', '--val-episodes', '1', '--token-dim', '8', '--d-model', '16', '--threads', '1',
                '--cache-dir', str(models / 'cache')])
    assert 'embeddings from' in capsys.readouterr().out


def test_token_statistics_are_refitted_from_a_saved_token(models, demos, tmp_path):
    args = ['--vla', str(models / 'vla'), '--demos', str(demos), '--output', str(tmp_path), '--val-episodes', '1',
            '--threads', '1', '--cache-dir', str(models / 'cache'), '--init', str(models / 'rl_token'), '--steps', '0']
    report = train_rl_token.train(parse_config(train_rl_token.TokenTrainConfig, [*args, '--no-whiten']))
    assert report['reconstruction'] is None and report['probe_offset']['mlp']['rmse_critical_mm'] > 0
    standardised = RLTokenModel.load(tmp_path)
    saved = RLTokenModel.load(models / 'rl_token')
    for name in ('in_proj.weight', 'e_rl', 'out.1.weight'):  # the same encoder, other statistics only
        torch.testing.assert_close(standardised.encoder.state_dict()[name], saved.encoder.state_dict()[name])
    torch.testing.assert_close(standardised.encoder.z_whiten, torch.eye(8))
    train_rl_token.train(parse_config(train_rl_token.TokenTrainConfig, args))
    assert not torch.allclose(RLTokenModel.load(tmp_path).encoder.z_whiten, torch.eye(8))
    with pytest.raises(SystemExit):
        train_rl_token.main(['--steps', '0'])  # statistics only needs a token to start from


def without_columns(source, target, dropped):
    """A copy of the dataset at `source` without the columns `dropped`."""
    shutil.copytree(source, target)
    info = json.loads((target / 'meta' / 'info.json').read_text())
    info['features'] = {k: v for k, v in info['features'].items() if k not in dropped}
    (target / 'meta' / 'info.json').write_text(json.dumps(info, indent=2))
    for path in (target / 'data').glob('*/*.parquet'):
        pq.write_table(pq.read_table(path).drop_columns(list(dropped)), path)
    return target


@pytest.fixture(scope='module')
def robot_demos(demos, tmp_path_factory):
    """The demonstrations as a robot records them: without the simulator's ground truth (privileged.*)."""
    return without_columns(demos, tmp_path_factory.mktemp('robot') / 'demos', PRIVILEGED_KEYS)


def test_phase_one_runs_on_a_dataset_without_ground_truth(robot_demos, tmp_path):
    train_vla.main(['--demos', str(robot_demos), '--output', str(tmp_path / 'vla'), '--steps', '2', '--batch-size',
                    '8', '--val-episodes', '1', '--d-model', '32', '--n-layers', '1', '--stem-channels', '8', '16',
                    '32', '64', '--eval-episodes', '0', '--threads', '1'])
    args = ['--vla', str(tmp_path / 'vla'), '--steps', '2', '--batch-size', '8', '--val-episodes', '1',
            '--token-dim', '8', '--d-model', '16', '--threads', '1']
    report = train_rl_token.train(parse_config(train_rl_token.TokenTrainConfig, [
        *args, '--demos', str(robot_demos), '--output', str(tmp_path / 'rl_token')]))
    assert report['probe_offset'].startswith('skipped: the dataset has no privileged.peg_hole_offset')
    assert report['statistics'].endswith('critical-phase training frames') and report['reconstruction']['ratio'] > 0
    assert RLTokenModel.load(tmp_path / 'rl_token').config.token_dim == 8
    unflagged = without_columns(robot_demos, tmp_path / 'unflagged', ['critical_phase'])
    report = train_rl_token.train(parse_config(train_rl_token.TokenTrainConfig, [
        *args, '--demos', str(unflagged), '--output', str(tmp_path / 'rl_token_unflagged')]))
    assert report['statistics'].endswith('training frames: the dataset has no critical_phase column')
    assert RLTokenModel.load(tmp_path / 'rl_token_unflagged').config.token_dim == 8


def test_a_dataset_that_does_not_fit_the_robot_profile_is_refused(robot_demos, tmp_path):
    cell = RobotProfile.load()
    two_joints = replace(cell, joint_names=cell.joint_names[:2], joint_lower=cell.joint_lower[:2],
                         joint_upper=cell.joint_upper[:2], max_delta=cell.max_delta[:2],
                         critical_max_delta=cell.critical_max_delta[:2],
                         cameras=(Camera('top'), *cell.cameras[1:]))
    args = ['--demos', str(robot_demos), '--output', str(tmp_path),
            '--robot-profile', str(two_joints.save(tmp_path / 'two_joints.yaml'))]
    with pytest.raises(ValueError, match='closed-loop evaluation runs in the simulated cell.*--eval-episodes 0'):
        train_vla.main(args)  # at start: the simulator cannot evaluate a robot it does not model
    with pytest.raises(ValueError, match="camera 'top'.*observation.state has 6 values, not 4; action has 3 values, "
                                         'not 2'):
        train_vla.main([*args, '--eval-episodes', '0'])


def test_online_entry_point_learns_checkpoints_and_resumes(models, tmp_path, monkeypatch):
    args = ['--vla', str(models / 'vla'), '--token', str(models / 'rl_token'), '--output', str(tmp_path),
            '--warmup-episodes', '1', '--eval-every', '2', '--eval-episodes', '2', '--final-eval-episodes', '2',
            '--robot-profile', short_episodes(tmp_path, 30), '--batch-size', '4', '--intervention-rate', '1.0',
            '--hidden', '16', '16']
    evaluated, run_episode = [], train_rlt.run_episode

    def recording(env, inputs, learner, cfg, profile, seed, train=True, **kwargs):
        if not train:
            evaluated.append(('actor' if learner else 'base', seed))
        return run_episode(env, inputs, learner, cfg, profile, seed, train=train, **kwargs)

    monkeypatch.setattr(train_rlt, 'run_episode', recording)
    train_rlt.main(['--episodes', '2', *args])
    first = json.loads((tmp_path / 'summary.json').read_text())
    assert first['online_episodes'] == 2
    # the best actor was picked on the periodic evaluations' seeds; its final evaluation, and the base VLA's beside
    # it, run on other seeds
    periodic, final = evaluated[:4], evaluated[4:]  # the base VLA, then the actor at episode 2; then the finals
    assert {seed for _, seed in periodic} == {train_rlt.EVAL_SEED, train_rlt.EVAL_SEED + 1}
    assert sorted(final) == [(who, train_rlt.FINAL_EVAL_SEED + i) for who in ('actor', 'base') for i in range(2)]
    assert first['base_vla_final_eval']['success_rate'] in (0.0, 0.5, 1.0)
    train_rlt.main(['--episodes', '3', *args])  # resumes at episode 2
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['online_episodes'] == 3 and len(summary['history']) == 2
    (tmp_path / 'checkpoint.pt').write_bytes(b'cut short by a crash')  # the newest checkpoint is corrupt
    train_rlt.main(['--episodes', '4', *args])  # resumes from the one before, at episode 2
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['online_episodes'] == 4 and [h['episode'] for h in summary['history']] == [2, 4]
    assert (tmp_path / 'learning_curve.png').stat().st_size > 1000
    assert (tmp_path / 'replay' / 'transitions.bin').exists()


def test_the_critic_gate_hands_each_chunk_to_the_side_the_critic_values_more(tmp_path):
    profile = RobotProfile.load()
    learner = RLTLearner(profile.actor_config(8, hidden=(16, 16)), seed=0)
    x, ref = np.linspace(-1, 1, 8, dtype=np.float32), np.full((profile.actor_chunk_len, 3), 0.0005, np.float32)
    noisy = learner.select_chunk(x, ref, explore=True, generator=torch.Generator().manual_seed(0)).numpy()
    mean = learner.select_chunk(x, ref).numpy()
    q = learner.qf(torch.from_numpy(x).expand(2, -1), learner.actor.normalize(torch.from_numpy(np.stack([mean, ref]))))
    np.testing.assert_allclose(learner.chunk_values(x, np.stack([mean, ref])), q.min(0).values.detach(), rtol=1e-6)
    stats = {'gate_actor': 0, 'gate_reference': 0}
    np.testing.assert_array_equal(train_rlt.gated_chunk(learner, x, ref, noisy, -np.inf, stats), noisy)
    np.testing.assert_array_equal(train_rlt.gated_chunk(learner, x, ref, noisy, np.inf, stats), ref)
    assert stats == {'gate_actor': 1, 'gate_reference': 1}
    # In the loop: every decision after warmup is gated and counted.
    train_rlt.main(['--output', str(tmp_path), '--critic-gate', '--episodes', '2', '--warmup-episodes', '1',
                              '--eval-every', '2', '--eval-episodes', '1', '--final-eval-episodes', '0',
                              '--robot-profile', short_episodes(tmp_path, 60), '--batch-size', '4',
                              '--hidden', '16', '16'])
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['gate_actor_fraction_in_training'] is not None
    assert summary['history'][-1]['gate_actor_fraction'] is not None


def test_the_lowest_rolling_success_after_warmup():
    episodes = [{'success': s} for s in [True] * 5 + [False] * 3 + [True, False] * 10]
    assert train_rlt.lowest_rolling_success(episodes, after=5, window=4) == 0.25  # three failures, a success
    assert train_rlt.lowest_rolling_success(episodes, after=8, window=4) == 0.5
    assert train_rlt.lowest_rolling_success(episodes, after=20, window=20) is None  # fewer than a window


def test_image_encoder_ablation_learns_from_stored_frames_and_resumes(tmp_path):
    # The default VLA (the test fixtures' tiny one never reaches the critical phase, where frames are used).
    args = ['--output', str(tmp_path), '--ablation', 'image_encoder', '--image-size', '24',
            '--warmup-episodes', '1', '--eval-every', '2', '--eval-episodes', '1', '--final-eval-episodes', '1',
            '--robot-profile', short_episodes(tmp_path, 60), '--batch-size', '4', '--hidden', '16', '16']
    first = train_rlt.train(parse_config(train_rlt.RLTTrainConfig, [*args, '--episodes', '2']))
    assert first['learner_updates'] > 0 and first['training_wall_minutes'] > 0
    frame_bytes = 2 * 24 * 24 * 3
    frames_after_first = (tmp_path / 'frames.bin').stat().st_size // frame_bytes
    layout = json.loads((tmp_path / 'replay' / 'layout.json').read_text())
    records = np.fromfile(tmp_path / 'replay' / 'transitions.bin', np.dtype([tuple(f) for f in layout['descr']]))
    assert records['state'].shape[1] == 6 + 1  # proprio and the frame id, no token
    ids = np.concatenate([records['state'][:, -1], records['next_state'][:, -1]])
    assert ids.min() >= 0 and ids.max() < frames_after_first and np.all(ids == np.round(ids))
    assert (tmp_path / 'best_encoder.pt').exists()
    summary = train_rlt.train(parse_config(train_rlt.RLTTrainConfig, [*args, '--episodes', '3']))  # resumes
    assert summary['online_episodes'] == 3 and summary['learner_updates'] > first['learner_updates']


def test_training_killed_mid_run_resumes_with_every_recorded_transition(tmp_path, capsys):
    # The default models (they reach the critical phase, where transitions are recorded); SIGKILL, no clean-up.
    args = ['--output', str(tmp_path), '--episodes', '6', '--warmup-episodes', '1', '--eval-every', '2',
            '--eval-episodes', '1', '--final-eval-episodes', '1', '--robot-profile', short_episodes(tmp_path, 60),
            '--batch-size', '4',
            '--hidden', '16', '16', '--no-compile']
    proc = subprocess.Popen([sys.executable, '-m', 'rlt_train.train_rlt', *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    log, ckpt = tmp_path / 'replay' / 'transitions.bin', tmp_path / 'checkpoint.pt'
    deadline = time.monotonic() + 300
    try:
        while not ckpt.exists():  # the checkpoint after episode 2's evaluation
            assert proc.poll() is None and time.monotonic() < deadline, 'training ended before its first checkpoint'
            time.sleep(0.05)
        at_checkpoint = log.stat().st_size
        while log.stat().st_size <= at_checkpoint:  # transitions recorded after the checkpoint
            assert proc.poll() is None and time.monotonic() < deadline, 'training ended before the kill'
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    recorded = log.read_bytes()
    itemsize = json.loads((tmp_path / 'replay' / 'layout.json').read_text())['itemsize']
    whole = len(recorded) // itemsize * itemsize  # a record the kill cut short is dropped on reload
    assert whole > at_checkpoint
    summary = train_rlt.train(parse_config(train_rlt.RLTTrainConfig, args))
    assert f'with {whole // itemsize} transitions in the replay' in capsys.readouterr().out  # from the checkpoint
    assert summary['online_episodes'] == 6
    kept = log.read_bytes()
    assert kept[:whole] == recorded[:whole] and len(kept) > whole  # every record before the kill, then more


def test_demonstrations_become_prior_replay_data_for_the_online_loop(models, demos, tmp_path):
    prior = tmp_path / 'demo_replay'
    profile = replace(RobotProfile.load(), max_steps=40)  # episodes cut at 40 steps
    meta = demo_replay.convert(demo_replay.DemoReplayConfig(
        demos=str(demos), output=str(prior), vla=str(models / 'vla'), token=str(models / 'rl_token'),
        robot_profile=str(profile.save(tmp_path / 'short.yaml'))))
    assert meta['episodes'] == 6 and meta['transitions'] > 0
    assert meta['robot_profile']['hash'] == profile.hash and meta['robot_profile']['max_steps'] == 40
    records = np.fromfile(prior / 'transitions.bin', record_dtype(8 + 6, profile.actor_chunk_len, profile.action_dim))
    assert len(records) == meta['transitions'] and (records['source'] == SOURCE_DEMO).all()
    assert records['rewards'].sum() == records['done'].sum() > 0  # +1 on success, which ends the episode
    assert not (records['done'] & records['truncated']).any()
    args = ['--vla', str(models / 'vla'), '--token', str(models / 'rl_token'), '--output', str(tmp_path / 'run'),
            '--warmup-episodes', '1', '--eval-every', '2', '--eval-episodes', '1', '--final-eval-episodes', '0',
            '--robot-profile', short_episodes(tmp_path, 30), '--batch-size', '4', '--hidden', '16', '16',
            '--episodes', '2',
            '--demo-replay', str(prior), '--pretrain-updates', '7']
    summary = train_rlt.train(parse_config(train_rlt.RLTTrainConfig, args))
    assert summary['learner_updates'] >= 7
    shutil.copytree(models / 'rl_token', models / 'other_token')
    (models / 'other_token' / 'rl_token.json').write_text(
        (models / 'rl_token' / 'rl_token.json').read_text().replace('{', '{ ', 1))
    with pytest.raises(ValueError, match='another token'):
        train_rlt.train(parse_config(train_rlt.RLTTrainConfig, [*args, '--token', str(models / 'other_token'),
                                                           '--output', str(tmp_path / 'run2')]))


def test_readout_probes_the_offset_from_few_episodes(models, tmp_path):
    # The default VLA reaches the critical phase in every episode; an untrained one may never.
    report = readout.readout(parse_config(readout.ReadoutConfig, [
        '--output', str(tmp_path), '--episodes', '3', '--val-episodes', '1', '--train-episodes', '1', '2',
        '--probe-steps', '5']))
    assert json.loads((tmp_path / 'report.json').read_text()) == json.loads(json.dumps(report))
    assert 0 < report['val_states'] < report['states']
    default = default_models_dir(DEFAULT_PROFILE)
    assert report['probes']['token:default']['dim'] == RLTokenModel.load(default / 'rl_token').config.token_dim + 6
    assert report['probes']['per_camera']['dim'] == 3 * SmallVLA.load(default / 'vla').token_dim + 6
    for probe in report['probes'].values():
        for row in probe['by_train_episodes'].values():
            assert all(np.isfinite(v) and v > 0 for v in row.values())


def test_bad_options_are_refused(models, tmp_path):
    with pytest.raises(SystemExit):
        readout.main(['--episodes', '10', '--val-episodes', '5', '--train-episodes', '6'])
    with pytest.raises(ValueError, match='reached the critical phase'):
        readout.readout(parse_config(readout.ReadoutConfig, [
            '--vla', str(models / 'vla'), '--token', str(models / 'rl_token'), '--output', str(tmp_path),
            '--episodes', '2', '--val-episodes', '1', '--train-episodes', '1']))
    with pytest.raises(SystemExit):
        train_rlt.main(['--ablation', 'nonsense'])
    with pytest.raises(SystemExit):
        train_vla.main(['--steps', '0'])
