"""The side-by-side table: medians over seeds, episodes to 90 % only when most seeds got there."""

import json

from rlt_train import ablations


def _summary(path, success, critical, per_min, e90, episodes=500, wall=None, lateral=None, dip=None,
             final_eval=True):
    path.mkdir(parents=True)
    final = {'success_rate': success, 'mean_critical_steps': critical}
    if lateral is not None:
        final['lateral_mm_per_step'] = lateral
    (path / 'summary.json').write_text(json.dumps({
        'final_eval': final if final_eval else None, 'history': [{'episode': episodes, **final}],
        'online_episodes': episodes, 'successes_per_sim_minute': per_min, 'episodes_to_90': e90,
        'base_vla': {'success_rate': 0.6}, 'training_wall_minutes': wall, 'lowest_rolling20_after_warmup': dip}))


def test_table_takes_medians_over_seeds(tmp_path, capsys):
    for seed, (s, c, m, e) in enumerate([(0.9, 30.0, 12.0, 200), (0.7, 50.0, 9.0, None), (0.95, 20.0, 13.0, 300)]):
        _summary(tmp_path / f'rlt_seed{seed}', s, c, m, e, wall=25.0 * (seed + 1), lateral=0.1 * (seed + 1),
                 dip=0.1 * (seed + 2))
    _summary(tmp_path / 'residual_seed0', 0.8, 40.0, 11.0, None, episodes=100)
    _summary(tmp_path / 'c1_seed0', 0.5, 45.0, 8.0, None, episodes=150, final_eval=False)  # its last periodic eval
    ablations.main(['--output', str(tmp_path), '--variants', 'rlt', 'residual', 'c1', 'beta0', '--table-only'])
    rows = {r['variant']: r for r in json.loads((tmp_path / 'table.json').read_text())}
    assert set(rows) == {'rlt', 'residual', 'c1'}  # beta0 has no finished run
    assert rows['c1']['success_rate'] == 0.5 and abs(rows['rlt']['lowest_rolling20'] - 0.3) < 1e-9
    assert (rows['rlt']['seeds'], rows['rlt']['episodes'], rows['rlt']['success_rate']) == (3, 500, 0.9)
    assert rows['rlt']['mean_critical_steps'] == 30.0 and rows['rlt']['successes_per_sim_minute'] == 12.0
    assert rows['rlt']['episodes_to_90'] == 300.0  # median of 200, 300 and never
    assert rows['residual']['episodes'] == 100 and rows['residual']['episodes_to_90'] is None
    assert rows['rlt']['episodes_per_wall_minute'] == 10.0  # median of 500 / 25, 500 / 50, 500 / 75
    assert rows['rlt']['lateral_mm_per_step'] == 0.2
    out = capsys.readouterr().out
    assert '| rlt | 3 | 500 | 0.90 | 30.0 | 0.20 | 0.30 | 12.0 |' in out and '| 10.0 |' in out
    # a run from before the wall clock, the lateral-move figure and the lowest rolling success
    assert '| residual | 1 | 100 | 0.80 | 40.0 | — | — | 11.0 | — | nan |' in out
