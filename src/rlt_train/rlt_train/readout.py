"""How well the peg-hole offset can be read from an RL state, given as few episodes as RL gets (a diagnostic).

  python -m rlt_train.readout --output runs/readout --episodes 400

RLT's critic has to learn to read the offset from x = (z_rl, proprio) out of a few hundred episodes, and each
episode shows it about one offset. This runs the frozen VLA in the cell (its chunks, plus `noise_mm` of
exploration noise per step in the critical phase, like RLT's early data), keeps the VLA's embeddings of the
critical-phase states on the stride, and fits probes from `train_episodes` episodes to the privileged offset,
scored on `val_episodes` held-out ones (RMSE over all their critical-phase states and over the first three of
each, where the actor's first chunk is decided). Feature sets, each with the normalised proprio:

  token      the RL token's z_rl, as the actor and critic see it
  per_camera the VLA's vision embeddings mean-pooled per camera and concatenated (standardised): a reference
  pooled     the same pooled over all cameras into one vector (a backbone other than the SmallVLA, whose
             layout of embeddings is not known here: all its valid embeddings pooled, and no per_camera)

Privileged state is read for the probes' labels only. `report.json` holds the figures.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rlt_core.control.profile import RobotProfile
from rlt_core.models.rl_token import RLTokenModel
from rlt_core.models.vla.backbone import VLABackbone, VLAInput
from rlt_core.models.vla.small_vla import SmallVLA
from rlt_core.models.vla.spec import BackboneSpec, check_backbone, load_backbone
from rlt_core.rl.actor import mlp
from rlt_core.rl.rl_state import ProprioNormalization
from rlt_core.runtime import default_models_dir, setup_torch
from rlt_sim import PegInsertionEnv, SimConfig
from rlt_train.cli import parse_config
from rlt_train.train_rl_token import ridge


@dataclass
class ReadoutConfig:
    """Readability of the peg-hole offset from few episodes."""

    output: str = 'runs/readout'
    """Folder for report.json."""
    vla: str = ''
    """The frozen VLA's backbone spec: a SmallVLA folder, pi0:/folder or module:Class[:/path] ('': the robot
    profile's committed one, rlt_bringup/models/<profile>/vla)."""
    token: tuple[str, ...] = ('',)
    """RL-token folders to compare ('': the profile's, rlt_bringup/models/<profile>/rl_token)."""
    episodes: int = 400
    """Episodes run in the cell; the last `val_episodes` are held out."""
    val_episodes: int = 100
    """Held-out episodes the probes are scored on."""
    train_episodes: tuple[int, ...] = (100, 300)
    """Numbers of training episodes the probes are fit on."""
    noise_mm: float = 0.5
    """Std of the exploration noise added to each critical-phase action, mm (0.1 normalised units)."""
    probe_steps: int = 3000
    """Adam steps of each MLP probe (2x256)."""
    robot_profile: str = ''
    """Robot profile (a YAML path or a name; empty: the default cell): the cell, H (the VLA's chunks run whole),
    the stride of the kept states and the episode length."""
    seed: int = 0
    """Seed of the episodes (seed, seed + 1, ...), the noise and the probes."""
    threads: int = 1
    """Torch threads."""

    def __post_init__(self):
        if self.val_episodes < 1 or self.episodes <= self.val_episodes:
            raise ValueError('need val_episodes >= 1 and episodes > val_episodes')
        if not self.train_episodes or max(self.train_episodes) > self.episodes - self.val_episodes \
                or min(self.train_episodes) < 1:
            raise ValueError(f'train_episodes must lie in [1, episodes - val_episodes], got {self.train_episodes}')


@torch.no_grad()
def collect(vla: VLABackbone, cfg: ReadoutConfig) -> dict:
    """Critical-phase states on the stride: VLA embeddings (float16), masks, proprio, offsets (mm), episodes."""
    profile = RobotProfile.load(cfg.robot_profile)
    chunk_len, stride = profile.vla_chunk_len, profile.stride
    env = PegInsertionEnv(SimConfig.from_profile(profile))
    rng = np.random.default_rng(cfg.seed)
    rec = {k: [] for k in ('embeddings', 'mask', 'proprio', 'offset', 'episode')}
    for episode in tqdm(range(cfg.episodes), desc='episodes'):
        obs, info = env.reset(seed=cfg.seed + episode)
        done, k, t, chunk = False, chunk_len, 0, None
        while not done:
            if k >= chunk_len or (info['critical_phase'] and t % stride == 0):
                out = vla(VLAInput.from_env(obs, env.instruction))
                if info['critical_phase']:
                    rec['embeddings'].append(out.embeddings[0].half())
                    rec['mask'].append(out.mask[0])
                    rec['proprio'].append(obs['proprio'])
                    rec['offset'].append(info['peg_hole_offset'] * 1000)
                    rec['episode'].append(episode)
                if k >= chunk_len:
                    chunk = out.chunk[0, :chunk_len].numpy()
                    if info['critical_phase']:
                        chunk = chunk + rng.normal(0, cfg.noise_mm / 1000, chunk.shape)
                    k = 0
            obs, _, terminated, truncated, info = env.step(chunk[k])
            k, t = k + 1, t + 1
            done = terminated or truncated
    env.close()
    if len(set(rec['episode'])) <= cfg.val_episodes:
        raise ValueError(f'only {len(set(rec["episode"]))} of {cfg.episodes} episodes reached the critical phase: '
                         'too few to fit and score probes')
    return {'embeddings': torch.stack(rec['embeddings']), 'mask': torch.stack(rec['mask']),
            **{k: np.asarray(rec[k]) for k in ('proprio', 'offset', 'episode')}}


