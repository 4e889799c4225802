"""The VLA and the RL token run on whatever device they are moved to (`device:=cuda` on a workstation).

The `meta` device stands in for a GPU: an operation mixing a tensor built on the CPU with the
model's tensors raises there just as it would on CUDA.
"""

import torch

from rlt_core.actor import ActorConfig
from rlt_core.td3 import RLTLearner
from rlt_core.token import RLToken, RLTokenConfig
from rlt_core.vla.backbone import Observation
from rlt_core.vla.small_vla import SmallVLA, SmallVLAConfig


def test_vla_and_token_keep_every_tensor_on_the_models_device():
    vla = SmallVLA(SmallVLAConfig(d_model=32, n_layers=1, stem_channels=(8, 16, 32, 64))).to('meta')
    images = {name: torch.zeros(2, 96, 96, 3, dtype=torch.uint8, device='meta') for name in vla.config.camera_names}
    out = vla(Observation(images=images, proprio=torch.zeros(2, 6, device='meta'), instruction=['insert the peg'] * 2))
    assert out.embeddings.device.type == 'meta' and out.chunk.shape == (2, 10, 3)
    token = RLToken(RLTokenConfig(embed_dim=32, max_tokens=out.embeddings.shape[1], token_dim=8, d_model=16))
    token = token.to('meta')
    assert token.extract(out.embeddings, out.mask).shape == (2, 8)
    assert token.reconstruction_loss(out.embeddings, out.mask).device.type == 'meta'


def test_learner_losses_run_on_the_learners_device():
    learner = RLTLearner(ActorConfig(state_dim=7, chunk_len=4, action_dim=3, hidden=(16, 16)), device='meta')
    b, c = 5, 4
    batch = {'x': torch.zeros(b, 7), 'a': torch.zeros(b, c, 3), 'ref': torch.zeros(b, c, 3), 'r': torch.zeros(b, c),
             'n': torch.full((b,), float(c)), 'x2': torch.zeros(b, 7), 'ref2': torch.zeros(b, c, 3),
             'done': torch.zeros(b)}
    batch = learner.prepare(batch)  # replay batches are CPU tensors
    critic_loss, q = learner.critic_loss(batch)
    actor_loss, _, _ = learner.actor_loss(batch)
    assert critic_loss.device.type == 'meta' and q.shape == (2, b) and actor_loss.device.type == 'meta'
