"""Demonstrations as prior replay data: the recorded episodes turned into RLT's chunk transitions.

  rlt_demo_replay --demos data/demos --output data/demo_replay   (python -m rlt_train.demo_replay)

Every demonstration is replayed through the frozen VLA and RL-token encoder exactly as an online
episode would be: the critical phase latches on the recorded flag, every stride-th step in it
gets x = (z_rl, proprio) and the VLA's reference chunk, and `TransitionBuilder` cuts the executed
actions into C-step transitions with the recorded sparse reward (C, the stride and the episode length:
the robot profile's, `--robot-profile`). The executed chunk is the
demonstrator's; the reference stays the VLA's, so the actor's beta term still pulls towards the
VLA (the demonstrator is as imperfect as the VLA that imitates it). Episodes are cut at the
profile's max_steps, the online episode length, and bootstrap from the frame there.

The output is a replay folder (`rlt_core.rl.replay` format, source `SOURCE_DEMO`) plus
`demo_replay.json`: which demonstrations, the SHA-256 of the VLA and token that made the
states, and the robot profile (name, hash, C, stride); `train_rlt --demo-replay` refuses a folder made with
another VLA, token, chunk length or stride. It is written
to a temporary folder and renamed when complete.
"""

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rlt_core.control.phase import CriticalPhase
from rlt_core.control.profile import RobotProfile
from rlt_core.data.lerobot import image_key
from rlt_core.models.rl_token import RLTokenModel
from rlt_core.models.vla.backbone import VLABackbone, VLAInput
from rlt_core.models.vla.spec import BackboneSpec, check_backbone, load_backbone
from rlt_core.rl.replay import SOURCE_DEMO, ReplayBuffer
from rlt_core.rl.rl_state import ProprioNormalization, rl_state
from rlt_core.rl.transitions import TransitionBuilder
from rlt_core.runtime import default_models_dir, setup_torch
from rlt_sim.dataset import decode_png, load_demos
from rlt_train.train_vla import check_features

META_FILE = 'demo_replay.json'


@dataclass
class DemoReplayConfig:
    """Turn recorded demonstrations into prior replay transitions for RLT."""

    demos: str = 'data/demos'
    """LeRobot dataset recorded by rlt_record_demos."""
    output: str = 'data/demo_replay'
    """Replay folder to write (replaced if it exists)."""
    vla: str = ''
    """The frozen VLA's backbone spec: a SmallVLA folder, pi0:/folder or module:Class[:/path] ('': the robot
    profile's committed one, rlt_bringup/models/<profile>/vla)."""
    token: str = ''
    """Folder of the RL-token encoder (default: the profile's, rlt_bringup/models/<profile>/rl_token)."""
    episodes: int = 0
    """Demonstrations to convert, from the first (0: all)."""
    robot_profile: str = ''
    """Robot profile (a YAML path or a name; empty: the default cell): C (actor_chunk_len), the stride and the
    episode length (max_steps: episodes are cut there) of the transitions, as in train_rlt."""
    threads: int = 1
    """Torch threads."""

    def __post_init__(self):
        if self.episodes < 0:
            raise ValueError('episodes must be >= 0')
        self.profile()  # a missing or invalid profile fails here

    def profile(self) -> RobotProfile:
        return RobotProfile.load(self.robot_profile)


def model_digest(directory) -> str:
    """SHA-256 over a model folder's weight and config files (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.suffix in ('.safetensors', '.json') and path.name != 'report.json':
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def check_demo_replay(path, vla_dir, token_dir, chunk_len: int, stride: int) -> dict:
    """The folder's metadata; raises if it was made with another VLA, token, chunk length or stride."""
    meta_file = Path(path) / META_FILE
    if not meta_file.exists():
        raise FileNotFoundError(f'{path} has no {META_FILE}: make it with python -m rlt_train.demo_replay')
    meta = json.loads(meta_file.read_text())
    for name, directory in (('vla', vla_dir), ('token', token_dir)):
        if meta[f'{name}_sha256'] != model_digest(directory):
            raise ValueError(f'{path} was made with another {name} than {directory}; '
                             f'rerun python -m rlt_train.demo_replay with this one')
    made = meta['robot_profile'] if 'robot_profile' in meta else meta['config']  # (older folders: in the config)
    made = (made.get('actor_chunk_len', made.get('chunk_len')), made['stride'])
    if made != (chunk_len, stride):
        raise ValueError(f'{path} has chunk_len/stride {made[0]}/{made[1]}, this run {chunk_len}/{stride}')
    return meta


