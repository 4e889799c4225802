"""Phase 1: train the RL token on a frozen VLA's embeddings of the demonstrations.

  python -m rlt_train.train_rl_token --vla runs/vla --demos data/demos --output runs/rl_token

Computes the VLA's final-layer embeddings z_1..z_M for demonstration frames, trains the
encoder/decoder with the reconstruction loss L_ro (optionally fine-tuning the VLA jointly with
weight alpha), then drops the decoder and saves the frozen encoder. Any LeRobot v3.0 dataset with the
backbone's cameras, `observation.state` and `action` will do. `report.json` holds the evidence that the token
carries the task: held-out reconstruction error against the mean-embedding baseline and, where the dataset has
the simulator's ground truth (`privileged.peg_hole_offset`), probes from z_rl alone to the peg-hole offset.
"""

import hashlib
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

from rlt_core.models.rl_token import RLTokenConfig, RLTokenModel
from rlt_core.models.vla.backbone import VLABackbone
from rlt_core.models.vla.small_vla import SmallVLA
from rlt_core.models.vla.spec import BackboneSpec, load_backbone
from rlt_core.runtime import setup_torch
from rlt_sim.dataset import load_demos
from rlt_train.cli import parse_config
from rlt_train.train_vla import batch_at, check_features, load_frames, split_episodes


@dataclass
class TokenTrainConfig:
    """RL-token training (phase 1) on a frozen VLA."""

    vla: str = 'runs/vla'
    """The frozen VLA's backbone spec: a SmallVLA folder, pi0:/folder or module:Class[:/path]."""
    demos: str = 'data/demos'
    """LeRobot v3.0 dataset: the backbone's cameras, observation.state, action (privileged.*: probes too)."""
    output: str = 'runs/rl_token'
    """Folder for the encoder, TensorBoard logs and report."""
    steps: int = 3000
    """Gradient steps (the paper: 2k-10k)."""
    batch_size: int = 256
    """Frames per step."""
    lr: float = 1e-3
    """AdamW (peak) learning rate."""
    lr_schedule: str = 'cosine'
    """'cosine': linear warm-up over `warmup_steps`, then cosine decay to a tenth; 'constant'."""
    warmup_steps: int = 200
    """Steps of linear learning-rate warm-up (cosine schedule)."""
    token_dim: int = 64
    """Dimension of z_rl."""
    d_model: int = 128
    """Width of the token encoder and decoder."""
    encoder_layers: int = 2
    """Layers of the encoder g_phi."""
    decoder_layers: int = 2
    """Layers of the decoder d_phi."""
    alpha: float = 0.0
    """Weight of the VLA's own loss when fine-tuning it jointly (0: the VLA stays frozen)."""
    frame_stride: int = 2
    """Use every k-th frame of each episode."""
    max_frames: int = 30000
    """At most this many training frames."""
    val_episodes: int = 100
    """Held-out episodes for the report."""
    seed: int = 0
    """Seed of initialisation, batch order and the episode split."""
    threads: int = 2
    """Torch threads."""
    device: str = 'cpu'
    """Torch device of the training ('cuda' on a GPU: minutes instead of hours at the defaults)."""
    cache_dir: str = ''
    """Folder to keep the frozen VLA's embeddings in between runs (alpha = 0 only; '': do not cache)."""
    init: str = ''
    """Start from this saved token's encoder ('': from scratch; a saved token has no decoder, so its decoder
    starts fresh). With --steps 0 only the statistics are fitted again (and no reconstruction is reported)."""
    whiten: bool = True
    """Whiten z_rl with the critical-phase training frames (RLTokenModel.set_statistics; all training frames where
    the dataset has no critical_phase column): the offset the actor and critic need varies little there, and
    whitening gives it unit scale. --no-whiten: per-dimension standardisation over all training frames."""

    def __post_init__(self):
        if self.lr_schedule not in ('cosine', 'constant'):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.device != 'cpu' and self.alpha > 0:
            raise ValueError('a device other than cpu trains on cached embeddings: alpha must be 0')
        if self.steps < 0 or (self.steps == 0 and not self.init):
            raise ValueError('steps must be > 0, or 0 with --init (statistics only)')


