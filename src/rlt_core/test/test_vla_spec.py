"""Backbone specs: parsing, loading each kind, the proprio normalisation without the model, the profile check."""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault('HF_HUB_OFFLINE', '1')

from rlt_core.control.profile import ProfileError, RobotProfile  # noqa: E402
from rlt_core.models.vla.backbone import VLABackbone, VLAInput, VLAOutput  # noqa: E402
from rlt_core.models.vla.pi0 import Pi0Backbone  # noqa: E402
from rlt_core.models.vla.small_vla import SmallVLA, SmallVLAConfig  # noqa: E402
from rlt_core.models.vla.spec import BackboneSpec, check_backbone, load_backbone, proprio_stats  # noqa: E402
from rlt_core.rl.rl_state import ProprioNormalization  # noqa: E402
from rlt_core.runtime import default_models_dir  # noqa: E402

CAMERAS = ('scene', 'wrist_left', 'wrist_right')  # the default profile's
STATE_MEAN, STATE_STD = [0.1, 0.2, 0.3, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 0.5, 0.5, 0.5]


class ConstantVLA(VLABackbone):
    """A user backbone, named by spec as this module's `ConstantVLA`: zero embeddings, a constant chunk."""

    token_dim, chunk_len, action_dim, proprio_dim, camera_names = 8, 10, 3, 6, ('scene',)

    def __init__(self, value: float = 0.0):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value))

    @classmethod
    def load(cls, path):
        return cls(float(Path(path, 'value.txt').read_text()))

    @classmethod
    def proprio_stats(cls, path):
        return [0.0] * 6, [float(Path(path, 'value.txt').read_text())] * 6

    def forward(self, obs, generator=None):
        b = obs.batch_size
        return VLAOutput(torch.zeros(b, 4, self.token_dim), torch.ones(b, 4, dtype=torch.bool),
                         self.value.expand(b, self.chunk_len, self.action_dim).float())


class NotABackbone:
    pass


def _obs(size=96, batch=1):
    g = torch.Generator().manual_seed(0)
    return VLAInput({c: torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g)
                     for c in CAMERAS}, torch.randn(batch, 6, generator=g), ['insert the peg'] * batch)


@pytest.fixture(scope='module')
def small_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp('small') / 'vla'
    torch.manual_seed(0)
    SmallVLA(SmallVLAConfig(d_model=32, n_layers=1, stem_channels=(8, 16, 32, 64), proprio_mean=tuple(STATE_MEAN),
                            proprio_std=tuple(STATE_STD))).save(folder)
    return folder


@pytest.fixture(scope='module')
def pi0_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pi0') / 'pi0'
    stats = dict(state_mean=STATE_MEAN, state_std=STATE_STD, actions_mean=[0.0] * 3, actions_std=[1.0] * 3)
    Pi0Backbone.tiny(CAMERAS, proprio_dim=6, action_dim=3, chunk_len=10, stats=stats).save_pretrained(folder)
    return folder


def test_spec_forms_parse(tmp_path):
    assert BackboneSpec.parse('runs/vla') == BackboneSpec('small', Path('runs/vla'))
    assert BackboneSpec.parse('small:/m/vla') == BackboneSpec('small', Path('/m/vla'))
    assert BackboneSpec.parse('pi0:/m/pi0') == BackboneSpec('pi0', Path('/m/pi0'))
    assert BackboneSpec.parse('my_pkg.vla:MyVLA') == BackboneSpec('class', None, 'my_pkg.vla:MyVLA')
    assert BackboneSpec.parse('my_pkg.vla:MyVLA:/m/w') == BackboneSpec('class', Path('/m/w'), 'my_pkg.vla:MyVLA')
    assert str(BackboneSpec.parse('my_pkg.vla:MyVLA:/m/w')) == 'my_pkg.vla:MyVLA:/m/w'
    assert BackboneSpec.parse(str(BackboneSpec.parse('pi0:/m/pi0'))) == BackboneSpec('pi0', Path('/m/pi0'))
    assert BackboneSpec.parse('pi0:m/pi0').resolved() == BackboneSpec('pi0', Path.cwd() / 'm/pi0')  # for other cwds
    odd = tmp_path / 'a:B'  # an existing folder is a SmallVLA's, whatever its name looks like
    odd.mkdir()
    assert BackboneSpec.parse(str(odd)).kind == 'small'
    with pytest.raises(ValueError, match='names no folder'):
        BackboneSpec.parse('pi0:')


def test_an_empty_spec_is_the_profiles_committed_vla():
    for name in ('gantry_cell', 'ur5e_cell'):  # the repository's cells, each with its own models
        spec = BackboneSpec.parse('', name)
        assert spec == BackboneSpec('small', default_models_dir(name) / 'vla')
        assert spec.path.parent.name == name and (spec.path / 'model.safetensors').is_file()
        assert (default_models_dir(name) / 'rl_token' / 'rl_token.safetensors').is_file()
    with pytest.raises(ValueError, match='no profile given'):
        BackboneSpec.parse('')
    with pytest.raises(FileNotFoundError, match="'my_robot' has no committed VLA.*vla_path and token_path"):
        BackboneSpec.parse('', 'my_robot')  # a user's robot names its own: never another cell's by default


