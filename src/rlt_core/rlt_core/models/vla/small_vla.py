"""The default VLA: a small vision-language-action transformer in plain PyTorch.

  vision tokens    per camera, a CoordConv CNN stem -> a grid x grid feature map -> tokens
                   (+ a learned camera embedding and a 2-D position embedding)
  language tokens  hashed words of the instruction -> embeddings
  proprio token    normalised joint positions and velocities -> one token
  action queries   H learned tokens
  transformer      pre-norm encoder over [vision, language, proprio, queries]
  chunk head       each query's output -> one action; de-normalised to robot units

The final-layer outputs of the vision, language and proprio tokens are the embeddings
z_1..z_M that the RL token reads. Trained by behaviour cloning (`rlt_train.train_vla`).
"""

import json
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rlt_core.models.vla.backbone import VLABackbone, VLAInput, VLAOutput


@dataclass
class SmallVLAConfig:
    """Shape of the default VLA and the normalisation of its inputs and outputs."""

    camera_names: tuple[str, ...] = ('scene', 'wrist_left', 'wrist_right')
    """Cameras, in the order their tokens are laid out."""
    image_size: int = 96
    """Height and width of the input images, px."""
    proprio_dim: int = 6
    """Dimension of proprioception."""
    action_dim: int = 3
    """Dimension of one action."""
    chunk_len: int = 10
    """H: actions per predicted chunk."""
    d_model: int = 128
    """Transformer width (= token_dim of the embeddings)."""
    n_layers: int = 3
    """Transformer layers."""
    n_heads: int = 4
    """Attention heads."""
    stem_channels: tuple[int, ...] = (16, 32, 64, 128)
    """Channels of the CNN stem's stride-2 convolutions; the grid is image_size / 2^len."""
    vocab_size: int = 512
    """Hashed word vocabulary of the instruction."""
    max_words: int = 12
    """Longest instruction, in words."""
    proprio_mean: tuple[float, ...] = (0.0,) * 6
    proprio_std: tuple[float, ...] = (1.0,) * 6
    action_mean: tuple[float, ...] = (0.0,) * 3
    action_std: tuple[float, ...] = (1.0,) * 3
    extra: dict = field(default_factory=dict)
    """Notes saved with the checkpoint (e.g. the command that trained it)."""

    @property
    def grid(self) -> int:
        return self.image_size // 2 ** len(self.stem_channels)


def hash_words(text: str, vocab_size: int, max_words: int) -> list[int]:
    """Word ids 1..vocab_size-1 by a stable hash (0 is padding); no tokenizer files needed."""
    words = re.findall(r'[a-z0-9]+', text.lower())[:max_words]
    return [1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in words]


def read_config_file(directory) -> Path:
    """The config.json of the SmallVLA checkpoint in `directory`."""
    path = Path(directory) / 'config.json'
    if not path.is_file():
        raise FileNotFoundError(f'no SmallVLA checkpoint in {directory} (config.json missing)')
    return path


class CoordConvStem(nn.Module):
    """uint8 images (B, H, W, 3) -> feature grid tokens (B, grid*grid, d)."""

    def __init__(self, channels: tuple[int, ...], d_model: int):
        super().__init__()
        layers, c_in = [], 5  # RGB + x, y coordinates
        for i, c in enumerate(channels):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, c, k, stride=2, padding=k // 2), nn.GroupNorm(8, c), nn.GELU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, d_model)

    def forward(self, images):
        x = images.permute(0, 3, 1, 2).to(self.proj.weight.dtype) / 255.0
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        feats = self.net(torch.cat([x, xs, ys], dim=1))
        return self.proj(feats.flatten(2).transpose(1, 2))


