"""SIGINT stops a node at any moment of its start, before rclpy handles SIGINT: also when its parent left SIGINT
ignored (a shell's background job, `./rlt test &`, and every process below it), and without the traceback (or
the KeyboardInterrupt swallowed on the way) of a KeyboardInterrupt among its imports."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rlt_bringup import embedded, graph

SIGINT_BIT = 1 << (signal.SIGINT - 1)


def ignoring_sigint(*argv) -> list[str]:
    """`argv` started as a shell starts a background job: with SIGINT ignored (the same process, exec'd)."""
    return ['sh', '-c', 'trap "" INT; exec "$@"', 'sh', *argv]


def catches_sigint(pid: int) -> bool:
    """Whether process `pid` has a handler for SIGINT (SigCgt of /proc/<pid>/status)."""
    try:
        status = Path(f'/proc/{pid}/status').read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith('SigCgt:'))
    return bool(int(caught.split()[1], 16) & SIGINT_BIT)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def interrupt(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """SIGINT to the process's group; its output once it exited (the test fails if it did not within `timeout`)."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGUSR1)  # where it hangs, into its output (rlt_nodes.spin)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f'did not stop within {timeout} s of SIGINT:\n{proc.stdout.read()[-3000:]}') from None
    return proc.stdout.read()


def test_sigint_during_the_imports_after_rlt_nodes_spin_stops_the_process(processes):
    """A process that ignored SIGINT from its start ends on a SIGINT that comes after it imported rlt_nodes.spin,
    while it still does other things before spin_node."""
    proc = processes.spawn(*ignoring_sigint(sys.executable, '-u', '-c',
                                            'import signal, rlt_nodes.spin; print("imported"); signal.pause()'))
    assert 'imported' in processes.read_until(proc, 'imported', timeout=60)
    interrupt(proc)
    assert proc.returncode == -signal.SIGINT


def test_sigint_before_spin_node_ends_a_ros_node_at_once_without_a_traceback(processes):
    """A process started as a ROS node (`--ros-args`), SIGINT at its default, ends on a SIGINT that comes after it
    imported rlt_nodes.spin as SIGINT ends a process, without a KeyboardInterrupt's traceback."""
    proc = processes.spawn(sys.executable, '-u', '-c', 'import signal, rlt_nodes.spin; print("imported"); '
                           'signal.pause()', '--ros-args')
    assert 'imported' in processes.read_until(proc, 'imported', timeout=60)
    out = interrupt(proc)
    assert proc.returncode == -signal.SIGINT and 'Traceback' not in out, out


def test_ingestion_started_with_sigint_ignored_stops_on_a_sigint_while_it_starts(processes, tmp_path):
    """The ingestion node, started with SIGINT ignored, stops on a SIGINT sent as soon as it has a handler for
    one: while it imports its modules, before any ROS entity exists; no traceback."""
    [(_, argv)] = embedded.commands([s for s in graph.nodes('sim') if s.name == 'ingestion'],
                                    tmp_path / 'overrides.yaml')
    proc = processes.spawn(*ignoring_sigint(*argv))
    assert wait_until(lambda: catches_sigint(proc.pid) or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, proc.stdout.read()
    out = interrupt(proc)
    assert proc.returncode == -signal.SIGINT, out
    assert 'Traceback' not in out, out
