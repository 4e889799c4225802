"""The kinematics benchmark runs and prints its figures (their values go to docs/results.md, not here)."""

import json

from rlt_bringup import benchmark_kinematics


def test_the_kinematics_benchmark_prints_its_figures(capsys):
    benchmark_kinematics.main(['--samples', '20'])
    figures = json.loads(capsys.readouterr().out)
    assert figures['robot_profile']['name'] == 'ur5e_cell' and 'cores' in figures['machine']
    assert figures['fk_vs_mujoco']['configurations'] == 20 and figures['fk_vs_mujoco']['max_position_error_m'] < 1e-9
    ik = figures['ik_well_conditioned']
    assert ik['steps'] == 20 and ik['reached'] + sum(ik['refused'].values()) == 20 and figures['median_chunk_ms'] > 0
