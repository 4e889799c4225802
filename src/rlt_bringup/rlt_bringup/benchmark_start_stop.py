"""Start/stop reliability of one node: does it always stop on SIGINT, and how fast?

  ./rlt exec python -m rlt_bringup.benchmark_start_stop [--cycles 200] [--node ingestion] [--rate 20]
      [--random-stop-s 4] [--output DIR]

For each cycle, starts the node as its own process (the executable and parameter files of
`rlt_bringup.graph.nodes('sim')`, as ./rlt run starts it) while this process publishes `joint_states`
and one `cameras/<name>/image_raw` per camera of the robot profile, stamped alike, at `--rate` Hz;
waits until the node is up and working (ingestion: its first rlt/observation of this cycle; another
node: its name in the graph), or with `--random-stop-s` only until a random moment that long after the
start at most, sends SIGINT to its process group and waits up to `--stop-timeout-s` for it to exit. A node
that does not exit in time gets SIGUSR1 (every thread's stack into its log, rlt_nodes.spin), then SIGKILL;
its log is kept in OUTPUT/hangs, as is that of every exit that is not clean (see `clean`). Prints one JSON
line: cycles, clean exits, hangs, exit codes, median/max stop time (SIGINT to exit), Fast DDS shared-memory
files of the node left in /dev/shm after it exited, where the logs are, the machine, and whether this
process ignores SIGINT (then so does every node it starts, until rclpy or rlt_nodes.spin catches it: run
from a shell's background job, or after `trap '' INT`, this measures nodes started that way).
ROS discovery stays on this machine unless ROS_AUTOMATIC_DISCOVERY_RANGE says otherwise.
"""

import argparse
import array
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from rlt_bringup import embedded, graph
from rlt_core.runtime import machine

SHM = Path('/dev/shm')


def shm_files(pid: int) -> set[str]:
    """The Fast DDS shared-memory segments process `pid` owns (it holds their `_el` lock files open), with
    those lock files: the per-port files every participant on the machine shares are not among them."""
    names = set()
    try:
        fds = list(Path(f'/proc/{pid}/fd').iterdir())
    except OSError:
        return names
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        name = target.removeprefix('/dev/shm/')
        if name != target and name.startswith('fastdds_') and name.endswith('_el') and '_port' not in name:
            names |= {name, name.removesuffix('_el')}
    return names


class Feeder:
    """An rclpy node of this process, spun by its own thread: publishes joint states and camera images at
    `rate` Hz and sets `observed` on the first rlt/observation stamped at or after `accept_after_ns`."""

    def __init__(self, profile, rate: float):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState

        from rlt_interfaces.msg import Observation
        from rlt_nodes.qos import OBSERVATION_QOS
        self.rclpy, self.Image, self.JointState = rclpy, Image, JointState
        self.profile = profile
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('rlt_start_stop_benchmark', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.joint_pub = self.node.create_publisher(JointState, 'joint_states', 10)
        self.image_pubs = {c.name: self.node.create_publisher(Image, c.image_topic, qos_profile_sensor_data)
                           for c in profile.cameras}
        channels = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}
        encodings = {c.name: c.encoding if c.encoding in channels else 'rgb8' for c in profile.cameras}
        self.images = {c.name: (c, encodings[c.name],
                                array.array('B', bytes(c.height * c.width * channels[encodings[c.name]])))
                       for c in profile.cameras}
        self.observed = threading.Event()
        self.accept_after_ns = 0
        self.published = 0
        self.node.create_subscription(Observation, 'rlt/observation', self.on_observation, OBSERVATION_QOS)
        self.node.create_timer(1.0 / rate, self.on_tick)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # the context shut down at close()
            if self.context.ok():
                raise

    def expect_new(self):
        """From now on, only an observation of a joint state published from now on sets `observed`."""
        self.accept_after_ns = self.node.get_clock().now().nanoseconds
        self.observed.clear()

    def on_observation(self, msg):
        if msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec >= self.accept_after_ns:
            self.observed.set()

    def on_tick(self):
        stamp = self.node.get_clock().now().to_msg()
        n = len(self.profile.joint_names)
        joints = self.JointState(name=list(self.profile.joint_names), position=[0.0] * n, velocity=[0.0] * n)
        joints.header.stamp = stamp
        for name, (camera, encoding, data) in self.images.items():
            msg = self.Image(height=camera.height, width=camera.width, encoding=encoding, is_bigendian=0,
                             step=len(data) // camera.height)
            msg.header.stamp = stamp
            msg.data = data
            self.image_pubs[name].publish(msg)
        self.joint_pub.publish(joints)
        self.published += 1

    def node_names(self) -> list[str]:
        return self.node.get_node_names()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)
        self.thread.join(5.0)


