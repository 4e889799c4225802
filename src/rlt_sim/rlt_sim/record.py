"""Record randomized scripted-expert demonstrations into a LeRobot v3.0 dataset.

Run as ``rlt_record_demos --output DIR`` or ``python -m rlt_sim.record --output DIR``. Episode i
uses seed ``seed + i`` for the cell and the demonstrator, so a run is reproducible and resumable:
rerunning the same command after an interruption keeps the finished episodes and records the rest.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import signal
import time

import numpy as np
from tqdm import tqdm

from rlt_core.control.profile import RobotProfile
from rlt_sim.arm_cell import ArmCellConfig
from rlt_sim.arm_env import ArmPegInsertionEnv
from rlt_sim.cell import SimConfig
from rlt_sim.dataset import (
    ARM_ROBOT_TYPE,
    ROBOT_TYPE,
    DemoWriter,
    Episode,
    encode_png,
    episode_stats,
    load_demos,
    sim_features,
)
from rlt_sim.env import PegInsertionEnv
from rlt_sim.episode import run_engine_episode
from rlt_sim.expert import IMPERFECT_SIGMA_MM, ScriptedExpert


@dataclasses.dataclass
class RecordConfig:
    """What to record and how; the CLI is generated from these fields."""

    output: str = dataclasses.field(default="", metadata={"help": "dataset directory (created or resumed)"})
    episodes: int = dataclasses.field(default=1000, metadata={"help": "episodes the dataset should hold"})
    seed: int = dataclasses.field(default=0, metadata={"help": "base seed: episode attempt i uses seed+i"})
    sigma_mm: float = dataclasses.field(
        default=IMPERFECT_SIGMA_MM,
        metadata={"help": "demonstrator's believed-hole error (mm per axis; 0 = perfect expert)"},
    )
    robot_profile: str = dataclasses.field(
        default="", metadata={"help": "robot profile: a YAML path or a profile name (empty: the default cell)"}
    )
    image_size: int = dataclasses.field(
        default=0, metadata={"help": "camera image height and width (px; 0: the robot profile's)"}
    )
    clearance_mm: float = dataclasses.field(
        default=SimConfig.clearance_mm, metadata={"help": "peg-hole clearance per side (mm)"}
    )
    successes_only: bool = dataclasses.field(
        default=False, metadata={"help": "keep only successful episodes (default: keep all, flagged)"}
    )
    workers: int = dataclasses.field(default=1, metadata={"help": "parallel recording processes"})
    png_level: int = dataclasses.field(default=1, metadata={"help": "PNG zlib level 0-9 (1: fast)"})
    progress: bool = dataclasses.field(default=True, metadata={"help": "show a progress bar"})

    def sim_config(self) -> SimConfig | ArmCellConfig:
        """The cell as the robot profile describes it, the gantry's or the arm's (image size overridden where
        `image_size` is set)."""
        profile = RobotProfile.load(self.robot_profile)
        if profile.action_space == "ee_delta":
            if self.image_size:
                size = {"width": self.image_size, "height": self.image_size}
                profile = dataclasses.replace(profile, cameras=tuple(dataclasses.replace(c, **size)
                                                                     for c in profile.cameras))
            return ArmCellConfig.from_profile(profile, clearance_mm=self.clearance_mm)
        config = SimConfig.from_profile(profile, clearance_mm=self.clearance_mm)
        return dataclasses.replace(config, image_size=self.image_size) if self.image_size else config

    def recording(self) -> dict:
        """The settings that determine the data; a resumed recording must match them."""
        return {
            "generator": "rlt_sim.record",
            "demonstrator": "ScriptedExpert",
            "seed": self.seed,
            "sigma_mm": self.sigma_mm,
            "successes_only": self.successes_only,
            "png_level": self.png_level,
            "sim_config": dataclasses.asdict(self.sim_config()),
        }

    def validate(self) -> None:
        if not self.output:
            raise ValueError("output directory is required")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not (math.isfinite(self.sigma_mm) and self.sigma_mm >= 0):
            raise ValueError(f"sigma_mm must be a finite number >= 0, got {self.sigma_mm}")
        if self.image_size and not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be 0 or in [16, 1024], got {self.image_size}")
        if not (math.isfinite(self.clearance_mm) and self.clearance_mm > 0):
            raise ValueError(f"clearance_mm must be > 0, got {self.clearance_mm}")
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers must be in [1, 256], got {self.workers}")
        if not 0 <= self.png_level <= 9:
            raise ValueError(f"png_level must be in [0, 9], got {self.png_level}")
        if float(self.sim_config().control_hz) != int(self.sim_config().control_hz):
            raise ValueError("the dataset fps (control_hz) must be an integer")


def record_episode(env: PegInsertionEnv | ArmPegInsertionEnv, expert: ScriptedExpert, seed: int, profile: RobotProfile,
                   png_level: int = 1) -> Episode:
    """Run one seeded expert episode in `env`, the expert as an operator driving through the episode engine, and
    return it with PNG-encoded images.

    Seeding matches `rlt_sim.run_episode`: the env is reset with `seed`, the expert's belief error
    is drawn from ``SeedSequence([seed, 1])``.
    """
    obs, info = env.reset(seed=seed)
    expert.reset(info, np.random.SeedSequence([seed, 1]))
    frames = collections.defaultdict(list)
    raw_images = {camera: [] for camera in env.config.camera_names}

    def on_step(obs, info, action, reward, done, next_info):
        for camera in env.config.camera_names:
            raw_images[camera].append(obs["images"][camera])
        frames["observation.state"].append(obs["proprio"])
        frames["critical_phase"].append(info["critical_phase"])
        frames["privileged.peg_hole_offset"].append(info["peg_hole_offset"])
        frames["privileged.hole_pos"].append(info["hole_pos"])
        frames["action"].append(action)
        frames["next.reward"].append(reward)
        frames["next.done"].append(done)
        frames["next.success"].append(next_info["success"])

    result = run_engine_episode(env, profile, obs, info, operator=expert.act, on_step=on_step)
    flags = ("critical_phase", "next.done", "next.success")
    arrays = {key: np.asarray(v, dtype=bool if key in flags else np.float32) for key, v in frames.items()}
    images = {camera: np.stack(raw) for camera, raw in raw_images.items()}
    length = len(arrays["action"])
    index_columns = {
        "frame_index": np.arange(length),
        "timestamp": np.arange(length, dtype=np.float32) / np.float32(env.metadata["render_fps"]),
    }
    return Episode(
        images={camera: [encode_png(im, png_level) for im in stack] for camera, stack in images.items()},
        frames=arrays,
        instruction=env.instruction,
        metadata={
            "success": result["success"],
            "seed": int(seed),
            "demonstrator_sigma_mm": float(expert.hole_error_sigma_mm),
            "privileged.demonstrator_hole_error_m": [float(e) for e in expert.hole_error],
            "critical_steps": int(arrays["critical_phase"].sum()),
        },
        stats=episode_stats({**arrays, **index_columns}, images),
    )


# ----- worker processes -----

_worker: dict = {}


def _init_worker(sim_config: SimConfig | ArmCellConfig, profile: RobotProfile, sigma_mm: float,
                 png_level: int) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    env = ArmPegInsertionEnv(sim_config) if isinstance(sim_config, ArmCellConfig) else PegInsertionEnv(sim_config)
    expert = ScriptedExpert.for_profile(profile, hole_error_sigma_mm=sigma_mm)
    _worker.update(env=env, expert=expert, profile=profile, png_level=png_level)


def _record_in_worker(seed: int) -> Episode:
    return record_episode(_worker["env"], _worker["expert"], seed, _worker["profile"], _worker["png_level"])


def _episodes_in_process(config: RecordConfig, first_attempt: int):
    _init_worker(config.sim_config(), RobotProfile.load(config.robot_profile), config.sigma_mm, config.png_level)
    try:
        attempt = first_attempt
        while True:
            yield attempt, _record_in_worker(config.seed + attempt)
            attempt += 1
    finally:
        _worker.pop("env").close()


def _episodes_in_order(config: RecordConfig, first_attempt: int):
    """Yield (attempt, Episode) for attempts first_attempt, first_attempt+1, ... in order."""
    sim_config = config.sim_config()
    if config.workers == 1:
        yield from _episodes_in_process(config, first_attempt)
        return
    context = multiprocessing.get_context("spawn")  # no inherited GL contexts or threads
    with concurrent.futures.ProcessPoolExecutor(
        config.workers, mp_context=context, initializer=_init_worker,
        initargs=(sim_config, RobotProfile.load(config.robot_profile), config.sigma_mm, config.png_level),
    ) as pool:  # fmt: skip
        pending = collections.deque()
        attempt = first_attempt
        try:
            while True:
                while len(pending) < 2 * config.workers:
                    pending.append((attempt, pool.submit(_record_in_worker, config.seed + attempt)))
                    attempt += 1
                done_attempt, future = pending.popleft()
                yield done_attempt, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def record(config: RecordConfig) -> dict:
    """Record (or resume recording) `config.episodes` episodes into `config.output`; returns a summary."""
    config.validate()
    start_time = time.perf_counter()
    sim_config = config.sim_config()
    fps = int(sim_config.control_hz)
    writer = DemoWriter(config.output, sim_features(sim_config), fps, config.recording(),
                        robot_type=ARM_ROBOT_TYPE if isinstance(sim_config, ArmCellConfig) else ROBOT_TYPE)
    existing = writer.num_episodes
    recorded = attempts = 0
    successes = sum(row["success"] for row in writer.episodes)
    # Attempts are numbered from seed 0: resume after the last kept attempt (failures past it
    # are re-run and, being deterministic, dropped again).
    first_attempt = writer.episodes[-1]["seed"] - config.seed + 1 if writer.episodes else 0
    max_attempts = 50 * config.episodes + 100
    bar = tqdm(
        total=config.episodes, initial=min(existing, config.episodes), unit="ep",
        desc="recording", disable=not config.progress, dynamic_ncols=True,
    )  # fmt: skip
    try:
        if writer.num_episodes < config.episodes:
            for attempt, episode in _episodes_in_order(config, first_attempt):
                attempts += 1
                if episode.metadata["success"] or not config.successes_only:
                    writer.add_episode(episode)
                    recorded += 1
                    successes += episode.metadata["success"]
                    rate = successes / writer.num_episodes
                    bar.set_postfix(success=f"{rate:.0%}", frames=writer.num_frames, refresh=False)
                    bar.update(1)
                if writer.num_episodes >= config.episodes:
                    break
                if attempt >= max_attempts:
                    raise RuntimeError(
                        f"only {writer.num_episodes} successes in {attempt + 1} attempts; "
                        "lower --sigma-mm or drop --successes-only"
                    )
    finally:
        bar.close()
        writer.close()
    return {
        "output": str(writer.root),
        "episodes": writer.num_episodes,
        "frames": writer.num_frames,
        "recorded": recorded,
        "attempts": attempts,
        "resumed_from": existing,
        "success_rate": successes / max(1, writer.num_episodes),
        "seconds": time.perf_counter() - start_time,
    }


def parse_args(argv=None) -> RecordConfig:
    """Build a `RecordConfig` from the command line (flags mirror its fields)."""
    parser = argparse.ArgumentParser(prog="rlt_record_demos", description=__doc__.splitlines()[0])
    defaults = RecordConfig()
    for field in dataclasses.fields(RecordConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata["help"]
        if field.name == "output":
            parser.add_argument(flag, required=True, help=help_text)
        elif field.name == "successes_only":
            group = parser.add_mutually_exclusive_group()
            group.add_argument("--successes-only", dest="successes_only", action="store_true", help=help_text)
            group.add_argument(
                "--keep-failures", dest="successes_only", action="store_false", help="keep all (the default)"
            )
        elif isinstance(field.default, bool):
            action = argparse.BooleanOptionalAction
            parser.add_argument(flag, action=action, default=field.default, help=help_text)
        else:
            kind = type(getattr(defaults, field.name))
            help_text = f"{help_text} (default {field.default})"
            parser.add_argument(flag, type=kind, default=field.default, help=help_text)
    args = parser.parse_args(argv)
    config = RecordConfig(**vars(args))
    try:
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    return config


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv=None) -> None:
    config = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # finalize the metadata on SIGTERM too
    try:
        summary = record(config)
    except ValueError as error:  # e.g. resuming with other settings
        raise SystemExit(f"rlt_record_demos: error: {error}") from None
    except KeyboardInterrupt:
        kept = load_demos(config.output).num_episodes
        print(f"interrupted: {kept} finished episodes kept in {config.output}; rerun the same command to resume")
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"{summary['output']}: {summary['episodes']} episodes, {summary['frames']} frames "
        f"(recorded {summary['recorded']} now in {summary['seconds']:.1f} s), "
        f"success rate {summary['success_rate']:.1%}"
    )


if __name__ == "__main__":
    main()
