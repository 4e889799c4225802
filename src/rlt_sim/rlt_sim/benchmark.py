"""Benchmark the cell: simulation speed and scripted-expert success rates.

Run as ``python -m rlt_sim.benchmark`` or ``rlt_sim_benchmark``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rlt_core.control.profile import RobotProfile
from rlt_sim.cell import SimConfig
from rlt_sim.episode import make_env
from rlt_sim.expert import IMPERFECT_SIGMA_MM, ScriptedExpert, run_episode


def steps_per_second(profile: RobotProfile, steps: int, repeats: int, **cell) -> float:
    """Median env steps per second over `repeats` runs of `steps` expert-driven steps (the expert's actions
    straight to the cell, without the engine)."""
    env = make_env(profile, **cell)
    rates = []
    seed = 0
    for _ in range(repeats):
        obs, info = env.reset(seed=seed)
        expert = ScriptedExpert.for_profile(profile)
        expert.reset(info)
        start = time.perf_counter()
        for _ in range(steps):
            obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
            if terminated or truncated:
                seed += 1
                obs, info = env.reset(seed=seed)
                expert.reset(info)
        rates.append(steps / (time.perf_counter() - start))
    env.close()
    return statistics.median(rates)


def expert_stats(profile: RobotProfile, sigma_mm: float, episodes: int, **cell) -> dict:
    """Success rate, critical-phase reach rate and mean steps over seeds 0..episodes-1, through the engine."""
    env = make_env(profile, **cell)
    expert = ScriptedExpert.for_profile(profile, hole_error_sigma_mm=sigma_mm)
    results = [run_episode(env, expert, seed=seed, profile=profile) for seed in range(episodes)]
    env.close()
    return {
        "success": float(np.mean([r["success"] for r in results])),
        "reached_critical": float(np.mean([r["reached_critical"] for r in results])),
        "failed_in_critical": sum(r["reached_critical"] and not r["success"] for r in results),
        "failures": sum(not r["success"] for r in results),
        "mean_steps": float(np.mean([r["steps"] for r in results])),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100, help="episodes per expert setting")
    parser.add_argument(
        "--sigmas",
        type=str,
        default="0.5,1,1.5,2,3",
        help="comma-separated belief errors (mm, per axis) for the imperfect expert",
    )
    parser.add_argument("--clearance-mm", type=float, default=SimConfig.clearance_mm)
    parser.add_argument("--robot-profile", default="", help="robot profile: a YAML path or a name (empty: default)")
    parser.add_argument("--speed-steps", type=int, default=400, help="steps per speed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="speed repeats (median reported)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    profile = RobotProfile.load(args.robot_profile)
    config = make_env(profile, clearance_mm=args.clearance_mm, render=False).config
    sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]

    print(
        f"rlt_sim benchmark: {profile.name}, clearance {config.clearance_mm} mm per side, "
        f"{config.control_hz:g} Hz control, {config.substeps} substeps of {config.timestep_s} s"
    )
    rate = steps_per_second(profile, 5 * args.speed_steps, args.repeats, clearance_mm=args.clearance_mm, render=False)
    print(f"env steps/s, no rendering: {rate:8.0f}")
    rate = steps_per_second(profile, args.speed_steps, args.repeats, clearance_mm=args.clearance_mm)
    print(f"env steps/s, {len(config.camera_names)} cameras at {config.image_size}px: {rate:8.0f}")

    settings = [("perfect expert", 0.0)]
    settings += [(f"imperfect expert sigma {s:g} mm", s) for s in sigmas]
    print(
        f"expert over {args.episodes} seeded episodes (default imperfect sigma "
        f"{IMPERFECT_SIGMA_MM:g} mm):"
    )
    for label, sigma in settings:
        stats = expert_stats(profile, sigma, args.episodes, clearance_mm=args.clearance_mm, render=False)
        print(
            f"  {label:34s} success {stats['success']:6.1%}  "
            f"reached critical {stats['reached_critical']:6.1%}  "
            f"failures in critical {stats['failed_in_critical']}/{stats['failures']}  "
            f"mean steps {stats['mean_steps']:5.1f}"
        )


if __name__ == "__main__":
    main()
