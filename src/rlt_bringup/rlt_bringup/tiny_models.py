"""A tiny untrained SmallVLA and RL token with the real shapes (3 cameras at 96 px, 6-D proprio,
3-D actions, H = 10): graph tests and the latency benchmark run without the trained default models.

  python -m rlt_bringup.tiny_models DIR      (writes DIR/vla and DIR/rl_token)
"""

import sys
from pathlib import Path


def make_tiny_models(directory) -> tuple[str, str]:
    import torch

    from rlt_core.models.rl_token import RLToken, RLTokenConfig
    from rlt_core.models.vla.small_vla import SmallVLA, SmallVLAConfig
    torch.manual_seed(0)
    directory = Path(directory)
    config = SmallVLAConfig(stem_channels=(8, 16, 32, 64), d_model=32, n_layers=1, n_heads=4,
                            proprio_mean=(0.0, 0.0, -0.01, 0.0, 0.0, 0.0),
                            proprio_std=(0.03, 0.03, 0.03, 0.1, 0.1, 0.1),
                            action_std=(0.002, 0.002, 0.002))
    vla = SmallVLA(config)
    vla.save(directory / 'vla')
    m = len(config.camera_names) * config.grid ** 2 + config.max_words + 1
    RLToken(RLTokenConfig(embed_dim=32, max_tokens=m, token_dim=16, d_model=32, encoder_layers=1,
                          decoder_layers=1)).save(directory / 'rl_token')
    return str(directory / 'vla'), str(directory / 'rl_token')


if __name__ == '__main__':
    print(make_tiny_models(sys.argv[1]))