@torch.no_grad()
def episode_transitions(data: dict, instruction: str, vla: VLABackbone, token: RLTokenModel, norm,
                        profile: RobotProfile, episode_id: int):
    """The transitions of one recorded episode (columns as `DemoDataset.episode(..., decode_images=False)`
    returns them: only the frames that need a state are decoded), cut as the robot profile says."""
    length = len(data['action'])
    T = min(length, profile.max_steps)
    terminated = bool(data['next.success'][T - 1])
    phase = CriticalPhase()
    critical = [phase.update(signal=bool(flag)) for flag in data['critical_phase'][:T]]
    builder = TransitionBuilder(profile.actor_chunk_len, profile.stride)
    builder.reset(episode_id)
    frames = [t for t in range(T) if critical[t] and builder.needs_observation(t)]
    final = T if T < length else None  # the frame after the cut, when the recording has it
    needed = frames + ([final] if final is not None else [])
    if not frames:
        return []
    obs = VLAInput(images={c: torch.from_numpy(np.stack([decode_png(data[image_key(c)][t]) for t in needed]))
                              for c in vla.camera_names},
                      proprio=torch.from_numpy(data['observation.state'][needed]).float(),
                      instruction=[instruction] * len(needed))
    out = vla(obs)
    z_rl = token.extract(out.embeddings, out.mask).numpy()
    x = {t: rl_state(z_rl[i], data['observation.state'][t], norm) for i, t in enumerate(needed)}
    ref = {t: out.chunk[i, :profile.actor_chunk_len].numpy() for i, t in enumerate(needed)}
    transitions = []
    for t in range(T):
        transitions += builder.record(data['action'][t], float(data['next.reward'][t]), SOURCE_DEMO, critical[t],
                                      x=x.get(t), ref=ref.get(t))
    if final is not None:
        transitions += builder.finish(x[final], ref[final], terminated=False)
    elif terminated:  # no frame after success; done masks the bootstrap, so x' is only a placeholder
        transitions += builder.finish(np.zeros_like(x[frames[0]]), np.zeros_like(ref[frames[0]]), terminated=True)
    return transitions  # an unterminated recording that ends without a next frame loses its last windows


def convert(cfg: DemoReplayConfig) -> dict:
    setup_torch(cfg.threads, 0)
    profile = cfg.profile()
    vla_spec = BackboneSpec.parse(cfg.vla, profile.name)
    token_dir = Path(cfg.token or default_models_dir(profile.name) / 'rl_token')
    vla = load_backbone(vla_spec)
    check_backbone(vla, profile, vla_spec)
    token = RLTokenModel.load(token_dir)
    norm = ProprioNormalization.from_vla_checkpoint(vla_spec)
    demos = load_demos(cfg.demos)
    n = demos.num_episodes if cfg.episodes == 0 else min(cfg.episodes, demos.num_episodes)
    out, tmp = Path(cfg.output), Path(cfg.output + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    replay = ReplayBuffer(token.config.token_dim + norm.dim, profile.actor_chunk_len, profile.action_dim, capacity=1,
                          intervention_capacity=1, path=tmp, fsync_every=10**9)
    check_features(demos, {c: vla.image_shape for c in vla.camera_names}, vla.proprio_dim, vla.action_dim,
                   f'the backbone {cfg.vla}')
    columns = [*map(image_key, vla.camera_names), 'observation.state', 'action', 'next.reward', 'next.success',
               'critical_phase', 'task_index']
    count = successes = 0
    for ep in tqdm(range(n), desc='demos -> transitions'):
        data = demos.episode(ep, columns, decode_images=False)
        new = episode_transitions(data, demos.tasks[int(data['task_index'][0])], vla, token, norm, profile, ep)
        for transition in new:
            replay.add(transition)
        count += len(new)
        successes += int(bool(data['next.success'][min(len(data['action']), profile.max_steps) - 1]))
    replay.close()
    meta = {'config': asdict(cfg), 'robot_profile': {'name': profile.name, 'hash': profile.hash,
                                                     'actor_chunk_len': profile.actor_chunk_len,
                                                     'stride': profile.stride, 'max_steps': profile.max_steps},
            'demos': str(Path(cfg.demos).resolve()), 'episodes': n,
            'successful_episodes': successes, 'transitions': count,
            'vla_sha256': model_digest(vla_spec.path), 'token_sha256': model_digest(token_dir)}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(json.dumps({k: meta[k] for k in ('episodes', 'successful_episodes', 'transitions')}))
    return meta


def main(argv=None):
    from rlt_train.cli import parse_config
    convert(parse_config(DemoReplayConfig, argv, prog='python -m rlt_train.demo_replay'))


if __name__ == '__main__':
    main()
