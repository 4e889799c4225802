"""RLT against its ablations and baselines, side by side, same loop and seeds.

  python -m rlt_train.ablations --output runs/ablations --seeds 0 1 2 --episodes 300 --jobs 2 [--robot-profile P]

Runs `rlt_train.train_rlt` once per (variant, seed) as separate processes (`--jobs` at a time,
each resumable; every run gets `--robot-profile`, made absolute: the robot's chunk lengths, stride, limits,
control rate and episode length come from it), then prints a table of medians over seeds: final noise-free success rate,
mean critical-phase steps, the mean horizontal move per critical-phase step in that evaluation
(how hard a policy shakes the peg), successes per simulated minute during training, online
episodes until a periodic evaluation first reached 90 %, and online episodes per wall-clock
minute of training (sim, models and learner updates; evaluations excluded). The table is also written to
`table.md` and `table.json` in the output folder.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rlt_core.control.profile import RobotProfile, resolve_profile_path
from rlt_train.train_rlt import ABLATIONS


def profile_args(robot_profile: str) -> list[str]:
    """train_rlt's options for `robot_profile` (a path, made absolute, or a name; '' adds none: the default)."""
    if not robot_profile:
        return []
    path = resolve_profile_path(robot_profile).resolve()
    RobotProfile.load(path)  # a bad profile fails here, before any run starts
    return ['--robot-profile', str(path)]


def run_all(args, extra):
    jobs = [(v, s) for v in args.variants for s in args.seeds]
    running, logs = [], []
    while jobs or running:
        while jobs and len(running) < args.jobs:
            variant, seed = jobs.pop(0)
            out = Path(args.output) / f'{variant}_seed{seed}'
            out.mkdir(parents=True, exist_ok=True)
            if (out / 'summary.json').exists() and json.loads((out / 'summary.json').read_text())[
                    'online_episodes'] >= args.episodes:
                continue
            log = open(out / 'log.txt', 'a')  # noqa: SIM115 - closed when the job ends
            cmd = [sys.executable, '-m', 'rlt_train.train_rlt', '--ablation', variant, '--seed', str(seed),
                   '--episodes', str(args.episodes), '--output', str(out), *profile_args(args.robot_profile), *extra]
            print('started', ' '.join(cmd[2:]), flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, variant, seed))
        for job in list(running):
            if job[0].poll() is not None:
                job[1].close()
                running.remove(job)
                print(f'finished {job[2]} seed {job[3]} (exit {job[0].returncode})', flush=True)
                logs.append(job)
        time.sleep(2)


def final_eval(run: dict) -> dict:
    """The final evaluation of the best actor, or the last periodic one (a run with --final-eval-episodes 0)."""
    return run['final_eval'] or run['history'][-1]


def table(args) -> list[dict]:
    rows = []
    for variant in args.variants:
        runs = []
        for seed in args.seeds:
            path = Path(args.output) / f'{variant}_seed{seed}' / 'summary.json'
            if path.exists():
                runs.append(json.loads(path.read_text()))
        if not runs:
            continue
        e90 = [r['episodes_to_90'] for r in runs]
        rows.append({
            'variant': variant, 'seeds': len(runs), 'episodes': int(np.median([r['online_episodes'] for r in runs])),
            'success_rate': float(np.median([final_eval(r)['success_rate'] for r in runs])),
            'mean_critical_steps': float(np.median([final_eval(r)['mean_critical_steps'] for r in runs])),
            'lateral_mm_per_step': float(np.median([final_eval(r).get('lateral_mm_per_step', np.nan)
                                                    for r in runs])),
            'lowest_rolling20': float(np.median([r.get('lowest_rolling20_after_warmup') or np.nan for r in runs])),
            'successes_per_sim_minute': float(np.median([r['successes_per_sim_minute'] for r in runs])),
            'episodes_to_90': None if sum(e is None for e in e90) * 2 >= len(e90) else
            float(np.median([e if e is not None else np.inf for e in e90])),
            'base_vla_success_rate': float(np.median([r['base_vla']['success_rate'] for r in runs])),
            'episodes_per_wall_minute': float(np.median([r['online_episodes'] / r['training_wall_minutes']
                                                         if r.get('training_wall_minutes') else np.nan for r in runs])),
        })
    return rows


def render(rows) -> str:
    lines = ['| variant | seeds | episodes | success (final eval) | critical-phase steps | lateral mm / step | '
             'lowest rolling-20 success | successes / sim min | episodes to 90 % | episodes / wall min |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        e90 = '—' if r['episodes_to_90'] is None else f"{r['episodes_to_90']:.0f}"
        lateral = '—' if np.isnan(r['lateral_mm_per_step']) else f"{r['lateral_mm_per_step']:.2f}"
        dip = '—' if np.isnan(r['lowest_rolling20']) else f"{r['lowest_rolling20']:.2f}"
        lines.append(f"| {r['variant']} | {r['seeds']} | {r['episodes']} | {r['success_rate']:.2f} | "
                     f"{r['mean_critical_steps']:.1f} | {lateral} | {dip} | {r['successes_per_sim_minute']:.1f} | "
                     f"{e90} | "
                     f"{r['episodes_per_wall_minute']:.1f} |")
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--output', default='runs/ablations')
    p.add_argument('--variants', nargs='+', default=list(ABLATIONS), choices=ABLATIONS)
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--episodes', type=int, default=300)
    p.add_argument('--jobs', type=int, default=2, help='runs at a time (one torch thread each)')
    p.add_argument('--robot-profile', default='',
                   help='robot profile of every run (a YAML path or a name; default: gantry_cell)')
    p.add_argument('--table-only', action='store_true', help='only print the table of finished runs')
    args, extra = p.parse_known_args(argv)
    if not args.table_only:
        run_all(args, extra)
    rows = table(args)
    text = render(rows)
    (Path(args.output) / 'table.md').write_text(text + '\n')
    (Path(args.output) / 'table.json').write_text(json.dumps(rows, indent=1))
    print(text)


if __name__ == '__main__':
    main()
