"""Fixtures for tests that start real ROS 2 nodes in real processes.

Every test gets its own ROS_DOMAIN_ID and LOCALHOST discovery; child processes run in their own
process group and are stopped with SIGINT (clean DDS shutdown, no /dev/shm leftovers) at teardown.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rlt_bringup.embedded import sigint_at_default

HELPERS = Path(__file__).parent / 'helpers'


def replay_file(replay_dir: Path):
    """The records of a learner's replay log, as a numpy structured array (its layout from layout.json)."""
    import numpy as np
    descr = json.loads((replay_dir / 'layout.json').read_text())['descr']
    return np.fromfile(replay_dir / 'transitions.bin', np.dtype([tuple(f) for f in descr]))


def replay_records(replay_dir: Path) -> int:
    """Whole records in a learner's replay log (transitions.bin, record size from layout.json); 0 before the learner
    has created it."""
    if not (replay_dir / 'transitions.bin').exists():
        return 0
    itemsize = json.loads((replay_dir / 'layout.json').read_text())['itemsize']
    return (replay_dir / 'transitions.bin').stat().st_size // itemsize


def write_profile(path: Path, image_size: int = 0, **changes) -> str:
    """The default robot profile with some facts changed (RobotProfile fields; `image_size`: every camera's),
    written to `path`: what a test passes as robot_profile for short episodes or small images."""
    from dataclasses import replace

    from rlt_core.control.profile import RobotProfile
    profile = RobotProfile.load()
    if image_size:
        changes['cameras'] = tuple(replace(c, width=image_size, height=image_size) for c in profile.cameras)
    return str(replace(profile, **changes).save(path))


_domain_ids = itertools.count()
sigint_at_default()  # for the nodes the tests start (pytest imports this module first)


def _next_domain_id() -> int:
    # 1..200, spread by pid so concurrent test runs on one machine do not meet.
    return 1 + (os.getpid() * 7 + next(_domain_ids)) % 200


class Processes:
    """Starts child processes in the test's ROS environment and stops them all at teardown."""

    def __init__(self, env):
        self.env = env
        self.procs = []

    def spawn(self, *args, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(list(args), env=self.env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, script, *args) -> subprocess.Popen:
        return self.spawn(sys.executable, '-u', str(script), *args)

    @staticmethod
    def read_until(proc, text, timeout=120.0) -> str:
        """The process's output up to the first line containing `text`, or what came before a timeout or exit."""
        lines, done = [], threading.Event()

        def reader():
            for line in proc.stdout:
                lines.append(line)
                if text in line:
                    break
            done.set()
        threading.Thread(target=reader, daemon=True).start()
        done.wait(timeout)
        return ''.join(lines)

    def stop(self, proc, timeout=10.0) -> str:
        """SIGINT, then SIGKILL after `timeout`; returns the process's output."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out = proc.stdout.read() if proc.stdout else ''
        return out

    def kill(self, proc) -> str:
        """SIGKILL, as a crash: no clean-up runs in the process; returns its output."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return proc.stdout.read() if proc.stdout else ''

    def stop_all(self):
        for proc in self.procs:
            self.stop(proc)


@pytest.fixture
def ros_env(monkeypatch, tmp_path_factory):
    """The environment of a private ROS graph: own domain id, discovery on loopback only, its own ROS_HOME (the
    nodes' default replay folder and logs)."""
    domain_id = _next_domain_id()
    monkeypatch.setenv('ROS_HOME', str(tmp_path_factory.mktemp('ros_home')))
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain_id))
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    monkeypatch.setenv('PYTHONUNBUFFERED', '1')
    return dict(os.environ)


@pytest.fixture
def processes(ros_env):
    procs = Processes(ros_env)
    yield procs
    procs.stop_all()


class GraphNode:
    """An rclpy node in the test process with its own context and executor."""

    def __init__(self, name, domain_id):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, condition, timeout=20.0, period=0.05) -> bool:
        """Spin until `condition()` is true or `timeout` seconds pass; returns `condition()`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=period)
        return bool(condition())

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.context)


@pytest.fixture
def test_node(ros_env, request):
    """An rclpy node in the test process, on the test's private domain."""
    name = 'test_' + ''.join(c if c.isalnum() else '_' for c in request.node.name)[:40]
    tn = GraphNode(name, int(ros_env['ROS_DOMAIN_ID']))
    yield tn
    tn.close()
