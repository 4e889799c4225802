"""The repository's Python passes ruff (configured in ruff.toml at the workspace root); the README stays short."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which('ruff') or str(Path(sys.executable).with_name('ruff'))
    result = subprocess.run([ruff, 'check', '--no-cache', 'src', 'test', 'tools'], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_stays_a_short_guide():
    """The README is a user's guide under 15,000 bytes; measured results live in docs/results.md."""
    size = (ROOT / 'README.md').stat().st_size
    assert size < 15_000, f'README.md is {size} bytes: move detail to docs/'
    assert (ROOT / 'docs' / 'results.md').exists() and 'docs/results.md' in (ROOT / 'README.md').read_text()


def test_the_docker_image_installs_pinned_versions_of_what_the_nodes_import():
    """The Dockerfile's pip step selects pins from requirements.txt by name: each name it selects is pinned there,
    and among them are the libraries the robot-side packages import (pi0 backbones, recordings)."""
    import re
    dockerfile = (ROOT / 'docker' / 'Dockerfile').read_text()
    selected = set(re.search(r"grep -E '\^\(([^)]*)\)==' ", dockerfile).group(1).split('|'))
    pinned = {line.split('==')[0] for line in (ROOT / 'requirements.txt').read_text().splitlines() if '==' in line}
    assert selected <= pinned, f'not pinned in requirements.txt: {sorted(selected - pinned)}'
    assert {'torch', 'transformers', 'pillow', 'mcap', 'mcap-ros2-support', 'safetensors', 'pyarrow', 'pin',
            'opencv-python-headless'} <= selected
