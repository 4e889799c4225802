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
    """The README is a user's guide under 16,500 bytes; measured results live in docs/results.md."""
    size = (ROOT / 'README.md').stat().st_size
    assert size < 16_500, f'README.md is {size} bytes: move detail to docs/'
    assert (ROOT / 'docs' / 'results.md').exists() and 'docs/results.md' in (ROOT / 'README.md').read_text()