def test_small_vla_folder_loads_as_before(small_folder):
    vla = load_backbone(str(small_folder))
    reference = SmallVLA.load(small_folder).freeze()
    assert isinstance(vla, SmallVLA) and not vla.training
    assert not any(p.requires_grad for p in vla.parameters())
    obs = _obs()
    assert torch.equal(vla(obs).chunk, reference(obs).chunk)
    assert (vla.camera_names, vla.proprio_dim, vla.image_shape) == (CAMERAS, 6, (96, 96))
    assert load_backbone(f'small:{small_folder}').token_dim == 32


def test_tiny_pi0_folder_loads_through_pi0_spec(pi0_folder):
    vla = load_backbone(f'pi0:{pi0_folder}')
    assert isinstance(vla, Pi0Backbone)
    assert (vla.chunk_len, vla.action_dim, vla.proprio_dim, vla.camera_names) == (10, 3, 6, CAMERAS)
    out = vla(_obs(size=80, batch=2), torch.Generator().manual_seed(0))  # pi0 resizes any image size
    assert out.chunk.shape == (2, 10, 3) and out.embeddings.shape[-1] == vla.token_dim == 64
    with pytest.raises(FileNotFoundError, match='nothing is downloaded'):
        load_backbone(f'pi0:{pi0_folder.parent / "missing"}')


def test_user_class_spec(tmp_path):
    (tmp_path / 'value.txt').write_text('0.25')
    vla = load_backbone(f'{__name__}:ConstantVLA:{tmp_path}')
    assert isinstance(vla, ConstantVLA) and float(vla.value) == 0.25 and not vla.value.requires_grad
    assert torch.all(vla(_obs()).chunk == 0.25)
    assert float(load_backbone(f'{__name__}:ConstantVLA').value) == 0.0  # no path: ConstantVLA()
    with pytest.raises(ValueError, match='not a VLABackbone'):
        load_backbone(f'{__name__}:NotABackbone')
    with pytest.raises(ValueError, match='cannot import'):
        load_backbone('no_such_module_here:VLA')


def test_half_precision_is_for_cuda_only_and_casts_the_weights(small_folder, pi0_folder):
    with pytest.raises(ValueError, match='needs a CUDA device'):
        load_backbone(str(small_folder), 'cpu', 'bfloat16')
    with pytest.raises(ValueError, match='dtype must be one of'):
        load_backbone(str(small_folder), 'cpu', 'float64')
    # What load_backbone does on CUDA, run here on the CPU: bfloat16 weights, float32 outputs close to float32's.
    obs = _obs()
    for vla in (SmallVLA.load(small_folder).freeze(), Pi0Backbone.from_pretrained(pi0_folder).freeze()):
        full = vla(obs, torch.Generator().manual_seed(0))
        half = vla.to_dtype(torch.bfloat16)(obs, torch.Generator().manual_seed(0))
        assert {p.dtype for p in vla.parameters()} == {torch.bfloat16}
        assert half.chunk.dtype == half.embeddings.dtype == torch.float32
        assert torch.allclose(half.chunk, full.chunk, atol=0.1 * full.chunk.abs().max().item() + 1e-3)


def test_proprio_normalisation_of_every_kind_without_the_model(small_folder, pi0_folder, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError('the model was loaded')
    monkeypatch.setattr(SmallVLA, 'load', no_model)
    monkeypatch.setattr(Pi0Backbone, 'from_pretrained', no_model)
    for spec in (str(small_folder), f'pi0:{pi0_folder}'):
        norm = ProprioNormalization.from_vla_checkpoint(spec)
        assert np.allclose(norm.mean, STATE_MEAN) and np.allclose(norm.std, STATE_STD), spec
    (tmp_path / 'value.txt').write_text('2')
    assert proprio_stats(f'{__name__}:ConstantVLA:{tmp_path}') == ([0.0] * 6, [2.0] * 6)
    bare = tmp_path / 'bare_pi0'  # a pi0 folder without stats normalises nothing: zeros and ones
    bare.mkdir()
    (bare / 'rlt_pi0.json').write_text('{"proprio_dim": 4}')
    assert proprio_stats(f'pi0:{bare}') == ([0.0] * 4, [1.0] * 4)
    with pytest.raises(FileNotFoundError, match='config.json missing'):
        proprio_stats(str(tmp_path / 'nowhere'))
    with pytest.raises(ValueError, match='reads 4 proprio values; this robot has 6'):  # the arbiter's, actor's check
        ProprioNormalization.from_vla_checkpoint(f'pi0:{bare}', proprio_dim=6)


def test_profile_check_names_both_sides(small_folder):
    profile = RobotProfile.load()
    vla = load_backbone(str(small_folder))
    check_backbone(vla, profile)  # the default cell's shapes
    other = replace(profile, name='other_arm', joint_names=('a', 'b', 'c', 'd'), joint_lower=(-1.0,) * 4,
                    joint_upper=(1.0,) * 4, max_delta=(0.1,) * 4, critical_max_delta=(0.01,) * 4,
                    vla_chunk_len=20, cameras=(replace(profile.cameras[0], width=64, height=64),))
    with pytest.raises(ProfileError) as err:
        check_backbone(vla, other, f'small:{small_folder}')
    text = str(err.value)
    assert f'SmallVLA (small:{small_folder})' in text and "robot profile 'other_arm'" in text
    for problem in ('chunks of 10 actions < vla_chunk_len H=20', 'action_dim 3 != 4 (joint_delta)',
                    'proprio_dim 6 != 2 x 4 joints', "cameras ['wrist_left', 'wrist_right'] not among the "
                    "profile's ['scene']", 'images of 96x96 px, the profile has scene 64x64'):
        assert problem in text
