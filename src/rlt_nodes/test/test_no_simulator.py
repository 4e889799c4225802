"""A robot PC installs neither MuJoCo nor the simulator: no robot-side node imports them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

NODES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / 'rlt_nodes').glob('*.py')
               if p.stem != '__init__')
SIM_ONLY = ('rlt_sim', 'rlt_sim_nodes', 'mujoco', 'gymnasium')


@pytest.mark.parametrize('module', NODES)
def test_robot_side_module_imports_no_simulator(module):
    code = (f'import sys, json; import rlt_nodes.{module}; '
            f'print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert not loaded & set(SIM_ONLY), f'rlt_nodes.{module} imports {sorted(loaded & set(SIM_ONLY))}'


def test_the_check_sees_a_simulator_import():
    """The same probe on a sim node finds the simulator, so the check above can fail."""
    code = 'import sys; import rlt_sim_nodes.sim_robot; print("mujoco" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith('True'), out.stderr[-2000:]