def run_cycle(argv, env, log_path: Path, feeder: Feeder, node: str, ready_timeout: float, stop_timeout: float,
              stop_after: float | None = None):
    """One start/stop of the node: a dict with its outcome. `stop_after`: SIGINT that many seconds after the
    start, up or not (None: once it is up)."""
    feeder.expect_new()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ready_deadline = time.monotonic() + (ready_timeout if stop_after is None else 0.0)
    ready = False
    if stop_after is not None:
        try:
            proc.wait(stop_after)
        except subprocess.TimeoutExpired:
            pass
        ready = feeder.observed.is_set() if node == 'ingestion' else node in feeder.node_names()
    while time.monotonic() < ready_deadline and proc.poll() is None:
        if node == 'ingestion':
            ready = feeder.observed.wait(0.2)
        else:
            ready = node in feeder.node_names()
            if not ready:
                feeder.observed.wait(0.2)  # a pause between graph queries
        if ready:
            break
    files = shm_files(proc.pid)
    out = {'ready': ready, 'hang': False, 'stop_after_s': stop_after}
    if proc.poll() is not None:
        out.update(exit_code=proc.returncode, died_before_stop=True, stop_s=None, shm_left=0, traceback=True)
        return out
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(stop_timeout)
        out['stop_s'] = time.monotonic() - start
    except subprocess.TimeoutExpired:
        out.update(hang=True, stop_s=None)
        try:
            os.kill(proc.pid, signal.SIGUSR1)  # every thread's stack into its log (rlt_nodes.spin)
            proc.wait(2.0)  # faulthandler writes and returns; the node keeps hanging
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    out['exit_code'] = proc.returncode
    out['traceback'] = 'Traceback' in log_path.read_text(errors='replace')
    out['shm_left'] = sum((SHM / f).exists() for f in files)
    return out


def clean(r: dict) -> bool:
    """Stopped by its SIGINT in time without a traceback: exit status 0, or ended by the SIGINT itself where it
    came before the node set anything up (rlt_nodes.spin)."""
    return not r['hang'] and not r['traceback'] and r['exit_code'] in (0, -signal.SIGINT)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='benchmark_start_stop', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cycles', type=int, default=200, help='start/stop cycles')
    parser.add_argument('--node', default='ingestion', choices=graph.CORE, help='the node to start and stop')
    parser.add_argument('--rate', type=float, default=0.0,
                        help="joint states and images per camera published per second (0: the profile's control rate)")
    parser.add_argument('--robot-profile', default='',
                        help='robot profile (a YAML path or a name; default: gantry_cell)')
    parser.add_argument('--stop-timeout-s', type=float, default=10.0,
                        help='a node not exited this long after SIGINT hangs')
    parser.add_argument('--ready-timeout-s', type=float, default=60.0, help='how long a node may take to come up')
    parser.add_argument('--random-stop-s', type=float, default=0.0,
                        help='SIGINT at a random moment within this many seconds of the start, up or not (0: once '
                             'it is up)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random stop moments')
    parser.add_argument('--output', default='', help='folder of the run (params, hang logs; default: a temporary one)')
    args = parser.parse_args(argv)

    from rlt_core.control.profile import RobotProfile
    profile = RobotProfile.load(args.robot_profile)
    rate = args.rate or profile.control_hz
    out = Path(args.output or tempfile.mkdtemp(prefix='rlt-start-stop-')).resolve()
    (out / 'hangs').mkdir(parents=True, exist_ok=True)
    overrides = embedded.profile_overrides(args.robot_profile)
    specs = [s for s in graph.nodes('sim', overrides) if s.name == args.node]
    [(_, node_argv)] = embedded.commands(specs, out / 'overrides.yaml')
    env = embedded.ros_environment(private_domain=True)

    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # and so in every node it starts
    rng = random.Random(args.seed)
    feeder = Feeder(profile, rate)
    results, log_path = [], out / f'{args.node}.log'
    begin = time.monotonic()
    try:
        for cycle in range(args.cycles):
            stop_after = rng.uniform(0.0, args.random_stop_s) if args.random_stop_s > 0 else None
            r = run_cycle(node_argv, env, log_path, feeder, args.node, args.ready_timeout_s, args.stop_timeout_s,
                          stop_after)
            results.append(r)
            if not clean(r) or not (r['ready'] or args.random_stop_s):
                shutil.copy(log_path, out / 'hangs' / f'{args.node}-cycle{cycle}.log')
            if not clean(r):
                what = 'hung on SIGINT' if r['hang'] else f'exited with {r["exit_code"]}'
                when = 'once up' if stop_after is None else f'{stop_after:.2f} s after the start'
                print(f'cycle {cycle}: {args.node} {what} (SIGINT {when}); log in {out / "hangs"}', file=sys.stderr,
                      flush=True)
            if (cycle + 1) % 10 == 0:
                print(f'cycle {cycle + 1}/{args.cycles}: hangs {sum(x["hang"] for x in results)}', file=sys.stderr,
                      flush=True)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
    finally:
        feeder.close()
    stops = sorted(r['stop_s'] for r in results if r['stop_s'] is not None)
    summary = {
        'command': 'benchmark_start_stop ' + ' '.join(sys.argv[1:] if argv is None else argv),
        'node': args.node, 'rate_hz': rate, 'random_stop_s': args.random_stop_s, 'cycles': len(results),
        'ready': sum(r['ready'] for r in results),
        'sigint_ignored_by_parent': ignored,
        'clean_exits': sum(clean(r) for r in results),
        'hangs': sum(r['hang'] for r in results),
        'exit_codes': dict(Counter(str(r['exit_code']) for r in results)),
        'stop_s_median': round(statistics.median(stops), 3) if stops else None,
        'stop_s_max': round(stops[-1], 3) if stops else None,
        'shm_files_left': sum(r['shm_left'] for r in results),
        'shm_files_left_after_clean_exit': sum(r['shm_left'] for r in results if not r['hang']),
        'hang_logs': str(out / 'hangs'), 'wall_s': round(time.monotonic() - begin, 1),
        'machine': machine(),
    }
    print(json.dumps(summary))
    return 0 if results and summary['clean_exits'] == len(results) else 1


if __name__ == '__main__':
    sys.exit(main())
