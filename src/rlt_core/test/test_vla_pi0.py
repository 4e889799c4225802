import os

import pytest
import torch

os.environ.setdefault('HF_HUB_OFFLINE', '1')

from rlt_core.models.vla.backbone import VLAInput  # noqa: E402
from rlt_core.models.vla.pi0 import Pi0Backbone  # noqa: E402

CAMERAS = ('front', 'wrist', 'side')
STATS = dict(state_mean=[0.1] * 6, state_std=[2.0] * 6,
             actions_mean=[1.0, -1.0, 0.5], actions_std=[0.1, 0.2, 0.3])


def _obs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = {c: torch.randint(0, 256, (batch, 96, 96, 3), dtype=torch.uint8, generator=g) for c in CAMERAS}
    instructions = ['insert the peg into the hole', 'pick up the red block'][:batch]
    return VLAInput(images, torch.randn(batch, 6, generator=g), instructions)


@pytest.fixture(scope='module')
def backbone():
    return Pi0Backbone.tiny(CAMERAS, proprio_dim=6, action_dim=3, chunk_len=10, seed=0, stats=STATS).freeze()


def _out(backbone, obs, seed=0):
    return backbone(obs, torch.Generator().manual_seed(seed))


def test_shapes_through_the_interface(backbone):
    out = _out(backbone, _obs())
    B, M, D = out.embeddings.shape
    assert (B, D) == (2, backbone.token_dim)
    assert out.mask.shape == (2, M) and out.mask.dtype == torch.bool
    assert out.chunk.shape == (2, backbone.chunk_len, backbone.action_dim) == (2, 10, 3)
    # All image tokens are valid; the shorter instruction leaves more padding.
    n_image = len(CAMERAS) * backbone.tokens_per_image
    assert out.mask[:, :n_image].all() and out.mask[0].sum() > out.mask[1].sum()
    assert torch.isfinite(out.embeddings).all() and torch.isfinite(out.chunk).all()


def test_seeded_sampling_is_reproducible(backbone):
    obs = _obs()
    a, b, c = _out(backbone, obs, 1), _out(backbone, obs, 1), _out(backbone, obs, 2)
    torch.testing.assert_close(a.chunk, b.chunk, rtol=0, atol=0)
    assert not torch.allclose(a.chunk, c.chunk)
    # The embeddings do not depend on the noise, and `embed` gives the same without sampling.
    torch.testing.assert_close(a.embeddings, c.embeddings, rtol=0, atol=0)
    embeddings, mask = backbone.embed(obs)
    torch.testing.assert_close(embeddings, a.embeddings)
    assert torch.equal(mask, a.mask)


def test_embeddings_see_images_and_instruction(backbone):
    base = backbone.embed(_obs())[0]
    other_images = _obs(seed=1)
    other_images.instruction = _obs().instruction
    assert not torch.allclose(base, backbone.embed(other_images)[0])
    other_text = _obs()
    other_text.instruction = ['open the drawer', 'close the drawer']
    assert not torch.allclose(base, backbone.embed(other_text)[0])


def test_chunk_is_denormalised_to_robot_units(backbone):
    raw = Pi0Backbone(backbone.model, camera_names=CAMERAS, chunk_len=10, action_dim=3, proprio_dim=6,
                      stats={k: v for k, v in STATS.items() if k.startswith('state')})
    expected = raw(_obs(), torch.Generator().manual_seed(0)).chunk * torch.tensor(STATS['actions_std'])
    torch.testing.assert_close(_out(backbone, _obs()).chunk, expected + torch.tensor(STATS['actions_mean']))


def test_frozen_has_no_gradients(backbone):
    assert not any(p.requires_grad for p in backbone.parameters())
    out = _out(backbone, _obs(batch=1))
    assert not out.embeddings.requires_grad and not out.chunk.requires_grad


def test_save_and_load_roundtrip(backbone, tmp_path):
    backbone.save_pretrained(tmp_path / 'pi0')
    loaded = Pi0Backbone.from_pretrained(tmp_path / 'pi0').freeze()
    assert (loaded.camera_names, loaded.chunk_len, loaded.action_dim) == (CAMERAS, 10, 3)
    a, b = _out(backbone, _obs()), _out(loaded, _obs())
    torch.testing.assert_close(a.embeddings, b.embeddings)
    torch.testing.assert_close(a.chunk, b.chunk)
    assert torch.equal(a.mask, b.mask)


def test_a_saved_tokenizer_is_used(backbone, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ['<pad>', '<eos>', '<bos>', '<unk>', 'insert', 'the', 'peg', 'into', 'hole']
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<bos>', pad_token='<pad>',
                                        unk_token='<unk>')
    backbone.model.save_pretrained(tmp_path / 'pi0')
    tokenizer.save_pretrained(tmp_path / 'pi0')
    loaded = Pi0Backbone.from_pretrained(tmp_path / 'pi0', camera_names=CAMERAS, action_dim=3, proprio_dim=6)
    assert loaded.tokenizer is not None
    ids, mask = loaded._tokens(['insert the peg into the hole'])
    n_image = len(CAMERAS) * loaded.tokens_per_image
    assert ids[0, n_image:n_image + 7].tolist() == [2, 4, 5, 6, 7, 5, 8] and mask[0].sum() == n_image + 7


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='no pi0 checkpoint'):
        Pi0Backbone.from_pretrained(tmp_path / 'nowhere')
