import numpy as np
import pytest
import torch

from rlt_core.models.image_encoder import FrameStore, ImageEncoder, downsample, draw_shifts, random_shift
from rlt_core.rl.actor import ActorConfig
from rlt_core.rl.td3 import RLTLearner, TD3Config


def test_random_shift_is_a_crop_of_the_replicated_image():
    img = torch.arange(2 * 3 * 6 * 7, dtype=torch.float32).view(2, 3, 6, 7)
    torch.testing.assert_close(random_shift(img, 0, draw_shifts(2, 0)), img)
    torch.testing.assert_close(random_shift(img, 2, torch.full((2, 2), 2)), img)  # offset pad: no move
    shifted = random_shift(img, 2, draw_shifts(2, 2, torch.Generator().manual_seed(0)))
    padded = torch.nn.functional.pad(img, (2, 2, 2, 2), mode='replicate')
    for b in range(2):
        crops = [padded[b, :, i:i + 6, j:j + 7] for i in range(5) for j in range(5)]
        assert any(torch.equal(shifted[b], c) for c in crops)
    assert not torch.equal(shifted, img)  # seed 0 moves at least one image


def test_downsample_averages_blocks():
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:2, :2] = [0, 100, 200]
    frame[0, 0] = [4, 104, 204]
    assert downsample(frame, 2)[0, 0].tolist() == [1, 101, 201]
    assert downsample(frame, 2)[1, 1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match='does not reduce'):
        downsample(frame, 3)


def test_frame_store_persists_and_drops_a_cut_frame(tmp_path):
    path = tmp_path / 'frames.bin'
    store = FrameStore((2, 4, 4, 3), capacity=10, path=path)
    frames = [np.full((2, 4, 4, 3), i, np.uint8) for i in range(3)]
    assert [store.add(f) for f in frames] == [0, 1, 2]
    with pytest.raises(ValueError, match='shape'):
        store.add(np.zeros((4, 4, 3), np.uint8))
    store.close()
    with open(path, 'ab') as f:
        f.write(b'\x07' * 10)  # a frame cut short by a crash
    again = FrameStore((2, 4, 4, 3), capacity=10, path=path)
    assert again.size == 3
    assert again.get(torch.tensor([2.0, 0.0])).tolist() == torch.from_numpy(np.stack([frames[2], frames[0]])).tolist()
    assert again.add(frames[1]) == 3
    with pytest.raises(IndexError):
        again.get(torch.tensor([4.0]))


def test_image_encoder_refuses_tiny_images():
    with pytest.raises(ValueError, match='at least 24 px'):
        ImageEncoder(size=16)


def test_learner_with_image_encoder_trains_it_through_the_critic():
    torch.manual_seed(0)
    store = FrameStore((2, 24, 24, 3), capacity=100)
    for _ in range(20):
        store.add(np.random.default_rng(0).integers(0, 255, (2, 24, 24, 3), dtype=np.uint8))
    encoder = ImageEncoder(cameras=2, size=24, channels=4, feature_dim=8)
    cfg = ActorConfig(state_dim=8 + 3, chunk_len=2, action_dim=1, action_scale=(1.0,), hidden=(8,), std=0.0)
    learner = RLTLearner(cfg, TD3Config(critic_hidden=(8,)), seed=0, encoder=encoder, frames=store, shift=2)
    b = 32
    ids = torch.randint(0, 20, (b, 1)).float()
    batch = {'x': torch.cat([torch.randn(b, 3), ids], 1), 'x2': torch.cat([torch.randn(b, 3), ids], 1),
             'a': torch.rand(b, 2, 1) * 2 - 1, 'ref': torch.rand(b, 2, 1) * 2 - 1, 'ref2': torch.rand(b, 2, 1) * 2 - 1,
             'r': torch.ones(b, 2), 'n': torch.full((b,), 2.0), 'done': torch.ones(b)}
    prepared = learner.prepare(batch)
    assert prepared['x'].shape == (b, 3) and prepared['obs'].shape == (b, 2, 24, 24, 3)
    before = [p.clone() for p in encoder.parameters()]
    target_before = [p.clone() for p in learner.target_encoder.parameters()]
    actor_before = [p.clone() for p in learner.actor.parameters()]
    for _ in range(2):
        learner.update(learner.prepare(batch))
    assert any(not torch.equal(p, q) for p, q in zip(before, encoder.parameters(), strict=True))
    assert any(not torch.equal(p, q) for p, q in zip(target_before, learner.target_encoder.parameters(), strict=True))
    assert any(not torch.equal(p, q) for p, q in zip(actor_before, learner.actor.parameters(), strict=True))
    chunk = learner.select_chunk(np.array([0.1, 0.2, 0.3, 5.0], np.float32), np.zeros((2, 1), np.float32))
    assert chunk.shape == (2, 1)
    # the checkpoint carries the encoder
    state = learner.state_dict()
    other = RLTLearner(cfg, TD3Config(critic_hidden=(8,)), seed=1,
                       encoder=ImageEncoder(cameras=2, size=24, channels=4, feature_dim=8), frames=store)
    other.load_state_dict(state)
    for p, q in zip(encoder.parameters(), other.encoder.parameters(), strict=True):
        torch.testing.assert_close(p, q)
