"""VLA server: the frozen VLA and RL-token encoder, run on the observations the arbiter asks for.

The arbiter names each observation it needs on rlt/inference_request (InferenceRequest): the one its next chunk
is decided on, or one whose RL state a recorded transition needs. The server keeps the newest observations
(rlt/observation) and, for each requested one, publishes the VLA's reference chunk (rlt/reference_chunk,
ActionChunk with SOURCE_VLA) and the RL token z_rl (rlt/rl_token), both stamped with the observation's stamp and
step_index. With several requests waiting, those a chunk is decided on go first, the newest first; one whose
observation has not come within `request_timeout_s` is dropped. No inference runs on an observation nobody asked
for, so the needed one never queues behind it. `serve: every` computes instead each observation it can keep up
with, dropping stale ones (a server without an arbiter). `extra_latency_ms` makes each inference that much
slower (benchmarks and tests of a slow VLA). An observation that is not of the robot profile (its cameras, each
image rgb8 at the camera's size as ingestion publishes it, its joints, finite values) is refused and counted with
its reason (`rlt_nodes.rejections.Rejections`: logged, reported on /diagnostics).
"""

import time

import numpy as np
from rclpy.node import Node

from rlt_core.control.profile import RobotProfile
from rlt_core.control.sync import Latest, check_image, joint_state_in_order
from rlt_core.models.rl_token import RLTokenModel
from rlt_core.models.vla.backbone import VLAInput
from rlt_core.models.vla.spec import BackboneSpec, check_backbone, load_backbone
from rlt_core.runtime import default_models_dir, setup_torch
from rlt_interfaces.msg import ActionChunk, InferenceRequest, Observation, RLToken
from rlt_nodes.conversions import chunk_to_msg, stamp_ns, token_to_msg
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import CHUNK_QOS, OBSERVATION_QOS, REQUEST_QOS, REQUESTED_OBSERVATION_QOS
from rlt_nodes.rejections import Rejections
from rlt_nodes.spin import spin_node

SERVE = ('requested', 'every')
KEPT_OBSERVATIONS = 20
"""Observations kept for requests (one second at 20 Hz): a request for an older one is not served."""
MAX_REQUESTS = 100
"""Requests waiting at most (the oldest dropped beyond): a flood of them cannot grow the server's memory."""


def next_request(requests: dict, observations) -> int | None:
    """The stamp to serve next among `requests` ({stamp: (asked, decides)}) whose observation is held: the newest
    that a chunk is decided on, else the newest; None when none is held."""
    ready = [stamp for stamp in requests if stamp in observations]
    return max(ready, key=lambda s: (requests[s][1], s)) if ready else None


