"""The embedded runner behind `./rlt run`: online RL with the whole sim graph, without `ros2 launch`.

  ./rlt run --episodes 300 [--output runs/mine] [--robot-profile cell.yaml] [--set arbiter.warmup_episodes=5 ...]

Starts every node of `rlt_bringup.graph.nodes('sim')` as its own process (the executables and
parameter files the launch files use; per-run overrides in OUTPUT/params/overrides.yaml, the robot
profile among them: `--robot-profile` reaches every node as the launch argument does), follows
the episodes live (success rate, interventions, learner updates, weights version), and at the end
writes OUTPUT/summary.json and OUTPUT/learning_curve.png. The learner's replay log is
OUTPUT/replay; each node's log is OUTPUT/logs/<node>.log. Ctrl-C stops everything cleanly: SIGINT
to each process group, then a wait (no orphans, no DDS shared-memory leftovers).
ROS discovery stays on this machine unless ROS_AUTOMATIC_DISCOVERY_RANGE says otherwise.
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from rlt_bringup import graph
from rlt_core.models.vla.spec import BackboneSpec

STATS_GRACE_S = 10.0
"""After the last episode ends, how long to wait for the arbiter's statistics of it, and for the
learner's count of the transitions it stored."""


def executable(package: str, name: str) -> str:
    """<prefix>/lib/<package>/<name> from the ament prefixes (the colcon install space)."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        path = Path(prefix) / 'lib' / package / name
        if prefix and path.exists():
            return str(path)
    raise FileNotFoundError(f'{package}/{name} not found on AMENT_PREFIX_PATH (source env.sh / ./rlt exec)')


def commands(specs, overrides_file: Path, config: Path | None = None) -> list[tuple[str, list[str]]]:
    """(node name, argv) of every spec: the same executables and parameter files as the launch files."""
    config = config or graph.config_dir()
    graph.write_overrides(specs, overrides_file)
    return [(s.name, [executable(s.package, s.executable),
                      *graph.ros_arguments(s, config, overrides_file if s.parameters else None)]) for s in specs]


def sigint_at_default():
    """Give the nodes started from this process SIGINT at its default even where this process was started with it
    ignored (a shell's background job): a SIGINT that comes while a node starts then ends it instead of being lost
    (a node cannot catch what arrives before its own code runs). Call before starting any thread."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def ros_environment(private_domain: bool = False) -> dict:
    """The environment of the graph's processes, applied to this process too (for its own nodes): discovery on
    loopback unless set otherwise; with `private_domain`, a ROS domain of this run's own (201-232, from the
    process id) unless ROS_DOMAIN_ID is set, so that a benchmark's graph neither hears nor disturbs another graph
    on this machine."""
    env = dict(os.environ)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if private_domain:
        env.setdefault('ROS_DOMAIN_ID', str(201 + os.getpid() % 32))
    env['PYTHONUNBUFFERED'] = '1'
    os.environ.update({k: env[k] for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID') if k in env})
    return env


def stop(procs: dict, timeout: float = 30.0):
    """SIGINT to each process group, wait, SIGKILL only what did not stop."""
    for proc in procs.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for name, proc in procs.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGUSR1)  # its threads' stacks into its log (rlt_nodes.spin)
                time.sleep(1.0)
            print(f'rlt: {name} did not stop within {timeout:.0f} s of SIGINT; killed (where its threads were is '
                  f'in its log; its DDS files in /dev/shm stay behind)', file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def profile_overrides(robot_profile: str) -> dict:
    """The overrides that give every node of the graph `robot_profile` (a path, made absolute, or a name)."""
    if not robot_profile:
        return {}
    from rlt_core.control.profile import RobotProfile, resolve_profile_path
    path = resolve_profile_path(robot_profile).resolve()
    RobotProfile.load(path)  # a bad profile fails here, with its reason, before any node starts
    return graph.launch_overrides({'robot_profile': str(path)})


def parse_set(items) -> dict:
    """node.param=value (YAML value) -> {node: {param: value}}."""
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        node, dot, param = key.partition('.')
        if not (sep and dot and node and param):
            raise SystemExit(f'--set expects node.param=value, got {item!r}')
        out.setdefault(node, {})[param] = yaml.safe_load(value)
    return out


def merge(a: dict, b: dict) -> dict:
    out = {k: dict(v) for k, v in a.items()}
    for node, params in b.items():
        out.setdefault(node, {}).update(params)
    return out


class Monitor:
    """A node in this process that follows rlt/episode_stats and rlt/learner_stats."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String, UInt64

        from rlt_nodes.qos import LATCHED_QOS, STATS_QOS
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('rlt_run_monitor', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.episodes, self.learner = [], {}
        self.ended, self.last_news = 0, time.monotonic()  # episodes the simulator ended; when the last news came
        # Latched with history: the arbiter's reports of episodes that ended before this subscription
        # matched still arrive (a loaded machine can take seconds to match the graph's endpoints).
        self.node.create_subscription(String, 'rlt/episode_stats', self.on_stats, STATS_QOS)
        self.node.create_subscription(UInt64, 'rlt/episode_count', self.on_count, LATCHED_QOS)
        self.node.create_subscription(String, 'rlt/learner_stats',
                                      lambda m: self.learner.update(json.loads(m.data)), 10)

    def on_stats(self, msg):  # each episode also keeps the learner's mean Q at its end (a divergence shows)
        stats = json.loads(msg.data)
        if any(e['episode_id'] == stats['episode_id'] for e in self.episodes[-100:]):
            return  # the history again, after a re-match
        self.episodes.append({**stats, 'learner_q': self.learner.get('values/q')})
        self.last_news = time.monotonic()

    def on_count(self, msg):
        self.ended, self.last_news = msg.data, time.monotonic()

    def spin(self, seconds: float):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


def recorded(episodes: list) -> int:
    """Transitions the arbiter recorded in the episodes it reported."""
    return sum(e['transitions'] for e in episodes)


def summarize(episodes: list, learner: dict, args, wall_s: float) -> dict:
    def rate(eps):
        return sum(e['success'] for e in eps) / len(eps) if eps else None
    online = [e for e in episodes if not e['warmup']]
    last = online[-min(len(online), 20):] if online else []
    totals = {k: sum(e['steps_by_source'][k] for e in episodes) for k in ('vla', 'actor', 'human', 'hold')}
    return {
        'command': './rlt run ' + ' '.join(sys.argv[1:]), 'episodes': len(episodes), 'wall_minutes': wall_s / 60,
        'success_rate': rate(episodes), 'warmup_success_rate': rate([e for e in episodes if e['warmup']]),
        'online_success_rate': rate(online), 'final_success_rate_last_20': rate(last),
        'interventions': sum(e['intervention'] for e in episodes), 'steps_by_source': totals,
        'transitions_recorded': recorded(episodes), 'transitions_stored': learner.get('received'),
        'learner': learner, 'per_episode': episodes,
    }


def plot(episodes: list, path: Path):
    """Rolling success, and rolling critical-phase steps by who drove them, over the episodes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    x = np.arange(1, len(episodes) + 1)
    window = max(1, min(20, len(episodes)))

    def rolling(values):  # the mean over the last `window` episodes (fewer at the start)
        total = np.cumsum(np.asarray(values, dtype=float))
        ahead = np.concatenate([np.zeros(window), total[:-window]])[:len(total)]
        return (total - ahead) / np.minimum(x, window)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(x, rolling([e['success'] for e in episodes]), '-', label=f'success (rolling {window})')
    warm = [i + 1 for i, e in enumerate(episodes) if e['warmup']]
    if warm:
        ax1.axvspan(0.5, max(warm) + 0.5, color='gray', alpha=0.2, label='warmup (VLA)')
    taken = [i + 1 for i, e in enumerate(episodes) if e['intervention']]
    if taken:
        ax1.plot(taken, np.full(len(taken), 1.0), '|', color='tab:red', label='human takeover')
    ax1.set(xlabel='episode', ylabel='success rate', ylim=(0, 1.05), title='RLT online (ROS graph)')
    critical = [e['critical_steps'] for e in episodes]
    ax2.plot(x, critical, '.', color='tab:blue', alpha=0.2, markersize=3)
    ax2.plot(x, rolling(critical), '-', color='tab:blue', label=f'critical-phase steps (rolling {window})')
    for source, color in (('actor', 'tab:orange'), ('human', 'tab:green'), ('hold', 'tab:gray')):
        ax2.plot(x, rolling([e['steps_by_source'][source] for e in episodes]), '-', color=color,
                 label=f'{source} steps (rolling {window})')
    ax2.set(xlabel='episode', ylabel='steps per episode', ylim=(0, None))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    parser = argparse.ArgumentParser(prog='./rlt run', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--episodes', type=int, default=300, help='online RL episodes to run')
    parser.add_argument('--output', default='', help='output folder (default: runs/<timestamp>)')
    parser.add_argument('--vla', default='', help='VLA backbone spec: a SmallVLA folder, pi0:/folder or '
                        "module:Class[:/path] (default: the profile's, rlt_bringup models/<profile>/vla)")
    parser.add_argument('--token', default='', help='RL token folder (default: models/<profile>/rl_token)')
    parser.add_argument('--robot-profile', default='',
                        help='robot profile of every node: a YAML path, or a name in config/profiles (default: '
                             'gantry_cell)')
    parser.add_argument('--set', action='append', default=[], metavar='NODE.PARAM=VALUE',
                        help='override one node parameter (repeatable), e.g. arbiter.warmup_episodes=5')
    parser.add_argument('--timeout-min', type=float, default=0.0, help='stop after this many minutes (0: never)')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`/`timeout` stop the graph as cleanly as Ctrl-C
    sigint_at_default()

    out = Path(args.output or f'runs/{datetime.now():%Y%m%d-%H%M%S}').resolve()
    (out / 'logs').mkdir(parents=True, exist_ok=True)
    overrides = {'learner': {'replay_dir': str(out / 'replay')}, 'episode_manager': {'episodes': args.episodes}}
    for node in ('vla_server', 'actor', 'arbiter'):
        if args.vla:
            overrides.setdefault(node, {})['vla_path'] = str(BackboneSpec.parse(args.vla).resolved())
    if args.token:
        overrides.setdefault('vla_server', {})['token_path'] = str(Path(args.token).resolve())
    try:
        overrides = merge(merge(overrides, profile_overrides(args.robot_profile)), parse_set(args.set))
    except ValueError as err:  # a missing or invalid robot profile
        raise SystemExit(f'rlt: {err}') from None
    specs = graph.nodes('sim', overrides)
    env = ros_environment()

    procs, logs = {}, []
    start = time.monotonic()
    monitor = None
    interrupted = False
    try:
        monitor = Monitor()  # before the graph, so that it is discovered before the first episode
        for name, argv_ in commands(specs, out / 'params' / 'overrides.yaml'):
            log = open(out / 'logs' / f'{name}.log', 'w')  # noqa: SIM115 - closed in finally
            logs.append(log)
            procs[name] = subprocess.Popen(argv_, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        print(f'rlt: {len(procs)} nodes started ({", ".join(procs)}); logs in {out / "logs"}', flush=True)
        seen = 0
        while len(monitor.episodes) < args.episodes:
            monitor.spin(0.5)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                print(f'rlt: node(s) {dead} exited; see {out / "logs"}', file=sys.stderr)
                break
            if args.timeout_min and time.monotonic() - start > 60 * args.timeout_min:
                print('rlt: time limit reached', file=sys.stderr)
                break
            if monitor.ended >= args.episodes and time.monotonic() - monitor.last_news > STATS_GRACE_S:
                print(f'rlt: the simulator ended {monitor.ended} episodes but the arbiter reported '
                      f'{len(monitor.episodes)}; see {out / "logs"}', file=sys.stderr)
                break
            while seen < len(monitor.episodes):
                e = monitor.episodes[seen]
                seen += 1
                recent = monitor.episodes[-20:]
                ln = monitor.learner
                print(f'episode {seen}/{args.episodes}: {"success" if e["success"] else "failure"}'
                      f'{" (warmup)" if e["warmup"] else ""} | success rate (last {len(recent)}) '
                      f'{sum(r["success"] for r in recent) / len(recent):.2f} | interventions '
                      f'{sum(r["intervention"] for r in monitor.episodes)} | learner updates {ln.get("updates", 0)}, '
                      f'transitions {ln.get("transitions", 0)}, weights v{ln.get("weights_version", 0)}, '
                      f'Q {ln.get("values/q", 0.0):.2f}', flush=True)
        deadline = time.monotonic() + STATS_GRACE_S  # the learner reports once a second
        while monitor.learner.get('received', 0) < recorded(monitor.episodes) and time.monotonic() < deadline:
            monitor.spin(0.2)
    except KeyboardInterrupt:
        interrupted = True
        print('\nrlt: interrupted; stopping the graph', file=sys.stderr)
    finally:
        episodes = list(monitor.episodes) if monitor else []
        learner = dict(monitor.learner) if monitor else {}
        # Another Ctrl-C or kill does not cut the stop short: stop() ends every node, by SIGKILL if it must.
        handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
        stop(procs)  # the nodes first: a node still sending to the closed monitor would re-create its port
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if monitor is not None:
            monitor.close()
        for log in logs:
            log.close()
    summary = summarize(episodes, learner, args, time.monotonic() - start)
    summary['interrupted'] = interrupted
    from rlt_core.control.profile import RobotProfile
    profile = RobotProfile.load(args.robot_profile)
    summary['robot_profile'] = {'name': profile.name, 'hash': profile.hash, 'path': args.robot_profile}
    (out / 'summary.json').write_text(json.dumps(summary, indent=1))
    if episodes:
        plot(episodes, out / 'learning_curve.png')
    print(f'rlt: {len(episodes)} episodes, success rate {summary["success_rate"]}, '
          f'{summary["interventions"]} interventions, {summary["transitions_stored"]} of '
          f'{summary["transitions_recorded"]} recorded transitions stored by the learner; wrote {out / "summary.json"}'
          + (f' and {out / "learning_curve.png"}' if episodes else ''))
    return 0 if episodes or interrupted else 1


if __name__ == '__main__':
    sys.exit(main())
