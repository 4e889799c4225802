"""Behaviour cloning of the default VLA on recorded demonstrations.

  python -m rlt_train.train_vla --demos data/demos --output runs/vla

Reads a LeRobot v3.0 dataset (recorded by `rlt_record_demos` or from the graph) whose features match the robot
profile: an image column per camera, `observation.state` and `action`. Trains `SmallVLA` to predict the next
H actions (the robot profile's vla_chunk_len) from the camera images, proprioception and the instruction, and writes
`model.safetensors` + `config.json`, TensorBoard scalars and `report.json` (validation loss and
closed-loop success in the simulator) to the output folder.
"""

import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rlt_core.control.profile import RobotProfile
from rlt_core.data.lerobot import image_key
from rlt_core.models.vla.backbone import VLAInput
from rlt_core.models.vla.small_vla import SmallVLA, SmallVLAConfig
from rlt_core.runtime import setup_torch
from rlt_sim.dataset import decode_png, load_demos
from rlt_sim.episode import make_env
from rlt_train.cli import parse_config
from rlt_train.rollout import evaluate_vla


@dataclass
class VLATrainConfig:
    """Behaviour cloning of the default VLA."""

    demos: str = 'data/demos'
    """LeRobot v3.0 dataset: an image column per camera of the robot profile, observation.state, action."""
    output: str = 'runs/vla'
    """Folder for the checkpoint, TensorBoard logs and report."""
    steps: int = 6000
    """Gradient steps."""
    batch_size: int = 64
    """Frames per gradient step."""
    lr: float = 5e-4
    """Peak AdamW learning rate (cosine decay after a short warmup)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    frame_stride: int = 2
    """Use every k-th frame of each episode."""
    max_frames: int = 60000
    """At most this many training frames are loaded (uint8, about 83 kB each)."""
    val_episodes: int = 50
    """Episodes held out for the validation loss."""
    robot_profile: str = ''
    """Robot profile (a YAML path or a name; empty: the default cell): H (vla_chunk_len), the closed-loop
    evaluation's cell."""
    d_model: int = 128
    """Transformer width."""
    n_layers: int = 3
    """Transformer layers."""
    stem_channels: tuple[int, ...] = (16, 32, 64, 128)
    """Channels of the CNN stem."""
    seed: int = 0
    """Seed of initialisation and batch order."""
    threads: int = 2
    """Torch threads."""
    eval_episodes: int = 50
    """Closed-loop episodes in the simulator after training (0: skip, as for a robot the simulator does not model)."""
    eval_seed: int = 100_000
    """Seed of the first evaluation episode (kept apart from the demonstrations' seeds)."""
    execute_steps: int = 0
    """Actions of each chunk executed before the VLA is queried again (0: the whole chunk, H)."""

    def __post_init__(self):
        for name in ('steps', 'batch_size', 'frame_stride', 'max_frames', 'threads'):
            if getattr(self, name) <= 0:
                raise ValueError(f'{name} must be positive')
        if not 0 <= self.execute_steps <= self.profile().vla_chunk_len:
            raise ValueError('execute_steps must be in [0, H], the profile\'s vla_chunk_len')

    def profile(self) -> RobotProfile:
        return RobotProfile.load(self.robot_profile)


def chunk_targets(actions: np.ndarray, chunk_len: int) -> np.ndarray:
    """(T, A) actions -> (T, H, A): the next H actions from each step, zero (hold) after the end."""
    T, A = actions.shape
    padded = np.concatenate([actions, np.zeros((chunk_len, A), actions.dtype)])
    return np.stack([padded[t:t + chunk_len] for t in range(T)])