class VLAServerNode(Node):
    def __init__(self):
        super().__init__('vla_server')
        p = self.declare_parameter
        self.profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        vla_path = p('vla_path', '', desc('VLA backbone spec: a SmallVLA folder, pi0:/folder or '
                                          'module:Class[:/path] (empty: the profile\'s, models/<profile>/vla)')).value
        token_path = p('token_path', '', desc('RL token folder (empty: models/<profile>/rl_token)')).value
        self.device = p('device', 'cpu', desc("torch device: 'cpu', or 'cuda' on a GPU workstation")).value
        dtype = p('dtype', 'float32', desc("the VLA's dtype: float32, or bfloat16/float16 on cuda")).value
        threads = p('threads', 1, desc('torch threads')).value
        self.serve = p('serve', 'requested', desc("'requested': the observations the arbiter asks for on "
                                                   "rlt/inference_request; 'every': each one it keeps up with")).value
        if self.serve not in SERVE:
            raise ValueError(f'serve is {self.serve!r}: one of {SERVE}')
        self.request_timeout_s = p('request_timeout_s', 1.0, desc(
            'a request whose observation has not come within this is dropped, s')).value
        self.extra_latency_s = p('extra_latency_ms', 0.0, desc(
            'added to each inference, ms (a slower VLA, for benchmarks and tests)')).value / 1e3
        self.torch = setup_torch(threads)
        spec = BackboneSpec.parse(vla_path, self.profile.name)
        token_path = token_path or default_models_dir(self.profile.name) / 'rl_token'
        self.vla = load_backbone(spec, self.device, dtype)
        check_backbone(self.vla, self.profile, spec)
        self.token = RLTokenModel.load(token_path).to(self.device)
        if self.token.config.embed_dim != self.vla.token_dim:
            raise ValueError(f'RL token {token_path} reads {self.token.config.embed_dim}-d embeddings; '
                             f'the VLA {spec} gives {self.vla.token_dim}-d ones')
        self.action_names = list(self.profile.action_names)
        self.warm_up()
        self.rejections = Rejections(self)
        self.chunk_pub = self.create_publisher(ActionChunk, 'rlt/reference_chunk', CHUNK_QOS)
        self.token_pub = self.create_publisher(RLToken, 'rlt/rl_token', CHUNK_QOS)
        self.observations: Latest[int, Observation] = Latest(KEPT_OBSERVATIONS)
        """The newest checked observations, by stamp, until requested."""
        self.requests: Latest[int, tuple[float, bool]] = Latest(MAX_REQUESTS)
        """Stamps asked for and not yet served, with when they were asked and whether a chunk is decided on them."""
        self.timed_out = 0
        self.work = self.create_guard_condition(self.serve_requests)
        self.create_subscription(Observation, 'rlt/observation', self.on_observation,
                                 REQUESTED_OBSERVATION_QOS if self.serve == 'requested' else OBSERVATION_QOS)
        if self.serve == 'requested':
            self.create_subscription(InferenceRequest, 'rlt/inference_request', self.on_request, REQUEST_QOS)
        self.count, self.busy_s = 0, 0.0
        self.get_logger().info(f'VLA server: {spec} + {token_path} on {self.device} ({dtype}), '
                               f'token_dim {self.token.config.token_dim}, H={self.profile.vla_chunk_len}, '
                               f'robot profile {self.profile.name} ({self.profile.hash})')

    def warm_up(self):
        """One inference on a blank observation before the publishers exist: a graph that waits for the
        rlt/reference_chunk publisher (the episode manager) waits for a server that answers at its speed."""
        blank = VLAInput(images={c.name: self.torch.zeros(1, c.height, c.width, 3, dtype=self.torch.uint8,
                                                          device=self.device) for c in self.profile.cameras},
                         proprio=self.torch.zeros(1, self.profile.proprio_dim, device=self.device), instruction=[''])
        with self.torch.no_grad():
            out = self.vla(blank)
            self.token.extract(out.embeddings, out.mask)

    def check(self, msg: Observation):
        """Why an observation is not one of this robot profile's, or None."""
        if list(msg.camera_names) != list(self.profile.camera_names) or len(msg.images) != len(msg.camera_names):
            return (f'{len(msg.images)} images of cameras {list(msg.camera_names)}; the robot profile has '
                    f'{list(self.profile.camera_names)}')
        for camera, img in zip(self.profile.cameras, msg.images, strict=True):
            reason = check_image(img.encoding, img.height, img.width, img.step, len(img.data), camera=camera)
            if reason:
                return f'{camera.name}: {reason}'
        js = msg.joint_state
        try:
            joint_state_in_order(js.name, js.position, js.velocity, self.profile.joint_names)
        except ValueError as err:
            return f'joint state: {err}'
        return None

    def on_observation(self, msg: Observation):
        reason = self.check(msg)
        if reason:
            self.rejections.refuse('rlt/observation', reason)
            return
        if self.serve == 'every':
            self.infer(msg)
            return
        stamp = stamp_ns(msg.header)
        self.observations[stamp] = msg
        if stamp in self.requests:
            self.work.trigger()

    def on_request(self, msg: InferenceRequest):
        stamp = stamp_ns(msg.header)
        self.requests[stamp] = (time.monotonic(), msg.decides)
        if stamp in self.observations:
            self.work.trigger()

    def serve_requests(self):
        """Serve the newest requested observation the server holds that a chunk is decided on, else the newest;
        trigger itself again while more wait."""
        now = time.monotonic()
        for stamp in [s for s, (asked, _) in self.requests.items() if now - asked > self.request_timeout_s]:
            del self.requests[stamp]
            self.timed_out += 1
        stamp = next_request(self.requests, self.observations)
        if stamp is None:
            return
        del self.requests[stamp]
        self.infer(self.observations.pop(stamp))
        if next_request(self.requests, self.observations) is not None:
            self.work.trigger()

    def infer(self, msg: Observation):
        """The reference chunk and RL token of one checked observation, published."""
        start = time.perf_counter()
        torch = self.torch
        try:
            images = {name: torch.from_numpy(np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3)
                                             .copy())[None].to(self.device)
                      for name, img in zip(msg.camera_names, msg.images, strict=True)}
            position, velocity = joint_state_in_order(msg.joint_state.name, msg.joint_state.position,
                                                      msg.joint_state.velocity, self.profile.joint_names)
            proprio = np.array([*position, *velocity], np.float32)
            obs = VLAInput(images=images, proprio=torch.from_numpy(proprio)[None].to(self.device),
                                 instruction=[msg.instruction])
            with torch.no_grad():
                out = self.vla(obs)
                z_rl = self.token.extract(out.embeddings, out.mask)[0].cpu().numpy()
            chunk = out.chunk[0, :self.profile.vla_chunk_len].cpu().numpy()  # H actions
        except (KeyError, ValueError, RuntimeError) as err:
            self.rejections.refuse('rlt/observation', err)
            return
        if self.extra_latency_s > 0:
            time.sleep(self.extra_latency_s)
        self.token_pub.publish(token_to_msg(z_rl, header=msg.header, step_index=msg.step_index))
        self.chunk_pub.publish(chunk_to_msg(chunk, ActionChunk.SOURCE_VLA, header=msg.header,
                                            step_index=msg.step_index, action_names=self.action_names))
        self.count += 1
        self.busy_s += time.perf_counter() - start
        if self.count % 500 == 0:
            unserved = self.timed_out + self.requests.dropped
            self.get_logger().info(f'{self.count} observations, {1e3 * self.busy_s / self.count:.1f} ms each; '
                                   f'{unserved} requests not served (their observation never came)')


def main(args=None):
    spin_node(VLAServerNode, args)


if __name__ == '__main__':
    main()