@torch.no_grad()
def embed(vla: VLABackbone, frames: dict, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The VLA's final-layer embeddings (N, M, D) as float16, with masks (N, M)."""
    zs, masks = [], []
    n = len(frames['tasks'])
    for start in tqdm(range(0, n, batch_size), desc='embedding frames', leave=False):
        obs, _ = batch_at(frames, torch.arange(start, min(n, start + batch_size)))
        out = vla(obs)
        zs.append(out.embeddings.half())
        masks.append(out.mask)
    return torch.cat(zs), torch.cat(masks)


def embed_both(vla: VLABackbone, train_frames: dict, val_frames: dict) -> tuple:
    """(z_train, m_train, z_val, m_val); the evaluation frames are embedded apart only when they are other frames
    (none held out: they are the training frames)."""
    z_train, m_train = embed(vla, train_frames)
    z_val, m_val = (z_train, m_train) if val_frames is train_frames else embed(vla, val_frames)
    return z_train, m_train, z_val, m_val


def cached_embeddings(cfg: TokenTrainConfig, vla: VLABackbone, train_frames: dict, val_frames: dict) -> tuple:
    """(z_train, m_train, z_val, m_val) of the frozen VLA, from `cfg.cache_dir` when computed before.

    The key covers the VLA's spec and weights, the dataset and the frame selection, so a stale cache is never read.
    """
    if not cfg.cache_dir:
        return embed_both(vla, train_frames, val_frames)
    spec = BackboneSpec.parse(cfg.vla)
    key = hashlib.sha256(str(spec).encode())
    for weights in sorted(Path(spec.path).glob('*.safetensors')) if spec.path else ():
        key.update(weights.read_bytes())
    key.update(json.dumps([str(Path(cfg.demos).resolve()), cfg.frame_stride, cfg.max_frames, cfg.val_episodes,
                           cfg.seed, len(train_frames['tasks']), len(val_frames['tasks'])]).encode())
    path = Path(cfg.cache_dir, f'embeddings-{key.hexdigest()[:16]}.pt')
    if path.exists():
        print(f'embeddings from {path}')
        cached = torch.load(path)
        return cached['z_train'], cached['m_train'], cached['z_val'], cached['m_val']
    z_train, m_train, z_val, m_val = embed_both(vla, train_frames, val_frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    torch.save({'z_train': z_train, 'm_train': m_train, 'z_val': z_val, 'm_val': m_val}, tmp)
    tmp.replace(path)
    return z_train, m_train, z_val, m_val


OFFSET_KEY = 'privileged.peg_hole_offset'
"""The simulator's ground truth the probes read: peg tip minus hole, xy (m)."""
CRITICAL_KEY = 'critical_phase'
"""The per-frame flag of the critical phase."""


def frame_labels(demos, episodes, stride: int, max_frames: int) -> dict:
    """Per-frame labels aligned with `load_frames`: 'episode' ids, and 'critical' flags and peg-hole 'offset's (m)
    where the dataset has those columns (the key is absent where it has not)."""
    columns = [k for k in (CRITICAL_KEY, OFFSET_KEY) if k in demos.features]
    labels, total = {'episode': [], 'critical': [], 'offset': []}, 0
    for ep in episodes:
        d = demos.episode(ep, [*columns, 'episode_index'])
        keep = np.arange(0, len(d['episode_index']), stride)
        labels['episode'].append(np.full(len(keep), ep))
        if CRITICAL_KEY in d:
            labels['critical'].append(d[CRITICAL_KEY][keep].astype(bool))
        if OFFSET_KEY in d:
            labels['offset'].append(d[OFFSET_KEY][keep].astype(np.float64))
        total += len(keep)
        if total >= max_frames:
            break
    return {k: np.concatenate(v) for k, v in labels.items() if v}


def ridge(x_train, y_train, x_val, l2=1e-2):
    """Linear least-squares probe on standardised inputs; predictions for x_val."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = np.hstack([(x_train - mean) / std, np.ones((len(x_train), 1))])
    w = np.linalg.solve(xt.T @ xt + l2 * np.eye(xt.shape[1]), xt.T @ y_train)
    return np.hstack([(x_val - mean) / std, np.ones((len(x_val), 1))]) @ w


def probe_report(z_train, y_train, z_val, y_val, critical_val, seed=0, critical_train=None) -> dict:
    """Probes z_rl -> xy offset on held-out episodes: R^2 overall and RMSE (mm) in the critical phase.

    `linear` and `mlp` (2 layers) are fit on whole episodes; `linear_critical` on the training
    episodes' critical-phase frames only, the states the actor and critic see.
    """
    def rmse_mm(pred, y):
        return float(np.sqrt(((pred - y) ** 2).sum(1).mean()) * 1000)

    def scores(pred):
        r2 = 1.0 - ((pred - y_val) ** 2).sum() / ((y_val - y_val.mean(0)) ** 2).sum()
        critical = rmse_mm(pred[critical_val], y_val[critical_val]) if critical_val.any() else None
        return {'r2': float(r2), 'rmse_critical_mm': critical}

    linear = scores(ridge(z_train, y_train, z_val))
    x_mean, x_std = z_train.mean(0), z_train.std(0) + 1e-6
    xt, xv = (z_train - x_mean) / x_std, (z_val - x_mean) / x_std

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    steps = 10_000
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    xt_t, yt_t = torch.tensor(xt, dtype=torch.float32), torch.tensor(y_train * 1000, dtype=torch.float32)
    for _ in range(steps):
        idx = torch.randint(len(xt_t), (512,))
        loss = torch.nn.functional.mse_loss(net(xt_t[idx]), yt_t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        mlp = scores(net(torch.tensor(xv, dtype=torch.float32)).numpy() / 1000)
    report = {'linear': linear, 'mlp': mlp}
    if critical_train is not None and critical_train.any() and critical_val.any():
        pred = ridge(z_train[critical_train], y_train[critical_train], z_val[critical_val], l2=1e-1)
        report['linear_critical'] = {'rmse_critical_mm': rmse_mm(pred, y_val[critical_val])}
    return report


def train(cfg: TokenTrainConfig) -> dict:
    setup_torch(cfg.threads, cfg.seed)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    vla = load_backbone(cfg.vla)  # frozen
    if cfg.alpha > 0:
        if not isinstance(vla, SmallVLA):
            raise ValueError(f'fine-tuning the VLA jointly (alpha > 0) needs a SmallVLA; {cfg.vla} is a '
                             f'{type(vla).__name__}')
        vla.train().requires_grad_(True)
    demos = load_demos(cfg.demos)
    check_features(demos, {c: vla.image_shape for c in vla.camera_names}, vla.proprio_dim, vla.action_dim,
                   f'the backbone {cfg.vla}')
    train_eps, val_eps, held_out = split_episodes(demos.num_episodes, cfg.val_episodes, cfg.seed)
    h = vla.chunk_len
    cameras = vla.camera_names
    train_frames = load_frames(demos, train_eps, cameras, cfg.frame_stride, h, cfg.max_frames, 'loading train frames')
    val_frames = (load_frames(demos, val_eps, cameras, cfg.frame_stride, h, 10**9, 'loading val frames')
                  if held_out else train_frames)
    train_labels = frame_labels(demos, train_eps, cfg.frame_stride, cfg.max_frames)
    val_labels = frame_labels(demos, val_eps, cfg.frame_stride, 10**9)

    if cfg.alpha == 0:
        z_train, m_train, z_val, m_val = cached_embeddings(cfg, vla, train_frames, val_frames)
    else:
        (z_val, m_val), z_train, m_train = embed(vla, val_frames), None, None
    m = z_val.shape[1]
    if cfg.init:  # its own architecture; the options that shape a new token do not apply
        token = RLTokenModel.load(cfg.init).to(cfg.device)
        if token.config.embed_dim != vla.token_dim or token.config.max_tokens < m:
            raise ValueError(f'{cfg.init} reads {token.config.embed_dim}-d embeddings (up to '
                             f'{token.config.max_tokens}); this VLA gives {m} of {vla.token_dim}')
    else:
        token = RLTokenModel(RLTokenConfig(embed_dim=vla.token_dim, max_tokens=m, token_dim=cfg.token_dim,
                                      d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
                                      decoder_layers=cfg.decoder_layers)).to(cfg.device)
    token.clear_statistics()  # train on and read out the raw z_rl
    params = list(token.parameters()) + (list(vla.parameters()) if cfg.alpha > 0 else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    def lr_factor(i):
        if cfg.lr_schedule == 'constant':
            return 1.0
        warmup = min(1.0, (i + 1) / max(1, cfg.warmup_steps))
        return warmup * (0.1 + 0.45 * (1 + math.cos(math.pi * i / max(1, cfg.steps))))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    writer = SummaryWriter(str(out / 'tensorboard'))
    generator = torch.Generator().manual_seed(cfg.seed)
    n_train = len(train_frames['tasks'])
    start = time.time()
    bar = tqdm(range(cfg.steps), desc='RL token')
    for step in bar:
        idx = torch.randint(n_train, (cfg.batch_size,), generator=generator)
        if cfg.alpha > 0:  # the paper's joint fine-tuning: L_ro reaches the VLA, plus alpha * its BC loss
            obs, target = batch_at(train_frames, idx)
            z, mask, query_out = vla.encode(obs)
            vla_loss = ((vla.action_head(query_out) - vla.normalize_actions(target)) ** 2).mean()
            loss = token.reconstruction_loss(z, mask).mean() + cfg.alpha * vla_loss
        else:
            loss = token.reconstruction_loss(z_train[idx].to(cfg.device).float(), m_train[idx].to(cfg.device)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            writer.add_scalar('losses/reconstruction', loss.item(), step)
            bar.set_postfix(loss=f'{loss.item():.3f}')
    token = token.cpu().eval()
    if cfg.alpha > 0:  # the fine-tuned VLA is the one the token reads from now on
        vla.freeze()
        vla.save(out / 'vla')
        z_train, m_train, z_val, m_val = embed_both(vla, train_frames, val_frames)

    # Evidence: held-out reconstruction against the mean-embedding baseline, and probes on z_rl.
    with torch.no_grad():
        reconstruction = None  # with --steps 0 the decoder is untrained: nothing to report
        if cfg.steps:
            mean_embedding = (z_train.float() * m_train[..., None]).sum(0) / m_train.sum(0).clamp(min=1)[:, None]
            baseline = ((z_val.float() - mean_embedding) ** 2).sum(-1).mul(m_val).sum(-1).mean()
            err = torch.cat([token.reconstruction_loss(z_val[i:i + 256].float(), m_val[i:i + 256])
                             for i in range(0, len(z_val), 256)]).mean()
            reconstruction = {'val_error': float(err), 'mean_embedding_baseline': float(baseline),
                              'ratio': float(err / baseline)}
        zr_train = torch.cat([token.extract(z_train[i:i + 512].float(), m_train[i:i + 512])
                              for i in range(0, len(z_train), 512)]).numpy()
        zr_val = torch.cat([token.extract(z_val[i:i + 512].float(), m_val[i:i + 512])
                            for i in range(0, len(z_val), 512)]).numpy()
    # z_rl is normalised from here on (the probes are invariant to it): whitened with the critical-phase frames
    # the actor and critic see (all frames where the dataset does not flag the critical phase), or standardised
    # with all frames.
    if cfg.whiten and 'critical' in train_labels:
        stats_frames = zr_train[train_labels['critical'][:len(zr_train)]]
        statistics = f'whitened with the {len(stats_frames)} critical-phase training frames'
    else:
        stats_frames = zr_train
        statistics = f'{"whitened" if cfg.whiten else "standardised"} with all {len(zr_train)} training frames'
        if cfg.whiten:
            statistics += f': the dataset has no {CRITICAL_KEY} column'
    if len(stats_frames) < 4 * token.config.token_dim:
        raise ValueError(f'{len(stats_frames)} frames are too few to fit the statistics of a '
                         f'{token.config.token_dim}-d token' + (' (--no-whiten uses all frames)' if cfg.whiten else ''))
    token.set_statistics(torch.from_numpy(stats_frames), whiten=cfg.whiten)
    if 'offset' in train_labels:
        critical_val = val_labels.get('critical', np.zeros(len(zr_val), bool))
        probes = probe_report(zr_train, train_labels['offset'], zr_val, val_labels['offset'], critical_val, cfg.seed,
                              critical_train=train_labels.get('critical'))
    else:
        probes = f'skipped: the dataset has no {OFFSET_KEY} (the simulator\'s ground truth)'
    report = {
        'config': asdict(cfg), 'command': 'python -m rlt_train.train_rl_token ' + shlex.join(sys.argv[1:]),
        'train_frames': n_train, 'val_frames': len(val_frames['tasks']) if held_out else 0,
        'evaluated_on': 'held-out episodes' if held_out else f'the training frames ({demos.num_episodes} episodes '
                                                             'are too few to hold any out)',
        'train_minutes': (time.time() - start) / 60,
        'reconstruction': reconstruction, 'statistics': statistics, 'probe_offset': probes,
    }
    token.save(out)
    writer.close()
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != 'config'}, indent=1))
    return report


def main(argv=None):
    train(parse_config(TokenTrainConfig, argv, prog='python -m rlt_train.train_rl_token'))


if __name__ == '__main__':
    main()
