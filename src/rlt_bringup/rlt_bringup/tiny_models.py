"""A tiny untrained SmallVLA and RL token with the real shapes of a robot profile (its cameras and image size,
proprio = joint positions and velocities, one action per joint, H = vla_chunk_len): graph tests and the
latency benchmark run without the trained default models.

  python -m rlt_bringup.tiny_models DIR [PROFILE]     (writes DIR/vla and DIR/rl_token)
"""

import sys
from pathlib import Path


def make_tiny_models(directory, robot_profile: str = '') -> tuple[str, str]:
    import torch

    from rlt_core.control.profile import RobotProfile
    from rlt_core.models.rl_token import RLTokenConfig, RLTokenModel
    from rlt_core.models.vla.small_vla import SmallVLA, SmallVLAConfig
    torch.manual_seed(0)
    profile = RobotProfile.load(robot_profile)
    directory = Path(directory)
    middle = [(lo + hi) / 2 for lo, hi in zip(profile.joint_lower, profile.joint_upper, strict=True)]
    spread = [(hi - lo) / 4 for lo, hi in zip(profile.joint_lower, profile.joint_upper, strict=True)]
    n = profile.action_dim
    config = SmallVLAConfig(camera_names=profile.camera_names, image_size=profile.cameras[0].width,
                            proprio_dim=profile.proprio_dim, action_dim=n, chunk_len=profile.vla_chunk_len,
                            stem_channels=(8, 16, 32, 64), d_model=32, n_layers=1, n_heads=4,
                            proprio_mean=(*middle, *[0.0] * len(middle)), proprio_std=(*spread, *[0.1] * len(spread)),
                            action_mean=(0.0,) * n, action_std=tuple(d / 2.5 for d in profile.max_delta))
    vla = SmallVLA(config)
    vla.save(directory / 'vla')
    m = len(config.camera_names) * config.grid ** 2 + config.max_words + 1
    RLTokenModel(RLTokenConfig(embed_dim=32, max_tokens=m, token_dim=16, d_model=32, encoder_layers=1,
                          decoder_layers=1)).save(directory / 'rl_token')
    return str(directory / 'vla'), str(directory / 'rl_token')


if __name__ == '__main__':
    print(make_tiny_models(*sys.argv[1:3]))
