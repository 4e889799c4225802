"""Every training entry point runs end to end on a tiny budget (CleanRL-style smoke tests)."""

import json

import pytest

from rlt_sim.record import RecordConfig, record
from rlt_train import online, token, vla


@pytest.fixture(scope='module')
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp('demos')
    record(RecordConfig(output=str(path), episodes=6, sigma_mm=1.0, progress=False))
    return path


@pytest.fixture(scope='module')
def models(demos, tmp_path_factory):
    root = tmp_path_factory.mktemp('models')
    vla.main(['--demos', str(demos), '--output', str(root / 'vla'), '--steps', '4', '--batch-size', '8',
              '--val-episodes', '1', '--d-model', '32', '--n-layers', '1', '--stem-channels', '8', '16', '32', '64',
              '--eval-episodes', '1', '--threads', '1'])
    token.main(['--vla', str(root / 'vla'), '--demos', str(demos), '--output', str(root / 'rl_token'),
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
    token.main(['--vla', str(models / 'vla'), '--demos', str(demos), '--output', str(tmp_path), '--steps', '2',
                '--batch-size', '8', '--val-episodes', '1', '--token-dim', '8', '--d-model', '16', '--threads', '1',
                '--cache-dir', str(models / 'cache')])
    assert 'embeddings from' in capsys.readouterr().out


def test_online_entry_point_learns_checkpoints_and_resumes(models, tmp_path):
    args = ['--vla', str(models / 'vla'), '--token', str(models / 'rl_token'), '--output', str(tmp_path),
            '--warmup-episodes', '1', '--eval-every', '2', '--eval-episodes', '1', '--final-eval-episodes', '1',
            '--max-steps', '30', '--batch-size', '4', '--intervention-rate', '1.0', '--hidden', '16', '16']
    online.main(['--episodes', '2', *args])
    first = json.loads((tmp_path / 'summary.json').read_text())
    assert first['online_episodes'] == 2
    online.main(['--episodes', '3', *args])  # resumes at episode 2
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['online_episodes'] == 3 and len(summary['history']) == 2
    assert (tmp_path / 'learning_curve.png').stat().st_size > 1000
    assert (tmp_path / 'replay' / 'transitions.bin').exists()


def test_bad_options_are_refused():
    with pytest.raises(SystemExit):
        online.main(['--ablation', 'nonsense'])
    with pytest.raises(SystemExit):
        vla.main(['--steps', '0'])
