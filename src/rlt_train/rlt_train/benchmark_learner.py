"""Learner throughput against the matmul peak of its device (the CPU, or a GPU).

  python -m rlt_train.benchmark_learner [--threads 2] [--updates 1000] [--device cuda]

Measures the device's float32 matmul peak (GFLOP/s, large square matmuls), counts the FLOPs of
the matmuls of one chunked-TD3 update from the network shapes, and times real `RLTLearner.update`
calls on batches sampled from a filled replay buffer (sampling on the CPU, as in the learner node).
Each repeat measures the peak and then the updates/s, back to back, so that both see the same
machine; prints the medians of the peak, the implied limit in updates/s, the measured updates/s
and their ratio, and the ratio's range. On a GPU these tiny networks are bound by kernel launches,
not by FLOPs, so the ratio is small there; updates/s is the figure to compare.
"""

import argparse
import json
import time

import numpy as np
import torch

from rlt_core.actor import ActorConfig
from rlt_core.replay import ReplayBuffer, Transition
from rlt_core.rl_state import ProprioNormalization
from rlt_core.runtime import default_models_dir, synchronize
from rlt_core.td3 import RLTLearner, TD3Config


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


def mlp_macs(dims: list[int]) -> int:
    return sum(i * o for i, o in zip(dims[:-1], dims[1:], strict=True))


def update_flops(state_dim: int, chunk_size: int, hidden: tuple[int, ...], batch: int,
                 critic_updates_per_actor: int) -> float:
    """FLOPs of the matmuls of one update (averaged over the critic:actor schedule). A backward pass costs
    the weight gradients (1x the forward) and the input gradients of the layers that need them (1x the
    forward less the first layer for a loss of weights; all layers for Q_1's gradient to the action)."""
    actor = mlp_macs([state_dim + chunk_size, *hidden, chunk_size])
    critic = mlp_macs([state_dim + chunk_size, *hidden, 1])
    first = (state_dim + chunk_size) * hidden[0]
    critic_step = actor + 2 * critic + 2 * (3 * critic - first)  # targets pi'(x'), Q1', Q2'; Q1, Q2 fwd + bwd
    actor_step = (3 * actor - first) + 2 * critic                # pi fwd + bwd; Q1 fwd + bwd to the action
    return 2 * batch * (critic_step + actor_step / critic_updates_per_actor)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--updates', type=int, default=1000, help='timed updates per repeat')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--state-dim', type=int, default=0,
                   help="dimension of x (0: the committed models' token_dim + proprio_dim)")
    p.add_argument('--chunk-len', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--device', default='cpu', help="torch device of the learner: 'cpu' or 'cuda'")
    p.add_argument('--critic-layer-norm', action=argparse.BooleanOptionalAction, default=TD3Config.critic_layer_norm,
                   help='LayerNorm in the critics, as the learner uses by default')
    p.add_argument('--compile', action=argparse.BooleanOptionalAction, default=True,
                   help='the update compiled by TorchInductor, as the learner runs it by default')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.state_dim <= 0:
        models = default_models_dir()
        args.state_dim = (json.loads((models / 'rl_token' / 'rl_token.json').read_text())['token_dim']
                          + ProprioNormalization.from_vla_checkpoint(models / 'vla').dim)

    cfg = ActorConfig(state_dim=args.state_dim, chunk_len=args.chunk_len, action_dim=3)
    td3 = TD3Config(batch_size=args.batch_size, critic_layer_norm=args.critic_layer_norm)
    learner = RLTLearner(cfg, td3, seed=0, device=args.device, compile=args.compile)
    replay = ReplayBuffer(args.state_dim, args.chunk_len, 3, capacity=20_000)
    rng = np.random.default_rng(0)
    for i in range(10_000):
        replay.add(Transition(
            state=rng.standard_normal(args.state_dim).astype(np.float32),
            executed_chunk=rng.uniform(-0.005, 0.005, (args.chunk_len, 3)).astype(np.float32),
            reference_chunk=rng.uniform(-0.005, 0.005, (args.chunk_len, 3)).astype(np.float32),
            rewards=(rng.random(args.chunk_len) < 0.01).astype(np.float32),
            next_state=rng.standard_normal(args.state_dim).astype(np.float32),
            next_reference_chunk=rng.uniform(-0.005, 0.005, (args.chunk_len, 3)).astype(np.float32),
            done=bool(rng.random() < 0.05), source=1, episode_id=i // 50))

    def run(n):
        for _ in range(n):
            learner.update(learner.prepare(replay.sample(args.batch_size, learner.generator)))

    run(50)
    flops = update_flops(args.state_dim, cfg.chunk_size, td3.critic_hidden, args.batch_size,
                         td3.critic_updates_per_actor)
    peaks, rates = [], []
    for _ in range(args.repeats):
        peaks.append(matmul_peak_gflops(n=4096 if device.type == 'cuda' else 1024, device=device))
        synchronize(device)
        t0 = time.perf_counter()
        run(args.updates)
        synchronize(device)
        rates.append(args.updates / (time.perf_counter() - t0))
    ratios = [rate / (peak * 1e9 / flops) for peak, rate in zip(peaks, rates, strict=True)]
    peak, measured = float(np.median(peaks)), float(np.median(rates))
    print(f'device {args.device}, threads {args.threads}, batch {args.batch_size}, state {args.state_dim}, '
          f'MLPs {td3.critic_hidden}{" with LayerNorm" if td3.critic_layer_norm else ""}, chunk {args.chunk_len}x3, '
          f'{"compiled" if args.compile else "eager"}')
    print(f'matmul peak            {peak:8.1f} GFLOP/s (float32, median of {args.repeats})')
    print(f'FLOPs per update       {flops / 1e9:8.3f} GFLOP (matmuls only: sampling, LayerNorm, Adam not counted)')
    print(f'limit                  {peak * 1e9 / flops:8.1f} updates/s')
    print(f'measured               {measured:8.1f} updates/s (median of {args.repeats} x {args.updates})')
    print(f'ratio                  {float(np.median(ratios)):8.2f} of the limit (median over repeats, '
          f'{min(ratios):.2f}-{max(ratios):.2f})')


if __name__ == '__main__':
    main()