class SmallVLA(VLABackbone):
    def __init__(self, config: SmallVLAConfig):
        super().__init__()
        self.config = c = config
        self.token_dim, self.chunk_len, self.action_dim = c.d_model, c.chunk_len, c.action_dim
        self.proprio_dim, self.camera_names = c.proprio_dim, tuple(c.camera_names)
        self.image_shape = (c.image_size, c.image_size)
        self.stem = CoordConvStem(c.stem_channels, c.d_model)
        self.camera_embed = nn.Parameter(torch.zeros(len(c.camera_names), 1, c.d_model))
        self.pos_embed = nn.Parameter(torch.randn(1, c.grid * c.grid, c.d_model) * 0.02)
        self.word_embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=0)
        self.word_pos = nn.Parameter(torch.randn(1, c.max_words, c.d_model) * 0.02)
        self.proprio_proj = nn.Linear(c.proprio_dim, c.d_model)
        self.action_queries = nn.Parameter(torch.randn(1, c.chunk_len, c.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, 4 * c.d_model, dropout=0.0,
                                           activation='gelu', batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(c.d_model)
        self.action_head = nn.Linear(c.d_model, c.action_dim)
        for name in ('proprio_mean', 'proprio_std', 'action_mean', 'action_std'):
            self.register_buffer(name, torch.tensor(getattr(c, name), dtype=torch.float32))

    def tokenize(self, instructions: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(instructions), self.config.max_words, dtype=torch.long)
        for i, text in enumerate(instructions):
            words = hash_words(text, self.config.vocab_size, self.config.max_words)
            ids[i, :len(words)] = torch.tensor(words, dtype=torch.long)
        return ids

    def encode(self, obs: VLAInput):
        """Run the transformer; returns (prefix outputs, prefix mask, query outputs)."""
        c = self.config
        b = obs.batch_size
        images = torch.cat([obs.images[name] for name in c.camera_names])  # (n_cam * B, H, W, 3)
        vision = self.stem(images).view(len(c.camera_names), b, -1, c.d_model)
        vision = (vision + self.camera_embed[:, None] + self.pos_embed[None]).transpose(0, 1).flatten(1, 2)
        ids = self.tokenize(obs.instruction).to(self.word_pos.device)
        words = self.word_embed(ids) + self.word_pos
        proprio = obs.proprio.to(self.proprio_mean.dtype)
        proprio = self.proprio_proj((proprio - self.proprio_mean) / self.proprio_std)[:, None]
        queries = self.action_queries.expand(b, -1, -1)
        tokens = torch.cat([vision, words, proprio, queries], dim=1)
        pad = torch.cat([torch.zeros(b, vision.shape[1], dtype=torch.bool, device=ids.device), ids == 0,
                         torch.zeros(b, 1 + c.chunk_len, dtype=torch.bool, device=ids.device)], dim=1)
        out = self.final_norm(self.transformer(tokens, src_key_padding_mask=pad))
        m = tokens.shape[1] - c.chunk_len
        return out[:, :m], ~pad[:, :m], out[:, m:]

    def predict_normalized(self, obs: VLAInput) -> torch.Tensor:
        """The chunk in normalised action units (B, H, A): what behaviour cloning trains."""
        return self.action_head(self.encode(obs)[2])

    def forward(self, obs: VLAInput, generator=None) -> VLAOutput:
        embeddings, mask, query_out = self.encode(obs)
        chunk = self.action_head(query_out) * self.action_std + self.action_mean
        return VLAOutput(embeddings=embeddings.float(), mask=mask, chunk=chunk.float())

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    # --- checkpoints: safetensors weights + JSON config ---

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, directory / 'model.safetensors')
        (directory / 'config.json').write_text(json.dumps(asdict(self.config), indent=1))

    @classmethod
    def proprio_stats(cls, directory) -> tuple[list[float], list[float]]:
        """`proprio_mean` and `proprio_std` from the checkpoint's config.json."""
        config = json.loads(read_config_file(directory).read_text())
        return list(config['proprio_mean']), list(config['proprio_std'])

    @classmethod
    def load(cls, directory) -> 'SmallVLA':
        directory = Path(directory)
        raw = json.loads(read_config_file(directory).read_text())
        config = SmallVLAConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = cls(config)
        model.load_state_dict(load_file(directory / 'model.safetensors'))
        return model
