"""Latency of the node graph: observation stamp -> JointTrajectory publication, and the steps the robot held.

  ./rlt exec python -m rlt_bringup.benchmark_latency [--chunks 200] [--control-hz 50] [--load 1]
                                                     [--serve every] [--lead-steps 0] [--extra-latency-ms 60]
                                                     [--vla DIR --token DIR] [--robot-profile P]

Starts the sim graph (same executables and parameter files as ./rlt run) and measures, for every
executed chunk, the time from the stamp of the observation it was decided on (the camera /
joint-state stamp) to the arbiter's publication of the JointTrajectory, through ingestion ->
vla_server -> (actor) -> arbiter; a chunk decided ahead of need (the arbiter's `lead_steps`) is published when
the one before runs out, so this includes its lead. The operator's phase button is pressed at each episode start so
that, once the learner has published weights, chunks also go through the actor. Prints one JSON:
per source the median, p90 and p99; the age of the observation behind each executed action (that latency
plus one control period per row before it, over the rows the robot executed before the next chunk); the
fraction of control steps the robot held still waiting for a chunk (`steps_by_source.hold` of the episodes
that began after the graph served its first chunk, with the refused commands, the other cause of a hold), and
how many of them came before each episode's first chunk (the robot at rest waits for its first inference) and
between chunks (at the hand-over to the actor, or elsewhere);
and the fraction of chunks later than one control period. `--load N` runs N CPU-bound processes beside the
graph. Without --vla/--token it uses a tiny untrained VLA of the profile's shapes. Every node runs the robot
profile with episodes of 60 steps (and --control-hz, where given): a copy of it in the run's temporary folder.
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rlt_bringup import embedded, graph
from rlt_bringup.tiny_models import make_tiny_models
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_VLA


def holds_by_place(decided: list, chunk_len: int, episodes: set) -> dict:
    """Steps the episodes held where the executed chunks show it: before each one's first chunk (steps 1 .. its
    start - 1: the robot at rest waits for its first inference), and between two chunks (one starting more than C
    steps after the one before), by the later one: the actor's first after the VLA's (the hand-over as the
    critical phase begins) or any other. `decided`: (stamp, source, episode, step) per executed chunk."""
    chunks = {}
    for _, source, episode, step in decided:
        if episode in episodes:
            chunks.setdefault(episode, []).append((step, source))
    held = {'before_the_first_chunk': 0, 'hand_over_to_the_actor': 0, 'other': 0}
    for starts in chunks.values():
        starts.sort()
        held['before_the_first_chunk'] += starts[0][0] - 1
        for (step, source), (later, later_source) in zip(starts, starts[1:], strict=False):
            if later - step > chunk_len:
                hand_over = (source, later_source) == (SOURCE_VLA, SOURCE_ACTOR)
                held['hand_over_to_the_actor' if hand_over else 'other'] += later - step - chunk_len
    return held


def main(argv=None):
    embedded.sigint_at_default()
    parser = argparse.ArgumentParser(prog='benchmark_latency', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--chunks', type=int, default=200, help='executed chunks to measure')
    parser.add_argument('--vla', default='', help='VLA backbone spec (default: a tiny untrained SmallVLA)')
    parser.add_argument('--token', default='', help='RL token (default: a tiny untrained one)')
    parser.add_argument('--robot-profile', default='',
                        help='robot profile (a YAML path or a name; default: gantry_cell)')
    parser.add_argument('--control-hz', type=float, default=0.0,
                        help="control rate of the run (0: the profile's; for the sim 1/control_hz a multiple of 2 ms)")
    parser.add_argument('--load', type=int, default=0, help='CPU-bound processes run beside the graph')
    parser.add_argument('--serve', choices=('requested', 'every'), default='requested',
                        help="the VLA server's serve: only the observations the arbiter asks for, or every one")
    parser.add_argument('--lead-steps', type=int, default=-1,
                        help="the arbiter's lead_steps (-1: adapted to the measured latency; 0: at the boundary)")
    parser.add_argument('--extra-latency-ms', type=float, default=0.0,
                        help="the VLA server's extra_latency_ms: a slower VLA")
    parser.add_argument('--timeout-s', type=float, default=300.0, help='give up after this long')
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Joy
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from rlt_core.control.profile import RobotProfile
    from rlt_interfaces.msg import ActionChunk, EpisodeEvent
    from rlt_nodes.qos import EVENTS_QOS, STATS_QOS
    tmp = Path(tempfile.mkdtemp(prefix='rlt-latency-'))
    profile = RobotProfile.load(args.robot_profile)
    profile = replace(profile, max_steps=60, control_hz=args.control_hz or profile.control_hz)
    profile_path = str(profile.save(tmp / f'{profile.name}.yaml'))
    vla, token = (args.vla, args.token) if args.vla and args.token else make_tiny_models(tmp / 'models', profile_path)
    overrides = embedded.merge(graph.launch_overrides({'robot_profile': profile_path}), {
        'vla_server': {'vla_path': vla, 'token_path': token, 'serve': args.serve,
                       'extra_latency_ms': args.extra_latency_ms},
        'actor': {'vla_path': vla},
        'arbiter': {'vla_path': vla, 'warmup_episodes': 1, 'lead_steps': args.lead_steps},
        'learner': {'replay_dir': str(tmp / 'replay'), 'batch_size': 16, 'min_transitions': 16,
                    'publish_every': 10, 'hidden': [64, 64]},
        'sim_human': {'rate': 0.0},
    })
    env = embedded.ros_environment(private_domain=True)
    procs = {}
    import subprocess
    (tmp / 'logs').mkdir()
    for name, cmd in embedded.commands(graph.nodes('sim', overrides), tmp / 'overrides.yaml'):
        with open(tmp / 'logs' / f'{name}.log', 'w') as log:
            procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    load = [subprocess.Popen([sys.executable, '-c', 'while True: pass'], start_new_session=True)
            for _ in range(args.load)]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('rlt_latency_benchmark', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    published, decided = [], []
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(JointTrajectory, f'{profile.controller_name}/joint_trajectory',
                             lambda m: published.append(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec), 1000)
    node.create_subscription(ActionChunk, 'rlt/executed_chunk',
                             lambda m: decided.append((m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec, m.source,
                                                       m.episode_id, m.step_index)), reliable)
    episodes = []
    node.create_subscription(String, 'rlt/episode_stats', lambda m: episodes.append(json.loads(m.data)), STATS_QOS)
    joy = node.create_publisher(Joy, 'joy', 10)

    def on_event(msg):
        if msg.event == EpisodeEvent.EPISODE_START:
            for buttons in ([0, 0, 0, 0, 0, 1], [0] * 6):
                joy.publish(Joy(buttons=buttons, axes=[0.0] * 8))
    node.create_subscription(EpisodeEvent, 'episode/events', on_event, EVENTS_QOS)
    start = time.monotonic()
    try:
        while min(len(published), len(decided)) < args.chunks and time.monotonic() - start < args.timeout_s:
            executor.spin_once(timeout_sec=0.1)
            if any(p.poll() is not None for p in procs.values()):
                print(f'a node exited early; logs in {tmp / "logs"}', file=sys.stderr)
                break
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        embedded.stop(procs)
        for p in load:
            p.kill()
    n = min(len(published), len(decided))
    lat, ages = {'all': [], 'vla': [], 'actor': []}, []
    names = {ActionChunk.SOURCE_VLA: 'vla', ActionChunk.SOURCE_ACTOR: 'actor'}
    dt, C = 1.0 / profile.control_hz, profile.actor_chunk_len
    for i, (t_pub, (t_obs, source, episode, step)) in enumerate(zip(published[:n], decided[:n], strict=True)):
        if source in names:
            ms = 1e3 * (t_pub - t_obs)
            lat['all'].append(ms)
            lat[names[source]].append(ms)
            later = decided[i + 1] if i + 1 < len(decided) else None
            rows = min(C, later[3] - step) if later is not None and later[2] == episode else C
            ages += [ms + 1e3 * k * dt for k in range(max(rows, 0))]

    def spread(v):
        return {'median_ms': float(np.median(v)), 'p90_ms': float(np.percentile(v, 90)),
                'p99_ms': float(np.percentile(v, 99))}
    result = {k: {'chunks': len(v), **spread(v)} for k, v in lat.items() if v}
    # Episodes that began before the graph served its first chunk (the start-up) hold by design: not counted.
    first = min((d[2] for d in decided), default=None)
    served = [e for e in episodes if first is not None and e['episode_id'] > first]
    steps = sum(e['steps'] for e in served)
    held = sum(e['steps_by_source']['hold'] for e in served)
    places = holds_by_place(decided, C, {e['episode_id'] for e in served})
    at_start = places.pop('before_the_first_chunk')
    summary = {'vla': vla, 'robot_profile': profile.name, 'control_hz': profile.control_hz, 'load': args.load,
               'serve': args.serve, 'lead_steps': args.lead_steps, 'extra_latency_ms': args.extra_latency_ms,
               'latency_obs_to_trajectory': result,
               'observation_age_per_executed_action': {'actions': len(ages), **spread(ages)} if ages else None,
               'held_steps': {'episodes': len(served), 'steps': steps, 'held': held,
                              'fraction': held / steps if steps else None,
                              'before_each_episode_s_first_chunk': at_start,
                              'between_chunks': places,
                              'fraction_after_the_first_chunk': (held - at_start) / steps if steps else None,
                              'refused_commands': sum(e['refused_commands'] for e in served),
                              'start_up_episodes_not_counted': len(episodes) - len(served)},
               'chunks_later_than_one_period': (float(np.mean(np.array(lat['all']) > 1e3 * dt))
                                                if lat['all'] else None)}
    print(json.dumps(summary, indent=1))
    for k, r in result.items():
        print(f'{k:>5}: {r["chunks"]} chunks, median {r["median_ms"]:.1f} ms, p90 {r["p90_ms"]:.1f} ms, '
              f'p99 {r["p99_ms"]:.1f} ms')
    if steps:
        print(f'held still on {held} of {steps} control steps ({100 * held / steps:.2f} %), {at_start} of them '
              "before an episode's first chunk")
    return 0 if result else 1


if __name__ == '__main__':
    sys.exit(main())
