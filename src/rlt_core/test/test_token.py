import pytest
import torch
from safetensors.torch import load_file, save_file

from rlt_core.models.rl_token import RLTokenConfig, RLTokenModel
from rlt_core.models.vla.backbone import VLAInput


def _fit(token, z, mask, steps=150):
    opt = torch.optim.Adam(token.parameters(), lr=1e-3)
    first = None
    for _ in range(steps):
        loss = token.reconstruction_loss(z, mask).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss.item()


def test_token_is_the_encoder_output_at_the_appended_position():
    torch.manual_seed(0)
    token = RLTokenModel(RLTokenConfig(embed_dim=16, max_tokens=8, token_dim=4, d_model=32))
    z, mask = torch.randn(3, 8, 16), torch.ones(3, 8, dtype=torch.bool)
    assert token.extract(z, mask).shape == (3, 4)
    # Padding tokens do not change z_rl.
    mask2 = mask.clone()
    mask2[:, -2:] = False
    z2 = z.clone()
    z2[:, -2:] = 100.0
    torch.testing.assert_close(token.extract(z, mask2), token.extract(z2, mask2))


def test_decoder_is_causal_first_prediction_depends_only_on_z_rl():
    torch.manual_seed(0)
    token = RLTokenModel(RLTokenConfig(embed_dim=8, max_tokens=6, token_dim=4, d_model=16))
    z_rl, z_bar = torch.randn(2, 4), torch.randn(2, 6, 8)
    changed = z_bar.clone()
    changed[:, 3:] += 5.0
    a, b = token.decoder(z_rl, z_bar), token.decoder(z_rl, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])  # position i sees z̄_<i only
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_reconstruction_trains_and_checkpoint_keeps_the_encoder_only(tmp_path):
    torch.manual_seed(0)
    token = RLTokenModel(RLTokenConfig(embed_dim=16, max_tokens=10, token_dim=8, d_model=32))
    z = torch.randn(64, 10, 16)
    mask = torch.ones(64, 10, dtype=torch.bool)
    first, last = _fit(token, z, mask)
    assert last < 0.7 * first
    token.save(tmp_path)
    loaded = RLTokenModel.load(tmp_path)
    torch.testing.assert_close(loaded.extract(z, mask), token.extract(z, mask))
    with pytest.raises(FileNotFoundError):
        RLTokenModel.load(tmp_path / 'missing')


def test_statistics_standardise_z_rl_and_travel_with_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    token = RLTokenModel(RLTokenConfig(embed_dim=16, max_tokens=10, token_dim=8, d_model=32))
    z, mask = torch.randn(200, 10, 16), torch.ones(200, 10, dtype=torch.bool)
    raw = token.extract(z, mask)
    token.set_statistics(raw)
    x = token.extract(z, mask)
    torch.testing.assert_close(x, (raw - raw.mean(0)) / raw.std(0))
    torch.testing.assert_close(x.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(8))
    token.save(tmp_path / 'new')
    torch.testing.assert_close(RLTokenModel.load(tmp_path / 'new').extract(z, mask), x)
    # A checkpoint written before the statistics existed loads unstandardised.
    token.save(tmp_path / 'old')
    state = {k: v for k, v in load_file(tmp_path / 'old' / 'rl_token.safetensors').items()
             if not any(name in k for name in ('z_mean', 'z_std', 'z_whiten'))}
    save_file(state, tmp_path / 'old' / 'rl_token.safetensors')
    torch.testing.assert_close(RLTokenModel.load(tmp_path / 'old').extract(z, mask), raw)


def test_whitening_gives_a_small_direction_unit_scale(tmp_path):
    # Raw readouts with one large direction and a small one (like the offset in the critical phase).
    g = torch.Generator().manual_seed(0)
    big, small = torch.randn(4000, 1, generator=g) * 10.0, torch.randn(4000, 1, generator=g) * 0.01
    raw = torch.cat([big + small, big - small, torch.randn(4000, 2, generator=g)], 1)
    token = RLTokenModel(RLTokenConfig(embed_dim=16, max_tokens=10, token_dim=4, d_model=32))
    token.set_statistics(raw)
    standardised = (raw - raw.mean(0)) / raw.std(0)
    assert (standardised[:, 0] - standardised[:, 1]).std() < 0.01  # the small direction stays tiny
    token.set_statistics(raw, whiten=True, floor=1e-8)
    w = (standardised @ token.encoder.z_whiten).double()
    torch.testing.assert_close(torch.cov(w.T), torch.eye(4, dtype=torch.float64), atol=1e-2, rtol=0)
    token.save(tmp_path)
    torch.testing.assert_close(RLTokenModel.load(tmp_path).encoder.z_whiten, token.encoder.z_whiten)
    token.set_statistics(raw, whiten=True, floor=1e-2)  # the floor bounds how much a direction is amplified
    assert torch.linalg.eigvalsh(torch.cov((standardised @ token.encoder.z_whiten).T)).min() < 0.01


def test_token_trains_on_tiny_pi0_embeddings():
    from rlt_core.models.vla.pi0 import Pi0Backbone

    vla = Pi0Backbone.tiny(camera_names=('wrist_left', 'wrist_right'), proprio_dim=6, action_dim=3, chunk_len=10,
                           seed=0).freeze()
    g = torch.Generator().manual_seed(0)
    obs = VLAInput(images={c: torch.randint(0, 255, (8, 96, 96, 3), dtype=torch.uint8, generator=g)
                              for c in ('wrist_left', 'wrist_right')},
                      proprio=torch.randn(8, 6, generator=g), instruction=['insert the peg into the hole'] * 8)
    out = vla(obs, generator=torch.Generator().manual_seed(1))
    assert out.chunk.shape == (8, 10, 3)
    token = RLTokenModel(RLTokenConfig(embed_dim=vla.token_dim, max_tokens=out.embeddings.shape[1], token_dim=16,
                                  d_model=32))
    first, last = _fit(token, out.embeddings, out.mask, steps=100)
    assert last < 0.7 * first
    assert token.extract(out.embeddings, out.mask).shape == (8, 16)
