"""pi0 behind the `VLABackbone` interface, built on transformers' `PI0ForConditionalGeneration`.

The embeddings are the VLM's final-layer states over pi0's prefix (image tokens of every camera, then
the instruction); the chunk comes from pi0's flow-matching `sample_actions`, seeded by `generator`.
Nothing is downloaded: `tiny()` builds a small random pi0 from a config, and `from_pretrained()`
reads a local directory only.
"""

import json
import re
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, PI0Config, PI0ForConditionalGeneration

from rlt_core.models.vla.backbone import VLABackbone, VLAInput, VLAOutput
from rlt_core.models.vla.pi0_settings import DEFAULT_PROPRIO_DIM, META_FILE, read_settings, state_stats

TOKENIZER_FILES = ('tokenizer.json', 'tokenizer.model', 'tokenizer_config.json')


def tiny_config(chunk_len: int = 10, vocab_size: int = 1024) -> PI0Config:
    """A small pi0 (~0.25M parameters): 2-layer Gemma VLM and action expert, 2-layer SigLIP at 64 px."""
    text = dict(model_type='gemma', hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                num_attention_heads=2, num_key_value_heads=1, head_dim=32, vocab_size=vocab_size)
    vision = dict(model_type='siglip_vision_model', hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=64, patch_size=16, vision_use_head=False)
    # The action expert attends to the VLM's cache: same layer count, kv heads and head_dim.
    expert = dict(model_type='gemma', hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    vlm = dict(model_type='paligemma', text_config=text, vision_config=vision, projection_dim=64,
               image_token_id=vocab_size, vocab_size=vocab_size)
    return PI0Config(vlm_config=vlm, dit_config=expert, chunk_size=chunk_len)


class HashTokenizer:
    """Words -> ids by CRC32 into the model's vocabulary: deterministic and offline, for when no
    tokenizer files exist. Ids below `first_id` (pad, eos, bos in Gemma) and the image token are never
    produced."""

    def __init__(self, vocab_size: int, bos_id: int, image_token_id: int, first_id: int = 3):
        self.bos_id, self.first_id = bos_id, first_id
        self.top = min(vocab_size, image_token_id) if image_token_id >= first_id else vocab_size

    def encode(self, text: str) -> list[int]:
        words = re.findall(r'\w+|[^\w\s]', text.lower())
        span = self.top - self.first_id
        return [self.bos_id] + [self.first_id + zlib.crc32(w.encode()) % span for w in words]


class Pi0Backbone(VLABackbone):
    """A (frozen) pi0: prefix embeddings and a flow-matching chunk for an `VLAInput` batch.

    `camera_names` fixes the order of the cameras in the prefix; `stats` holds `state_mean`,
    `state_std`, `actions_mean`, `actions_std` (proprio is normalised, the chunk de-normalised); without
    stats both are used as they are. `tokenizer` is a transformers tokenizer, or None for `HashTokenizer`.
    """

    def __init__(self, model: PI0ForConditionalGeneration | None = None, config: PI0Config | None = None,
                 camera_names: tuple[str, ...] = ('wrist',), chunk_len: int | None = None,
                 action_dim: int = 7, proprio_dim: int = DEFAULT_PROPRIO_DIM,
                 stats: dict[str, list[float]] | None = None,
                 tokenizer=None, max_text_len: int = 48, num_steps: int | None = None):
        super().__init__()
        if model is None:
            if config is None:
                raise ValueError('Pi0Backbone needs a model or a config (or use tiny / from_pretrained)')
            model = PI0ForConditionalGeneration(config)
        self.model = model.eval()
        cfg = model.config
        text_cfg = cfg.vlm_config.text_config
        self.camera_names = tuple(camera_names)
        self.chunk_len = chunk_len or cfg.chunk_size
        self.action_dim, self.proprio_dim = action_dim, proprio_dim
        self.token_dim = text_cfg.hidden_size
        self.max_text_len, self.num_steps = max_text_len, num_steps
        if (self.chunk_len > cfg.chunk_size or action_dim > cfg.max_action_dim
                or proprio_dim > cfg.max_state_dim):
            raise ValueError(f'pi0 predicts {cfg.chunk_size} x {cfg.max_action_dim} actions from a '
                             f'{cfg.max_state_dim}-D state; asked for {self.chunk_len} x {action_dim} '
                             f'from {proprio_dim}')
        self.tokenizer = tokenizer
        self.hash_tokenizer = HashTokenizer(text_cfg.vocab_size, text_cfg.bos_token_id,
                                            cfg.vlm_config.image_token_id)
        self.image_size = cfg.vlm_config.vision_config.image_size
        self.tokens_per_image = cfg.vlm_config.text_config.num_image_tokens
        self.stats = {k: list(map(float, v)) for k, v in (stats or {}).items()}
        for name, dim in {'state': proprio_dim, 'actions': action_dim}.items():
            mean = self.stats.get(f'{name}_mean', [0.0] * dim)
            std = self.stats.get(f'{name}_std', [1.0] * dim)
            if min(len(mean), len(std)) < dim:
                raise ValueError(f'{name} stats have {min(len(mean), len(std))} entries, need {dim}')
            self.register_buffer(f'{name}_mean', torch.tensor(mean[:dim]), persistent=False)
            self.register_buffer(f'{name}_std', torch.tensor(std[:dim]) + 1e-8, persistent=False)

    @classmethod
    def tiny(cls, camera_names: tuple[str, ...] = ('wrist',), proprio_dim: int = DEFAULT_PROPRIO_DIM,
             action_dim: int = 7, chunk_len: int = 10, seed: int = 0, **kw) -> 'Pi0Backbone':
        """A small random pi0 built offline from `tiny_config`; the same seed gives the same weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = PI0ForConditionalGeneration(tiny_config(chunk_len))
        return cls(model, camera_names=camera_names, chunk_len=chunk_len, action_dim=action_dim,
                   proprio_dim=proprio_dim, **kw)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kw) -> 'Pi0Backbone':
        """Load a local checkpoint directory (never the hub). Settings saved by `save_pretrained` are
        defaults for `kw`; stats may also come from a `processor_config.json`."""
        path = Path(path)
        if not (path / 'config.json').is_file():
            raise FileNotFoundError(f'no pi0 checkpoint at {path}: expected a local directory with '
                                    'config.json and weights (from save_pretrained); nothing is downloaded')
        model = PI0ForConditionalGeneration.from_pretrained(path, local_files_only=True)
        meta = read_settings(path)
        if any((path / f).is_file() for f in TOKENIZER_FILES):
            meta['tokenizer'] = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, **{**meta, **kw})

    @classmethod
    def proprio_stats(cls, path) -> tuple[list[float], list[float]]:
        """The state stats of the checkpoint's settings (`pi0_settings.state_stats`)."""
        return state_stats(path)

    def save_pretrained(self, path: str | Path) -> None:
        """The checkpoint, our settings and a transformers tokenizer (if any) into one directory."""
        path = Path(path)
        self.model.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)
        meta = dict(camera_names=list(self.camera_names), chunk_len=self.chunk_len,
                    action_dim=self.action_dim, proprio_dim=self.proprio_dim, max_text_len=self.max_text_len,
                    num_steps=self.num_steps, stats=self.stats)
        (path / META_FILE).write_text(json.dumps(meta, indent=2))

    def to_dtype(self, dtype: torch.dtype) -> 'Pi0Backbone':
        """pi0's weights in `dtype`; the normalisation stats stay float32 (`prepare` casts the inputs)."""
        self.model.to(dtype)
        return self

    @torch.no_grad()
    def forward(self, obs: VLAInput, generator: torch.Generator | None = None) -> VLAOutput:
        inputs = self.prepare(obs)
        cfg, dtype = self.model.config, self.model.dtype
        device = generator.device if generator is not None else inputs['state'].device
        noise = torch.randn(obs.batch_size, cfg.chunk_size, cfg.max_action_dim, generator=generator,
                            device=device)
        # sample_actions runs the VLM over the prefix exactly once; keep that pass's final-layer states.
        prefix = []

        def keep(_module, _args, out):
            prefix.append(out.last_hidden_state)

        hook = self.model.model.vlm.register_forward_hook(keep)
        try:
            actions = self.model.sample_actions(noise=noise.to(inputs['state'].device, dtype),
                                                num_steps=self.num_steps, **inputs)
        finally:
            hook.remove()
        chunk = actions[:, :self.chunk_len, :self.action_dim].float() * self.actions_std + self.actions_mean
        return VLAOutput(prefix[0].float(), inputs['attention_mask'].bool(), chunk)

    @torch.no_grad()
    def embed(self, obs: VLAInput) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the prefix embeddings (B, M, D) and mask (B, M), skipping the action expert."""
        inputs = self.prepare(obs)
        mask = inputs['attention_mask']
        embeds = self.model.model.embed_prefix(inputs['input_ids'], inputs['pixel_values'],
                                               inputs['pixel_attention_mask'])
        out = self.model.model.vlm(inputs_embeds=embeds, attention_mask=mask,
                                   position_ids=mask.cumsum(-1) - 1, token_type_ids=torch.zeros_like(mask))
        return out.last_hidden_state.float(), mask.bool()

    def prepare(self, obs: VLAInput) -> dict[str, torch.Tensor]:
        """pi0's model inputs: token ids with image placeholders, masks, pixels in [-1, 1], padded state."""
        device, dtype = self.state_mean.device, self.model.dtype
        missing = [c for c in self.camera_names if c not in obs.images]
        if missing:
            raise KeyError(f'observation lacks cameras {missing}; this pi0 reads {list(self.camera_names)}')
        pixels = torch.stack([self._pixels(obs.images[c].to(device)) for c in self.camera_names], dim=1)
        input_ids, attention_mask = self._tokens(obs.instruction)
        state = (obs.proprio.to(device, torch.float32) - self.state_mean) / self.state_std
        state = F.pad(state, (0, self.model.config.max_state_dim - state.shape[-1]))
        return dict(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                    pixel_values=pixels.to(dtype), state=state.to(dtype),
                    pixel_attention_mask=torch.ones(pixels.shape[:2], dtype=torch.bool, device=device))

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, 3, S, S) in [-1, 1]: fit the longer side to S, pad with black."""
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        h, w = x.shape[-2:]
        scale = self.image_size / max(h, w)
        nh, nw = round(h * scale), round(w * scale)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode='bilinear', align_corners=False, antialias=scale < 1)
        top, left = (self.image_size - nh) // 2, (self.image_size - nw) // 2
        return F.pad(x, (left, self.image_size - nw - left, top, self.image_size - nh - top), value=-1.0)

    def _tokens(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image placeholders for every camera, then bos + instruction + newline, right-padded to a fixed
        length, so every prefix has the same M."""
        n_image = len(self.camera_names) * self.tokens_per_image
        image_token_id = self.model.config.vlm_config.image_token_id
        ids = torch.zeros(len(instructions), n_image + self.max_text_len, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, text in enumerate(instructions):
            if self.tokenizer is None:
                tokens = self.hash_tokenizer.encode(text)
            else:
                bos = self.tokenizer.bos_token or ''
                tokens = self.tokenizer(f'{bos}{text}\n', add_special_tokens=False)['input_ids']
            tokens = tokens[:self.max_text_len]
            ids[i, :n_image] = image_token_id
            ids[i, n_image:n_image + len(tokens)] = torch.tensor(tokens)
            mask[i, :n_image + len(tokens)] = 1
        return ids, mask
