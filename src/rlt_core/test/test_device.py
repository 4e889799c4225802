"""The VLA and the RL token run on whatever device they are moved to (`device:=cuda` on a workstation).

The `meta` device stands in for a GPU everywhere: an operation mixing a tensor built on the CPU
with the model's tensors raises there just as it would on CUDA. Where a CUDA GPU is present, the
last two tests also check that the GPU computes what the CPU does.
"""

import pytest
import torch

from rlt_core.control.profile import DEFAULT_PROFILE
from rlt_core.models.rl_token import RLTokenConfig, RLTokenModel
from rlt_core.models.vla.backbone import VLAInput
from rlt_core.models.vla.small_vla import SmallVLA, SmallVLAConfig
from rlt_core.rl.actor import ActorConfig
from rlt_core.rl.td3 import RLTLearner
from rlt_core.runtime import default_models_dir


def test_vla_and_token_keep_every_tensor_on_the_models_device():
    vla = SmallVLA(SmallVLAConfig(d_model=32, n_layers=1, stem_channels=(8, 16, 32, 64))).to('meta')
    images = {name: torch.zeros(2, 96, 96, 3, dtype=torch.uint8, device='meta') for name in vla.config.camera_names}
    out = vla(VLAInput(images=images, proprio=torch.zeros(2, 6, device='meta'), instruction=['insert the peg'] * 2))
    assert out.embeddings.device.type == 'meta' and out.chunk.shape == (2, 10, 3)
    token = RLTokenModel(RLTokenConfig(embed_dim=32, max_tokens=out.embeddings.shape[1], token_dim=8, d_model=16))
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


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (a GPU workstation)')


@pytest.fixture
def full_fp32():
    """Full float32 matmuls and convolutions on the GPU for the comparison; the flags are restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@cuda
def test_learner_on_cuda_follows_the_cpu_learner(full_fp32):
    """The same seed and batches give the same weights on the GPU as on the CPU (sampling stays on the CPU)."""
    config = ActorConfig(state_dim=134, chunk_len=10, action_dim=3, action_scale=(0.005,) * 3)
    learners = {dev: RLTLearner(config, seed=3, device=dev) for dev in ('cpu', 'cuda')}
    gen = torch.Generator().manual_seed(0)
    b = 256

    def chunk():
        return 0.005 * torch.rand(b, 10, 3, generator=gen)
    for _ in range(20):
        batch = {'x': torch.randn(b, 134, generator=gen), 'a': chunk(), 'ref': chunk(),
                 'r': (torch.rand(b, 10, generator=gen) < 0.05).float(), 'n': torch.full((b,), 10.0),
                 'x2': torch.randn(b, 134, generator=gen), 'ref2': chunk(),
                 'done': (torch.rand(b, generator=gen) < 0.1).float()}
        for learner in learners.values():
            learner.update(learner.prepare(batch))
        # the same losses, update after update (float sums run in another order on the GPU)
        cpu_metrics, gpu_metrics = (learners[d].scalar_metrics() for d in ('cpu', 'cuda'))
        for key, value in cpu_metrics.items():
            assert gpu_metrics[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    x, ref = torch.randn(134, generator=gen).numpy(), 0.004 * torch.rand(10, 3, generator=gen).numpy()
    chunks = {d: learners[d].actor.select_chunk(x, ref, explore=True, generator=torch.Generator().manual_seed(1))
              for d in ('cpu', 'cuda')}
    assert chunks['cuda'].device.type == 'cpu'
    torch.testing.assert_close(chunks['cuda'], chunks['cpu'], rtol=0.0, atol=2e-5)  # m; one step is <= 5e-3


@cuda
def test_committed_vla_and_token_on_cuda_match_the_cpu(full_fp32):
    models = default_models_dir(DEFAULT_PROFILE)
    outputs = {}
    gen = torch.Generator().manual_seed(0)
    vla = SmallVLA.load(models / 'vla').freeze()
    size = vla.config.image_size
    images = {name: torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8, generator=gen)
              for name in vla.config.camera_names}
    proprio = torch.randn(2, 6, generator=gen)
    for dev in ('cpu', 'cuda'):
        vla = SmallVLA.load(models / 'vla').freeze().to(dev)
        token = RLTokenModel.load(models / 'rl_token').to(dev)
        obs = VLAInput(images={k: v.to(dev) for k, v in images.items()}, proprio=proprio.to(dev),
                          instruction=['insert the peg into the hole'] * 2)
        with torch.no_grad():
            out = vla(obs)
            outputs[dev] = (out.chunk.cpu(), token.extract(out.embeddings, out.mask).cpu())
    for cpu, gpu in zip(outputs['cpu'], outputs['cuda'], strict=True):
        torch.testing.assert_close(gpu, cpu, rtol=0.0, atol=2e-3)  # chunk in m, z_rl standardised (unit scale)
