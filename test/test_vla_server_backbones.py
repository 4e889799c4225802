"""The VLA server in its own process on a backbone named by spec: a tiny pi0 saved to a folder serves
chunks and tokens of its robot profile's shape, for the observations asked for and no others; a backbone that
does not fit the profile stops it at start."""

import os

import numpy as np
import torch
from builtin_interfaces.msg import Time
from conftest import write_profile
from sensor_msgs.msg import Image, JointState

from rlt_core.control.profile import RobotProfile
from rlt_core.models.rl_token import RLTokenConfig, RLTokenModel
from rlt_core.models.vla.backbone import VLAInput
from rlt_core.models.vla.pi0 import Pi0Backbone
from rlt_interfaces.msg import ActionChunk, InferenceRequest, Observation, RLToken
from rlt_nodes.conversions import as_numpy, msg_to_chunk
from rlt_nodes.qos import CHUNK_QOS, OBSERVATION_QOS, REQUEST_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')
VLA_SERVER = os.path.join(INSTALL, 'rlt_nodes', 'lib', 'rlt_nodes', 'vla_server')
JOINTS = ('shoulder', 'elbow', 'wrist', 'gripper')  # a robot of another shape than the default cell
H = 16


def arm_profile(path) -> RobotProfile:
    """Four joints, H = 16, the default cell's three cameras at 64 px (the tiny pi0's image size)."""
    n = len(JOINTS)
    return RobotProfile.load(write_profile(path, image_size=64, name='four_joint_arm', joint_names=JOINTS,
                                           joint_lower=(-1.0,) * n, joint_upper=(1.0,) * n,
                                           max_delta=(0.01,) * n, critical_max_delta=(0.002,) * n,
                                           vla_chunk_len=H))


def save_tiny_pi0_and_token(folder, profile: RobotProfile) -> tuple[Pi0Backbone, RLTokenModel]:
    """A tiny pi0 for `profile` in folder/pi0, and an RL token of its embedding width in folder/rl_token."""
    n = profile.action_dim
    stats = dict(state_mean=[0.0] * 2 * n, state_std=[0.5] * 2 * n, actions_mean=[0.0] * n,
                 actions_std=list(profile.max_delta))
    pi0 = Pi0Backbone.tiny(profile.camera_names, proprio_dim=2 * n, action_dim=n, chunk_len=H, stats=stats)
    pi0.save_pretrained(folder / 'pi0')
    m = len(profile.camera_names) * pi0.tokens_per_image + pi0.max_text_len
    torch.manual_seed(0)
    token = RLTokenModel(RLTokenConfig(embed_dim=pi0.token_dim, max_tokens=m, token_dim=16, d_model=32,
                                       encoder_layers=1, decoder_layers=1))
    token.save(folder / 'rl_token')
    return pi0.freeze(), token.eval()


def observation(profile: RobotProfile, step_index: int) -> Observation:
    """An observation as ingestion publishes it: the profile's cameras and joints, images in rgb8."""
    rng = np.random.default_rng(step_index)
    stamp = Time(sec=100 + step_index)
    images = []
    for camera in profile.cameras:
        pixels = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
        image = Image(height=camera.height, width=camera.width, encoding='rgb8', step=3 * camera.width,
                      data=pixels.tobytes())
        image.header.stamp = stamp
        images.append(image)
    joints = JointState(name=list(profile.joint_names), position=rng.uniform(-0.5, 0.5, len(JOINTS)).tolist(),
                        velocity=rng.uniform(-0.1, 0.1, len(JOINTS)).tolist())
    joints.header.stamp = stamp
    msg = Observation(step_index=step_index, camera_names=list(profile.camera_names), images=images,
                      joint_state=joints, instruction='insert the peg into the hole')
    msg.header = joints.header
    return msg