def check_features(demos, cameras: dict, proprio_dim: int, action_dim: int, reader: str) -> None:
    """Raise one ValueError naming every way the dataset's features differ from what `reader` reads.

    `cameras` maps each camera name to the (height, width) its images must have (None: any size); the state
    holds `proprio_dim` values (joint positions, then velocities), an action `action_dim`.
    """
    features = demos.features
    stored = [k.removeprefix('observation.images.') for k, f in features.items() if f['dtype'] == 'image']
    problems = []
    for camera, shape in cameras.items():
        if image_key(camera) not in features:
            problems.append(f'no images of camera {camera!r} (the dataset has {stored})')
        elif shape is not None and tuple(features[image_key(camera)]['shape'][:2]) != tuple(shape):
            problems.append(f'camera {camera!r} is {features[image_key(camera)]["shape"][:2]}, not {list(shape)}')
    for key, dim in (('observation.state', proprio_dim), ('action', action_dim)):
        if key not in features:
            problems.append(f'no {key} column')
        elif features[key]['shape'] != [dim]:
            problems.append(f'{key} has {features[key]["shape"][0]} values, not {dim}')
    if problems:
        raise ValueError(f'the dataset {demos.root} does not fit {reader}: ' + '; '.join(problems))


def split_episodes(num_episodes: int, val_episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(train, evaluation, held_out): at most `val_episodes` and a fifth of the episodes, drawn by `seed`, are held
    out; with fewer than 5 episodes none is, and the evaluation reads the training episodes."""
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = min(val_episodes, num_episodes // 5)
    return (order[n_val:], order[:n_val], True) if n_val else (order, order, False)


def load_frames(demos, episodes, cameras, frame_stride: int, chunk_len: int, max_frames: int, desc: str) -> dict:
    """Images of `cameras`, proprio, chunk targets and instructions of every `frame_stride`-th frame."""
    images = {c: [] for c in cameras}
    proprio, targets, tasks = [], [], []
    total = 0
    for ep in tqdm(episodes, desc=desc, leave=False):
        data = demos.episode(ep, [*map(image_key, cameras), 'observation.state', 'action', 'task_index'],
                             decode_images=False)
        keep = np.arange(0, len(data['action']), frame_stride)
        for c in cameras:  # decode only the frames kept
            images[c].append(np.stack([decode_png(data[image_key(c)][i]) for i in keep]))
        proprio.append(data['observation.state'][keep])
        targets.append(chunk_targets(data['action'], chunk_len)[keep])
        tasks += [demos.tasks[int(i)] for i in data['task_index'][keep]]
        total += len(keep)
        if total >= max_frames:
            break
    return {'images': {c: torch.from_numpy(np.concatenate(v)) for c, v in images.items()},
            'proprio': torch.from_numpy(np.concatenate(proprio)).float(),
            'targets': torch.from_numpy(np.concatenate(targets)).float(), 'tasks': tasks}


def batch_at(frames, idx) -> tuple[VLAInput, torch.Tensor]:
    obs = VLAInput(images={c: v[idx] for c, v in frames['images'].items()}, proprio=frames['proprio'][idx],
                      instruction=[frames['tasks'][i] for i in idx.tolist()])
    return obs, frames['targets'][idx]


@torch.no_grad()
def validation_loss(model: SmallVLA, frames, batch_size=256) -> float:
    model.eval()
    losses = []
    n = len(frames['tasks'])
    for start in range(0, n, batch_size):
        obs, target = batch_at(frames, torch.arange(start, min(n, start + batch_size)))
        pred = model.predict_normalized(obs)
        losses.append(((pred - model.normalize_actions(target)) ** 2).mean().item() * len(target))
    model.train()
    return sum(losses) / n


def train(cfg: VLATrainConfig) -> dict:
    setup_torch(cfg.threads, cfg.seed)
    profile = cfg.profile()
    H = profile.vla_chunk_len
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {(c.height, c.width) for c in profile.cameras}
    if len(sizes) > 1 or any(h != w for h, w in sizes):
        raise ValueError(f'SmallVLA reads square images of one size; the cameras of {profile.name!r} are {sizes}')
    if cfg.eval_episodes:  # before hours of training, not after
        try:
            make_env(profile, render=False).close()
        except ValueError as e:
            raise ValueError(f'the closed-loop evaluation runs in the simulated cell, which cannot be built for '
                             f'{profile.name!r} ({e}); --eval-episodes 0 trains without it') from None
    demos = load_demos(cfg.demos)
    check_features(demos, {c.name: (c.height, c.width) for c in profile.cameras}, profile.proprio_dim,
                   profile.action_dim, f'the robot profile {profile.name!r}')
    cameras = profile.camera_names
    train_eps, val_eps, held_out = split_episodes(demos.num_episodes, cfg.val_episodes, cfg.seed)
    train_frames = load_frames(demos, train_eps, cameras, cfg.frame_stride, H, cfg.max_frames,
                               'loading train frames')
    val_frames = (load_frames(demos, val_eps, cameras, cfg.frame_stride, H, 10**9, 'loading val frames')
                  if held_out else train_frames)
    n_train = len(train_frames['tasks'])
    print(f'{demos.num_episodes} episodes; {n_train} train frames, '
          + (f'{len(val_frames["tasks"])} val frames' if held_out else 'none held out (fewer than 5 episodes)'))

    # Normalisation from the training data.
    targets = train_frames['targets'].flatten(0, 1)
    vla_cfg = SmallVLAConfig(
        camera_names=cameras, image_size=next(iter(train_frames['images'].values())).shape[1],
        proprio_dim=train_frames['proprio'].shape[1], action_dim=targets.shape[1], chunk_len=H,
        d_model=cfg.d_model, n_layers=cfg.n_layers, stem_channels=cfg.stem_channels,
        proprio_mean=tuple(train_frames['proprio'].mean(0).tolist()),
        proprio_std=tuple((train_frames['proprio'].std(0) + 1e-6).tolist()),
        action_mean=tuple(targets.mean(0).tolist()), action_std=tuple((targets.std(0) + 1e-6).tolist()),
        extra={'command': 'python -m rlt_train.train_vla ' + shlex.join(sys.argv[1:]), 'demos': str(cfg.demos)})
    model = SmallVLA(vla_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, min(200, cfg.steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    writer = SummaryWriter(str(out / 'tensorboard'))
    generator = torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    bar = tqdm(range(cfg.steps), desc='behaviour cloning')
    for step in bar:
        idx = torch.randint(n_train, (cfg.batch_size,), generator=generator)
        obs, target = batch_at(train_frames, idx)
        loss = ((model.predict_normalized(obs) - model.normalize_actions(target)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            writer.add_scalar('losses/bc', loss.item(), step)
            writer.add_scalar('charts/samples_per_s', (step + 1) * cfg.batch_size / (time.time() - start), step)
            bar.set_postfix(loss=f'{loss.item():.4f}')
        if (step + 1) % 1000 == 0 or step + 1 == cfg.steps:
            val = validation_loss(model, val_frames)
            writer.add_scalar('losses/bc_val', val, step)
            model.save(out)
    report = {'config': asdict(cfg), 'robot_profile': {'name': profile.name, 'hash': profile.hash},
              'train_frames': n_train, 'val_loss' if held_out else 'train_loss': validation_loss(model, val_frames),
              'train_minutes': (time.time() - start) / 60}
    if cfg.eval_episodes:
        model.freeze()
        bar = tqdm(total=cfg.eval_episodes, desc='closed-loop evaluation')
        report['closed_loop'] = evaluate_vla(model, cfg.eval_episodes, cfg.eval_seed, cfg.execute_steps or H,
                                             profile, progress=lambda r: bar.update(1))
        bar.close()
        for k, v in report['closed_loop'].items():
            writer.add_scalar(f'eval/{k}', v, cfg.steps)
    writer.close()
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != 'config'}, indent=1))
    return report


def main(argv=None):
    train(parse_config(VLATrainConfig, argv, prog='python -m rlt_train.train_vla'))


if __name__ == '__main__':
    main()
