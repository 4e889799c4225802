"""The command-line tools the README names run by name in the workspace environment (env.sh)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ('rlt_record_demos', 'train_vla', 'train_rl_token', 'train_rlt', 'rlt_ablations', 'benchmark_vla',
         'benchmark_learner', 'rlt_sim_benchmark', 'rlt_readout')


def in_env(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', '-c', f'. "{ROOT}/env.sh" && {command}'], capture_output=True, text=True,
                          timeout=120)


def test_readme_tools_resolve_and_run():
    readme = (ROOT / 'README.md').read_text()
    named = {tool for tool in TOOLS if re.search(rf'^{tool}\b', readme, re.MULTILINE)}
    assert named, 'the README names none of the tools'
    found = in_env('command -v ' + ' '.join(sorted(named)))
    assert found.returncode == 0 and len(found.stdout.split()) == len(named), found.stdout + found.stderr
    result = in_env('train_rlt --help')
    assert result.returncode == 0 and '--episodes' in result.stdout, result.stderr[-2000:]
