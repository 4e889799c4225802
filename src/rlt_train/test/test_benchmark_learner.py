"""benchmark_learner counts the FLOPs of the matmuls an update runs (checked against a hand count) and runs on a
tiny budget. That its plain loop, ReferenceTD3, computes the learner's update is rlt_core's test_td3_reference."""

import torch
from rlt_train.benchmark_learner import main, matmul_flops, record_matmuls

from rlt_core.rl.actor import ActorConfig
from rlt_core.rl.td3 import RLTLearner, TD3Config

B, S, C, A, H = 4, 6, 2, 3, 8  # batch, state, chunk, action dims, hidden width


def batch():
    chunk = lambda: torch.rand(B, C, A) * 0.002 - 0.001  # noqa: E731
    return {'x': torch.randn(B, S), 'a': chunk(), 'ref': chunk(), 'r': torch.zeros(B, C), 'n': torch.full((B,), C),
            'x2': torch.randn(B, S), 'ref2': chunk(), 'done': torch.zeros(B)}


def test_recorded_matmuls_match_a_hand_count():
    learner = RLTLearner(ActorConfig(state_dim=S, chunk_len=C, action_dim=A, hidden=(H, H)),
                         TD3Config(critic_hidden=(H, H), batch_size=B))
    calls = record_matmuls(learner, [batch(), batch()])  # a critic step, then a critic + actor step
    i, k = S + C * A, C * A  # 12 inputs (x, chunk) to both networks, 6 actor outputs
    actor = i * H + H * H + H * k  # 208 multiply-adds per sample; the critics' 1-wide outputs are dot products
    critic = i * H + H * H         # 160
    # critic step: pi'(x') and Q1', Q2' forward; Q1, Q2 forward, their weight gradients (all layers) and the
    # input gradient of the second layer (a loss of the weights needs none into x, a).
    critic_step = actor + 2 * critic + 2 * (critic + critic + H * H)
    # actor step: pi forward, weight gradients, input gradients of layers 2 and 3; Q1 forward and its
    # gradient to the action (input gradients of both layers).
    actor_step = actor + actor + (H * H + H * k) + critic + critic
    assert matmul_flops(calls) == 2 * B * (2 * critic_step + actor_step)


def test_benchmark_runs_on_a_tiny_budget(capsys):
    """The real entry point, timing the plain ReferenceTD3 loop beside the learner (eager, for speed)."""
    main(['--threads', '1', '--updates', '4', '--repeats', '1', '--state-dim', str(S),
          '--batch-size', str(B), '--no-compile'])
    out = capsys.readouterr().out
    assert 'plain PyTorch loop' in out and '(ReferenceTD3,' in out and 'x the plain loop' in out
