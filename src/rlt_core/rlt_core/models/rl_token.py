"""The RL token (phase 1): a compact readout of a frozen VLA's final-layer embeddings.

  encoder g_phi   reads [z_1..z_M, e_rl] (e_rl a learned embedding appended at position M+1);
                  z_rl = its output at M+1, projected to token_dim
  decoder d_phi   causal, reads [z_rl, z̄_1..z̄_{M-1}] (z̄ = stop-gradient embeddings);
  head h_phi      linear, predicts z̄_1..z̄_M
  L_ro            sum_i || h(d([z_rl, z̄_{1:i-1}]))_i - z̄_i ||^2, over valid tokens

After training the decoder is dropped and the encoder frozen; `extract` maps embeddings to z_rl,
normalised with statistics of the training frames (`set_statistics`): the raw readout varies little
around large means, and the actor and critic learn faster from unit-scale inputs. Whitened with the
critical-phase frames, the small directions that carry the sub-millimetre offset get unit scale too.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass
class RLTokenConfig:
    embed_dim: int
    """D: width of the VLA's final-layer embeddings."""
    max_tokens: int
    """Largest M (number of VLA embeddings) the position embeddings cover."""
    token_dim: int = 64
    """Dimension of z_rl."""
    d_model: int = 128
    """Width of the encoder and decoder transformers."""
    encoder_layers: int = 2
    decoder_layers: int = 2
    n_heads: int = 4


def _transformer(cfg: RLTokenConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, dropout=0.0,
                                       activation='gelu', batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class RLTokenEncoder(nn.Module):
    """g_phi: z_rl = proj(g([z_1..z_M, e_rl])_{M+1})."""

    def __init__(self, cfg: RLTokenConfig):
        super().__init__()
        self.in_proj = nn.Linear(cfg.embed_dim, cfg.d_model)
        self.e_rl = nn.Parameter(torch.randn(1, 1, cfg.d_model) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, cfg.max_tokens + 1, cfg.d_model) * 0.02)
        self.transformer = _transformer(cfg, cfg.encoder_layers)
        self.out = nn.Sequential(nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.token_dim))
        self.register_buffer('z_mean', torch.zeros(cfg.token_dim))
        self.register_buffer('z_std', torch.ones(cfg.token_dim))
        self.register_buffer('z_whiten', torch.eye(cfg.token_dim))

    def forward(self, z, mask):
        b, m, _ = z.shape
        h = torch.cat([self.in_proj(z), self.e_rl.expand(b, -1, -1)], dim=1) + self.pos[:, :m + 1]
        pad = torch.cat([~mask, torch.zeros(b, 1, dtype=torch.bool, device=mask.device)], dim=1)
        raw = self.out(self.transformer(h, src_key_padding_mask=pad)[:, m])
        return (raw - self.z_mean) / self.z_std @ self.z_whiten


class RLTokenDecoder(nn.Module):
    """d_phi with head h_phi: predicts z̄_i from [z_rl, z̄_1..z̄_{i-1}] (causal)."""

    def __init__(self, cfg: RLTokenConfig):
        super().__init__()
        self.token_in = nn.Linear(cfg.token_dim, cfg.d_model)
        self.embed_in = nn.Linear(cfg.embed_dim, cfg.d_model)
        self.pos = nn.Parameter(torch.randn(1, cfg.max_tokens, cfg.d_model) * 0.02)
        self.transformer = _transformer(cfg, cfg.decoder_layers)
        self.head = nn.Sequential(nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.embed_dim))

    def forward(self, z_rl, z_bar):
        m = z_bar.shape[1]
        h = torch.cat([self.token_in(z_rl)[:, None], self.embed_in(z_bar[:, :-1])], dim=1) + self.pos[:, :m]
        causal = nn.Transformer.generate_square_subsequent_mask(m, device=h.device)
        return self.head(self.transformer(h, mask=causal, is_causal=True))


class RLTokenModel(nn.Module):
    def __init__(self, cfg: RLTokenConfig):
        super().__init__()
        self.config = cfg
        self.encoder = RLTokenEncoder(cfg)
        self.decoder = RLTokenDecoder(cfg)

    def reconstruction_loss(self, z, mask):
        """L_ro per sample: the encoder sees z (gradients may reach the VLA), the decoder z̄."""
        z_rl = self.encoder(z, mask)
        z_bar = z.detach()
        pred = self.decoder(z_rl, z_bar)
        return (((pred - z_bar) ** 2).sum(-1) * mask).sum(-1)

    @torch.no_grad()
    def extract(self, z, mask):
        """z_rl for a batch of embeddings (the encoder only)."""
        return self.encoder(z, mask)

    @torch.no_grad()
    def clear_statistics(self) -> None:
        """Read out the raw z_rl from now on."""
        self.encoder.z_mean.zero_()
        self.encoder.z_std.fill_(1.0)
        self.encoder.z_whiten.copy_(torch.eye(self.config.token_dim))

    @torch.no_grad()
    def set_statistics(self, z_rl_raw: torch.Tensor, whiten: bool = False, floor: float = 1e-4) -> None:
        """Normalise z_rl from now on with statistics of these raw readouts (N, token_dim).

        Standardised per dimension; with `whiten`, also decorrelated (ZCA: z @ V diag(1/sqrt(lambda)) V^T
        from the eigen-decomposition of their covariance, eigenvalues floored at `floor` times the largest).
        Whitened on critical-phase readouts, directions that vary little there (the sub-millimetre
        offset among them) reach the actor and critic at the same scale as the large ones.
        """
        self.clear_statistics()
        self.encoder.z_mean.copy_(z_rl_raw.mean(0))
        self.encoder.z_std.copy_(z_rl_raw.std(0).clamp(min=1e-6))
        if whiten:
            s = ((z_rl_raw - self.encoder.z_mean) / self.encoder.z_std).double()
            lam, v = torch.linalg.eigh(s.T @ s / len(s))
            lam = lam.clamp(min=0) + floor * lam.max()
            self.encoder.z_whiten.copy_((v / lam.sqrt()) @ v.T)

    def save(self, directory, with_decoder: bool = False) -> None:
        """Save the (frozen) encoder, and the decoder too while training."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.state_dict() if with_decoder else {
            'encoder.' + k: v for k, v in self.encoder.state_dict().items()}
        save_file({k: v.contiguous() for k, v in state.items()}, directory / 'rl_token.safetensors')
        (directory / 'rl_token.json').write_text(json.dumps(asdict(self.config), indent=1))

    @classmethod
    def load(cls, directory) -> 'RLTokenModel':
        directory = Path(directory)
        if not (directory / 'rl_token.json').exists():
            raise FileNotFoundError(f'no RL token in {directory} (rl_token.json missing)')
        model = cls(RLTokenConfig(**json.loads((directory / 'rl_token.json').read_text())))
        state = load_file(directory / 'rl_token.safetensors')
        model.load_state_dict(state, strict=False)
        missing = [k for k in model.encoder.state_dict()
                   if 'encoder.' + k not in state and k not in ('z_mean', 'z_std', 'z_whiten')]  # older: not normalised
        if missing:
            raise ValueError(f'RL token checkpoint lacks encoder weights: {missing[:3]}')
        return model.eval()
