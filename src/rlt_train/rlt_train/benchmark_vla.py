"""Latency of the frozen VLA and the RL token at batch 1, and behaviour-cloning throughput.

  python -m rlt_train.benchmark_vla [--vla SPEC] [--token DIR] [--threads 1] [--device cuda] [--dtype bfloat16]
                                    [--robot-profile P]

Uses the robot profile's committed models unless told otherwise. Prints medians and p90 in ms over
`--repeats` calls on real simulator observations (`--observation blank`: black images, for a
machine without the simulator; the cost does not depend on the pixels), and, for the default
SmallVLA, behaviour-cloning samples/s at batch 64.
"""

import argparse
import time

import numpy as np
import torch

from rlt_core.control.profile import RobotProfile
from rlt_core.models.rl_token import RLTokenModel
from rlt_core.models.vla.backbone import VLAInput
from rlt_core.models.vla.small_vla import SmallVLA
from rlt_core.models.vla.spec import DTYPES, BackboneSpec, load_backbone
from rlt_core.runtime import default_models_dir, synchronize


def timed(fn, repeats, device='cpu'):
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--vla', default='',
                   help="backbone spec: SmallVLA folder, pi0:/folder or module:Class[:/path] (default: the profile's)")
    p.add_argument('--dtype', choices=DTYPES, default='float32', help="the VLA's dtype (half only on cuda)")
    p.add_argument('--token', default='', help="RL token folder (default: the profile's)")
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeats', type=int, default=200)
    p.add_argument('--train-steps', type=int, default=10)
    p.add_argument('--device', default='cpu', help="torch device: 'cpu' or 'cuda'")
    p.add_argument('--robot-profile', default='',
                   help='robot profile of the simulated observation (a YAML path or a name; default: gantry_cell)')
    p.add_argument('--observation', choices=('sim', 'blank'), default='sim',
                   help='a simulator observation, or black images (no simulator needed)')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    profile = RobotProfile.load(args.robot_profile)
    vla = load_backbone(BackboneSpec.parse(args.vla, profile.name), args.device, args.dtype)
    token = RLTokenModel.load(args.token or default_models_dir(profile.name) / 'rl_token').to(device)
    if args.observation == 'sim':
        from rlt_sim.episode import make_env
        env = make_env(profile)
        obs, _ = env.reset(seed=0)
        batch = VLAInput.from_env(obs, env.instruction)
    else:
        height, width = vla.image_shape or (224, 224)
        batch = VLAInput(images={name: torch.zeros(1, height, width, 3, dtype=torch.uint8)
                                    for name in vla.camera_names},
                            proprio=torch.zeros(1, vla.proprio_dim),
                            instruction=['insert the peg into the hole'])
    batch = VLAInput(images={k: v.to(device) for k, v in batch.images.items()},
                        proprio=batch.proprio.to(device), instruction=batch.instruction)
    with torch.no_grad():
        out = vla(batch)
        chunk_ms = timed(lambda: vla(batch), args.repeats, device)
        token_ms = timed(lambda: token.extract(out.embeddings, out.mask), args.repeats, device)
        both_ms = timed(lambda: token.extract(*(lambda o: (o.embeddings, o.mask))(vla(batch))), args.repeats, device)

    train_ms = None
    if isinstance(vla, SmallVLA):  # behaviour cloning is the default VLA's own training
        trainee = SmallVLA(vla.config).to(device)
        opt = torch.optim.AdamW(trainee.parameters(), lr=1e-4)
        big = VLAInput(images={k: v.expand(64, -1, -1, -1).contiguous() for k, v in batch.images.items()},
                       proprio=batch.proprio.expand(64, -1), instruction=batch.instruction * 64)

        def step():
            loss = trainee.predict_normalized(big).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        train_ms, _ = timed(step, args.train_steps, device)
    params = sum(p.numel() for p in vla.parameters()) / 1e6
    print(f'{type(vla).__name__}: {params:.2f} M params, {out.embeddings.shape[1]} embeddings of {vla.token_dim}, '
          f'chunk {vla.chunk_len}x{vla.action_dim}; RL token dim {token.config.token_dim}; {args.device}, '
          f'{args.threads} thread(s)')
    print(f'VLA chunk (batch 1)          median {chunk_ms[0]:6.2f} ms   p90 {chunk_ms[1]:6.2f} ms')
    print(f'token extraction (batch 1)   median {token_ms[0]:6.2f} ms   p90 {token_ms[1]:6.2f} ms')
    print(f'VLA + token (batch 1)        median {both_ms[0]:6.2f} ms   p90 {both_ms[1]:6.2f} ms')
    if train_ms is not None:
        print(f'BC training (batch 64)       {64 / (train_ms / 1000):6.1f} samples/s')


if __name__ == '__main__':
    main()
