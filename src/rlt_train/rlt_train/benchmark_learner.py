"""Learner throughput against the matmul peak of its device (the CPU, or a GPU).

  python -m rlt_train.benchmark_learner [--threads 2] [--updates 1000] [--device cuda] [--robot-profile P]

Measures the device's float32 matmul peak (GFLOP/s, large square matmuls), records the matmuls
that one critic:actor cycle of eager `RLTLearner.update` calls runs (their shapes and strides, from
the dispatcher) and counts their FLOPs, and times real updates on batches sampled from a filled
replay buffer (sampling on the CPU, as in the learner node). Each repeat measures, back to back so
that all see the same machine: the peak; the recorded matmuls alone, replayed at their shapes (what
any update made of these library matmuls costs at least); the updates/s of `ReferenceTD3`
(`rlt_core.rl.td3_reference`: the same update written the plain way, as CleanRL writes TD3); and
the learner's updates/s. Prints the medians of the peak, the implied limit in updates/s, the
matmuls-alone and plain-loop rates, the measured updates/s and their ratio to the limit, with its
range. On a GPU these tiny networks are bound by kernel launches, not by FLOPs, so the ratio is
small there; updates/s is the figure to compare.
"""

import argparse
import json
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rlt_core.control.profile import RobotProfile
from rlt_core.rl.replay import ChunkTransition, ReplayBuffer
from rlt_core.rl.rl_state import ProprioNormalization
from rlt_core.rl.td3 import RLTLearner, TD3Config
from rlt_core.rl.td3_reference import ReferenceTD3
from rlt_core.runtime import default_models_dir, synchronize


def matmul_peak_gflops(n: int = 1024, repeats: int = 20, device: str = 'cpu') -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / float(np.median(times)) / 1e9


MATMULS = {torch.ops.aten.mm.default: torch.mm, torch.ops.aten.addmm.default: torch.mm,
           torch.ops.aten.bmm.default: torch.bmm, torch.ops.aten.baddbmm.default: torch.bmm}
"""The matmul ops an update's forward and backward passes dispatch, and the product each computes
(the bias of addmm / baddbmm left out)."""