def camera_means(vla: SmallVLA, embeddings: torch.Tensor) -> np.ndarray:
    """(N, cameras, D): each camera's vision embeddings averaged (the SmallVLA lays them out camera by camera)."""
    per_camera = vla.config.grid ** 2
    cameras = len(vla.config.camera_names)
    return embeddings[:, :cameras * per_camera].float().unflatten(1, (cameras, per_camera)).mean(2).numpy()


def mlp_probe(x_train, y_train, x_val, steps: int, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    xt, yt = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train, dtype=torch.float32)
    net = mlp(xt.shape[1], (256, 256), 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(xt), (256,), generator=generator)
        loss = ((net(xt[idx]) - yt[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(torch.tensor(x_val, dtype=torch.float32)).numpy()


def readout(cfg: ReadoutConfig) -> dict:
    setup_torch(cfg.threads, cfg.seed)
    profile = RobotProfile.load(cfg.robot_profile)
    models = default_models_dir(profile.name)
    vla_spec = BackboneSpec.parse(cfg.vla, profile.name)
    vla = load_backbone(vla_spec)
    check_backbone(vla, profile, vla_spec)
    data = collect(vla, cfg)
    norm = ProprioNormalization.from_vla_checkpoint(vla_spec)
    proprio = (data['proprio'] - norm.mean) / norm.std
    episode, offset = data['episode'], data['offset']
    val = episode >= cfg.episodes - cfg.val_episodes  # (an episode that never reached the phase adds nothing)
    first = np.zeros(len(episode), bool)  # the first three states of each episode's critical phase
    for e in np.unique(episode):
        first[np.flatnonzero(episode == e)[:3]] = True

    def standardised(f):
        return (f - f[~val].mean(0)) / (f[~val].std(0) + 1e-6)

    if isinstance(vla, SmallVLA):
        means = camera_means(vla, data['embeddings'])  # every camera has as many embeddings: pooled = their mean
        features = {'per_camera': standardised(means.reshape(len(means), -1)),
                    'pooled': standardised(means.mean(1))}
    else:
        mask = data['mask'][..., None].float()
        pooled = (data['embeddings'].float() * mask).sum(1) / mask.sum(1).clamp(min=1)
        features = {'pooled': standardised(pooled.numpy())}
    for name in cfg.token:
        token = RLTokenModel.load(name or models / 'rl_token')
        features[f'token:{name or "default"}'] = torch.cat([
            token.extract(data['embeddings'][i:i + 512].float(), data['mask'][i:i + 512])
            for i in range(0, len(episode), 512)]).numpy()

    def rmse(pred, mask):
        return float(np.sqrt(((pred[mask[val]] - offset[val][mask[val]]) ** 2).sum(1).mean()))

    report = {'config': asdict(cfg), 'states': int(len(episode)), 'val_states': int(val.sum()),
              'offset_rms_mm': float(np.sqrt((offset[val] ** 2).sum(1).mean())), 'probes': {}}
    everything = np.ones(len(episode), bool)
    for name, f in features.items():
        x = np.hstack([f, proprio]).astype(np.float32)
        rows = {}
        for n in cfg.train_episodes:
            train = episode < n
            mlp = mlp_probe(x[train], offset[train], x[val], cfg.probe_steps, cfg.seed)
            linear = ridge(x[train], offset[train], x[val], l2=1e-1)
            rows[n] = {'mlp_rmse_mm': rmse(mlp, everything), 'mlp_rmse_entry_mm': rmse(mlp, first),
                       'linear_rmse_mm': rmse(linear, everything)}
        report['probes'][name] = {'dim': int(x.shape[1]), 'by_train_episodes': rows}
        print(name, x.shape[1], json.dumps(rows), flush=True)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    return report


def main(argv=None):
    readout(parse_config(ReadoutConfig, argv, prog='python -m rlt_train.readout'))


if __name__ == '__main__':
    main()
