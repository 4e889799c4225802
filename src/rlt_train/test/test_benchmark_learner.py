"""benchmark_learner counts the FLOPs of the matmuls an update runs (checked against a hand count), and its
naive loop computes the learner's losses."""

import pytest
import torch
from rlt_train.benchmark_learner import NaiveTD3, matmul_flops, record_matmuls

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


def copy_weights(learner: RLTLearner, naive: NaiveTD3):
    """The learner's actor, twin critics and targets into the naive loop's nn.Sequential networks."""
    naive.actor.load_state_dict(learner.actor.net.state_dict())
    naive.actor_t.load_state_dict(learner.target_actor.net.state_dict())
    for twin, nets in ((learner.qf, (naive.q1, naive.q2)), (learner.qf_target, (naive.q1_t, naive.q2_t))):
        for i, net in enumerate(nets):
            linears = [m for m in net if isinstance(m, torch.nn.Linear)]
            norms = [m for m in net if isinstance(m, torch.nn.LayerNorm)]
            with torch.no_grad():
                for lin, layer in zip(linears, [*twin.hidden, twin.out], strict=True):
                    lin.weight.copy_(layer.weight[i].T)
                    lin.bias.copy_(layer.bias[i, 0])
                for ln, norm in zip(norms, twin.norms, strict=True):
                    ln.weight.copy_(norm.weight[i, 0])
                    ln.bias.copy_(norm.bias[i, 0])


@pytest.mark.parametrize('ref_dropout', [0.0, 1.0])
def test_naive_loop_computes_the_learners_losses(ref_dropout):
    cfg = ActorConfig(state_dim=S, chunk_len=C, action_dim=A, hidden=(H, H))
    td3 = TD3Config(critic_hidden=(H, H), batch_size=B, target_noise=0.0, ref_dropout=ref_dropout)
    learner = RLTLearner(cfg, td3)
    for _ in range(4):  # move the weights off their initial values, targets included
        learner.update(learner.prepare(batch()))
    naive = NaiveTD3(cfg, td3)
    copy_weights(learner, naive)
    b = learner.prepare({**batch(), 'r': torch.tensor([[0.0, 1.0]] * B), 'n': torch.tensor([C, 1, C, 2])})
    loss, _ = learner.critic_loss(b)
    torch.testing.assert_close(naive.critic_loss(b, torch.zeros_like(b['a'])), loss)
    actor_loss, _, _ = learner.actor_loss(b)
    keep = torch.full((B, 1), 1.0 - ref_dropout)
    torch.testing.assert_close(naive.actor_loss(b, keep), actor_loss)