def test_vla_server_serves_a_tiny_pi0_in_the_profiles_shape(processes, test_node, tmp_path):
    profile = arm_profile(tmp_path / 'arm.yaml')
    pi0, token = save_tiny_pi0_and_token(tmp_path, profile)
    server = processes.spawn(VLA_SERVER, '--ros-args', '-p', f'robot_profile:={tmp_path / "arm.yaml"}',
                             '-p', f'vla_path:=pi0:{tmp_path / "pi0"}', '-p', f'token_path:={tmp_path / "rl_token"}')
    node = test_node.node
    chunks, tokens = [], []
    node.create_subscription(ActionChunk, 'rlt/reference_chunk', chunks.append, CHUNK_QOS)
    node.create_subscription(RLToken, 'rlt/rl_token', tokens.append, CHUNK_QOS)
    pub = node.create_publisher(Observation, 'rlt/observation', OBSERVATION_QOS)
    requests = node.create_publisher(InferenceRequest, 'rlt/inference_request', REQUEST_QOS)
    # The server subscribes once its backbone is loaded, checked and warm.
    assert test_node.spin_until(lambda: pub.get_subscription_count() > 0 and requests.get_subscription_count() > 0,
                                timeout=90), processes.stop(server)
    sent = {n: observation(profile, step_index=n) for n in (5, 6, 7)}
    for n in (5, 6, 7):  # the server computes none of them until it is asked
        pub.publish(sent[n])
    msg = sent[7]
    requests.publish(InferenceRequest(header=msg.header, step_index=7))
    assert test_node.spin_until(lambda: chunks and tokens, timeout=20), processes.stop(server)
    requests.publish(InferenceRequest(header=sent[5].header, step_index=5))
    assert test_node.spin_until(lambda: len(chunks) == len(tokens) == 2, timeout=20), processes.stop(server)
    assert [c.step_index for c in chunks] == [t.step_index for t in tokens] == [7, 5]  # never 6: nobody asked

    chunk_msg, token_msg = chunks[0], tokens[0]
    chunk = msg_to_chunk(chunk_msg)
    assert chunk.shape == (H, len(JOINTS)) and np.isfinite(chunk).all()
    assert chunk_msg.source == ActionChunk.SOURCE_VLA and list(chunk_msg.action_names) == list(JOINTS)
    assert chunk_msg.step_index == token_msg.step_index == 7
    assert chunk_msg.header.stamp == token_msg.header.stamp == msg.header.stamp
    # The token is this pi0's: the same observation, embedded here, reads out the same z_rl.
    images = {c: torch.from_numpy(np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3).copy())[None]
              for c, img in zip(msg.camera_names, msg.images, strict=True)}
    proprio = torch.tensor([*msg.joint_state.position, *msg.joint_state.velocity], dtype=torch.float32)[None]
    with torch.no_grad():
        z, mask = pi0.embed(VLAInput(images, proprio, [msg.instruction]))
        expected = token.extract(z, mask)[0].numpy()
    assert as_numpy(token_msg.data).shape == (16,)
    np.testing.assert_allclose(as_numpy(token_msg.data), expected, atol=1e-4)
    out = processes.stop(server)
    assert f'pi0:{tmp_path / "pi0"}' in out and 'four_joint_arm' in out


def test_vla_server_refuses_a_backbone_that_does_not_fit_the_profile(processes, tmp_path):
    profile = arm_profile(tmp_path / 'arm.yaml')
    save_tiny_pi0_and_token(tmp_path, profile)
    other = write_profile(tmp_path / 'cell.yaml', image_size=64)  # the default cell: three joints, H = 10
    server = processes.spawn(VLA_SERVER, '--ros-args', '-p', f'robot_profile:={other}',
                             '-p', f'vla_path:=pi0:{tmp_path / "pi0"}', '-p', f'token_path:={tmp_path / "rl_token"}')
    assert server.wait(timeout=90) != 0
    out = processes.stop(server)
    assert f'VLA backbone Pi0Backbone (pi0:{tmp_path / "pi0"}) does not fit robot profile' in out, out
    assert 'action_dim 4 != 3 (joint_delta)' in out and 'proprio_dim 8 != 2 x 3 joints' in out, out


def test_an_observation_a_chunk_is_decided_on_is_served_before_the_recorded_windows_states():
    """{stamp: (asked, decides)}: the newest deciding request whose observation is held, else the newest."""
    from rlt_nodes.vla_server import next_request
    requests = {5: (0.0, True), 6: (0.0, False), 7: (0.0, False), 8: (0.0, True)}
    assert next_request(requests, {5, 6, 7}) == 5  # 8's observation has not come
    assert next_request(requests, {5, 6, 7, 8}) == 8
    assert next_request({6: (0.0, False), 7: (0.0, False)}, {6, 7}) == 7
    assert next_request(requests, {9}) is None