class MatmulRecorder(TorchDispatchMode):
    """Records (op, shape and stride of both factors) of every matmul dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            a, b = args[1:3] if func in (torch.ops.aten.addmm.default, torch.ops.aten.baddbmm.default) else args[:2]
            self.calls.append((func, tuple(a.shape), a.stride(), tuple(b.shape), b.stride()))
        return func(*args, **(kwargs or {}))


def record_matmuls(learner: RLTLearner, batches) -> list:
    """The matmuls of `learner.update` on each batch (an eager learner: compiled code is opaque)."""
    with MatmulRecorder() as recorder:
        for batch in batches:
            learner.update(learner.prepare(batch))
    return recorder.calls


def matmul_flops(calls) -> int:
    """2 * M * K * N per product (times the batch of a bmm)."""
    return sum(2 * int(np.prod(a_shape)) * b_shape[-1] for _, a_shape, _, b_shape, _ in calls)


def replay_matmuls(calls, device, repeats: int = 20) -> float:
    """Seconds the recorded matmuls take, replayed on random factors of the same shapes and strides."""
    def factor(shape, stride):
        size = 1 + sum((n - 1) * st for n, st in zip(shape, stride, strict=True))
        return torch.randn(size, device=device).as_strided(shape, stride)
    ops = [(MATMULS[func], factor(sa, ta), factor(sb, tb)) for func, sa, ta, sb, tb in calls]
    times = []
    for _ in range(repeats + 3):
        synchronize(device)
        t0 = time.perf_counter()
        for op, a, b in ops:
            op(a, b)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[3:]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--updates', type=int, default=1000, help='timed updates per repeat')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--state-dim', type=int, default=0,
                   help="dimension of x (0: the committed models' token_dim + proprio_dim)")
    p.add_argument('--robot-profile', default='',
                   help='robot profile (a YAML path or a name; default: gantry_cell): C, action dimension and limits')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--device', default='cpu', help="torch device of the learner: 'cpu' or 'cuda'")
    p.add_argument('--critic-layer-norm', action=argparse.BooleanOptionalAction, default=TD3Config.critic_layer_norm,
                   help='LayerNorm in the critics, as the learner uses by default')
    p.add_argument('--compile', action=argparse.BooleanOptionalAction, default=True,
                   help='the update compiled by TorchInductor, as the learner runs it by default')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    profile = RobotProfile.load(args.robot_profile)
    if args.state_dim <= 0:
        models = default_models_dir(profile.name)
        args.state_dim = (json.loads((models / 'rl_token' / 'rl_token.json').read_text())['token_dim']
                          + ProprioNormalization.from_vla_checkpoint(models / 'vla').dim)

    C, A = profile.actor_chunk_len, profile.action_dim
    cfg = profile.actor_config(args.state_dim)
    td3 = TD3Config(batch_size=args.batch_size, critic_layer_norm=args.critic_layer_norm)
    learner = RLTLearner(cfg, td3, seed=0, device=args.device, compile=args.compile)
    replay = ReplayBuffer(args.state_dim, C, A, capacity=20_000)
    rng = np.random.default_rng(0)
    high = np.asarray(profile.max_delta, np.float32)  # chunks within the robot's per-step limits

    def chunk():
        return rng.uniform(-high, high, (C, A)).astype(np.float32)
    for i in range(10_000):
        replay.add(ChunkTransition(
            state=rng.standard_normal(args.state_dim).astype(np.float32), executed_chunk=chunk(),
            reference_chunk=chunk(), rewards=(rng.random(C) < 0.01).astype(np.float32),
            next_state=rng.standard_normal(args.state_dim).astype(np.float32), next_reference_chunk=chunk(),
            done=bool(rng.random() < 0.05), source=1, episode_id=i // 50))

    def run(n, update=learner.update):  # batches sampled and normalised as the learner does, for both
        for _ in range(n):
            update(learner.prepare(replay.sample(args.batch_size, learner.generator)))

    def timed(n, update):
        synchronize(device)
        t0 = time.perf_counter()
        run(n, update)
        synchronize(device)
        return n / (time.perf_counter() - t0)

    plain = ReferenceTD3(cfg, td3, seed=0, device=args.device)
    run(50)
    run(20, plain.update)
    cycle = td3.critic_updates_per_actor  # updates from one actor step to the next
    eager = RLTLearner(cfg, td3, seed=0, device=args.device)
    calls = record_matmuls(eager, [replay.sample(args.batch_size, eager.generator) for _ in range(cycle)])
    flops = matmul_flops(calls) / cycle
    peaks, alone, plain_rates, rates = [], [], [], []
    for _ in range(args.repeats):
        peaks.append(matmul_peak_gflops(n=4096 if device.type == 'cuda' else 1024, device=device))
        alone.append(cycle / replay_matmuls(calls, device))
        plain_rates.append(timed(args.updates // 2, plain.update))
        rates.append(timed(args.updates, learner.update))
    limits = [peak * 1e9 / flops for peak in peaks]  # updates/s, per repeat

    def of_limit(values):
        return [v / limit for v, limit in zip(values, limits, strict=True)]
    ratios = of_limit(rates)
    peak, measured, plain_rate = (float(np.median(v)) for v in (peaks, rates, plain_rates))
    print(f'device {args.device}, threads {args.threads}, batch {args.batch_size}, state {args.state_dim}, '
          f'MLPs {td3.critic_hidden}{" with LayerNorm" if td3.critic_layer_norm else ""}, '
          f'chunk {C}x{A} ({profile.name}), '
          f'{"compiled" if args.compile else "eager"}')
    print(f'matmul peak            {peak:8.1f} GFLOP/s (float32, median of {args.repeats})')
    print(f'FLOPs per update       {flops / 1e9:8.3f} GFLOP (the {len(calls) / cycle:.1f} matmuls it runs; '
          'sampling, LayerNorm, Adam not counted)')
    print(f'limit                  {peak * 1e9 / flops:8.1f} updates/s')
    print(f'matmuls alone          {float(np.median(alone)):8.1f} updates/s (replayed at their shapes, '
          f'{float(np.median(of_limit(alone))):.2f} of the limit)')
    print(f'plain PyTorch loop     {plain_rate:8.1f} updates/s (ReferenceTD3, median of {args.repeats} x '
          f'{args.updates // 2}; {float(np.median(of_limit(plain_rates))):.2f} of the limit)')
    print(f'measured               {measured:8.1f} updates/s (median of {args.repeats} x {args.updates}; '
          f'{measured / plain_rate:.2f}x the plain loop)')
    print(f'ratio                  {float(np.median(ratios)):8.2f} of the limit (median over repeats, '
          f'{min(ratios):.2f}-{max(ratios):.2f})')


if __name__ == '__main__':
    main()
