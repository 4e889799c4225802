"""Actor: the RL actor pi(a | x, ref_chunk) refining the VLA's chunk in the critical phase.

Matches rlt/rl_token, rlt/reference_chunk and joint_states by stamp (the joint states that are control steps, as
the arbiter and ingestion take them: `rlt_core.control.steps.ControlSteps`) and builds x = (z_rl, normalised
proprio) as the arbiter does (`rlt_core.rl.rl_state.RLInputJoin`: the joints in the robot profile's
order, normalised as the frozen VLA's checkpoint says); for each observation the arbiter asked for on
rlt/inference_request, in the critical phase and once it has weights, it publishes the refined chunk on
rlt/actor_chunk (SOURCE_ACTOR, stamped like the observation): it refines the reference's C rows from the
request's `lead_steps` on (the chunk starts that many steps after the observation, when the chunk in force runs
out), and its `step_index` is the step it starts at. Weights arrive on rlt/actor_weights (latched); a message
whose SHA-256 or shapes do not check out, whose robot profile hash, chunk length or action dimension are not those
of this node's robot profile (`robot_profile`; `RobotProfile.check_actor`), or whose version is not newer
than the current one, is refused; the version in use is latched on rlt/actor_version. Refused input
(weights, joint states, chunks, tokens) is counted per topic with its reason (`rlt_nodes.rejections.Rejections`:
logged, reported on /diagnostics). When the learner stops, the actor keeps acting on its last weights.
"""


from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import UInt64

from rlt_core.control.phase import CriticalPhase
from rlt_core.control.profile import RobotProfile
from rlt_core.control.steps import ControlSteps
from rlt_core.control.sync import Latest, joint_state_in_order
from rlt_core.models.vla.spec import BackboneSpec
from rlt_core.rl.actor import unpack_weights
from rlt_core.rl.rl_state import ProprioNormalization, RLInputJoin
from rlt_core.runtime import setup_torch
from rlt_interfaces.msg import ActionChunk, ActorWeights, EpisodeEvent, InferenceRequest, RLToken
from rlt_nodes.conversions import as_numpy, chunk_to_msg, msg_to_chunk, stamp_ns
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import CHUNK_QOS, EVENTS_QOS, LATCHED_QOS, REQUEST_QOS
from rlt_nodes.rejections import Rejections
from rlt_nodes.spin import spin_node


class ActorNode(Node):
    def __init__(self):
        super().__init__('actor')
        p = self.declare_parameter
        self.profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        vla_path = p('vla_path', '', desc('VLA backbone spec (as vla_server): its proprio normalisation')).value
        self.explore = p('explore', True, desc('add the actor Gaussian exploration noise (training)')).value
        self.always = p('publish_outside_critical', False,
                        desc('also refine chunks outside the critical phase (monitoring)')).value
        threads = p('threads', 1, desc('torch threads')).value
        seed = p('seed', 0, desc('seed of the exploration noise')).value
        self.torch = setup_torch(threads, seed)
        self.generator = self.torch.Generator().manual_seed(seed)
        self.join = RLInputJoin(ProprioNormalization.from_vla_checkpoint(
            BackboneSpec.parse(vla_path, self.profile.name), proprio_dim=self.profile.proprio_dim), keep=50)
        self.control_steps = ControlSteps(self.profile.control_hz)
        self.phase = CriticalPhase()
        self.actor, self.version, self.token_dim = None, 0, None
        self.requests: Latest[int, InferenceRequest] = Latest(50)
        self.joined: Latest[int, tuple] = Latest(50)
        """The latest requests and joined inputs (x, ref, the reference's message), by stamp, until both are in."""
        self.rejections = Rejections(self)
        self.pub = self.create_publisher(ActionChunk, 'rlt/actor_chunk', CHUNK_QOS)
        self.version_pub = self.create_publisher(UInt64, 'rlt/actor_version', LATCHED_QOS)
        self.create_subscription(RLToken, 'rlt/rl_token', self.on_token, CHUNK_QOS)
        self.create_subscription(ActionChunk, 'rlt/reference_chunk', self.on_reference, CHUNK_QOS)
        self.create_subscription(JointState, 'joint_states', self.on_joint_state, 10)
        self.create_subscription(EpisodeEvent, 'episode/events', self.on_event, EVENTS_QOS)
        self.create_subscription(ActorWeights, 'rlt/actor_weights', self.on_weights, LATCHED_QOS)
        self.create_subscription(InferenceRequest, 'rlt/inference_request', self.on_request, REQUEST_QOS)
        self.get_logger().info(f'actor: robot profile {self.profile.name} ({self.profile.hash}), proprio '
                               f'normalisation from {vla_path}, explore={self.explore}; waiting for weights')

    # --- weights ---

    def on_weights(self, msg: ActorWeights):
        def refuse(reason):
            self.rejections.refuse('rlt/actor_weights', f'weights version {msg.version}: {reason}')
        if msg.version <= self.version:
            return refuse(f'not newer than {self.version}')
        try:
            actor = unpack_weights(msg.format, msg.sha256, msg.config_json, bytes(msg.payload))
        except ValueError as err:
            return refuse(err)
        try:
            self.profile.check_actor(actor.config)
        except ValueError as err:
            return refuse(err)
        if self.token_dim is not None:
            state_dim = self.token_dim + self.join.norm.dim
            if actor.config.state_dim != state_dim:
                return refuse(f'state_dim {actor.config.state_dim} != token + proprio {state_dim}')
        first = self.actor is None
        self.actor, self.version = actor, msg.version
        self.version_pub.publish(UInt64(data=msg.version))
        log = self.get_logger().info if first else self.get_logger().debug
        log(f'actor weights version {msg.version} loaded')

    # --- phase ---

    def on_event(self, msg: EpisodeEvent):
        if msg.event == EpisodeEvent.EPISODE_START:
            self.phase.reset()
        elif msg.event in (EpisodeEvent.PHASE_ENTER_CRITICAL, EpisodeEvent.PHASE_EXIT_CRITICAL):
            entering = msg.event == EpisodeEvent.PHASE_ENTER_CRITICAL
            if msg.detail == 'human':
                if entering != self.phase.active:
                    self.phase.human_toggle()
            else:
                self.phase.update(signal=entering)

    # --- inputs, matched by stamp ---

    def on_joint_state(self, msg: JointState):
        try:  # in the profile's joint order, as the arbiter and the learner see it
            position, velocity = joint_state_in_order(msg.name, msg.position, msg.velocity, self.profile.joint_names)
        except ValueError as err:
            self.rejections.refuse('joint_states', err)
            return
        if self.control_steps.admit(stamp_ns(msg.header)):  # only a step's has a token and a reference
            self.act('joint_states', self.join.add_proprio, stamp_ns(msg.header), [*position, *velocity])

    def on_token(self, msg: RLToken):
        self.token_dim = len(msg.data)
        self.act('rlt/rl_token', self.join.add_token, stamp_ns(msg.header), as_numpy(msg.data))

    def on_reference(self, msg: ActionChunk):
        try:
            chunk = msg_to_chunk(msg)
        except ValueError as err:
            self.rejections.refuse('rlt/reference_chunk', err)
            return
        self.act('rlt/reference_chunk', self.join.add_reference, stamp_ns(msg.header), chunk, msg)

    def on_request(self, msg: InferenceRequest):
        stamp = stamp_ns(msg.header)
        self.requests[stamp] = msg
        self.refine(stamp, 'rlt/inference_request')

    def act(self, topic, add, stamp, *value):
        """One input of an observation (from `topic`); once its token, reference and joint state are in, the
        refined chunk. An input that does not fit the others (its size, the weights' state) is refused."""
        try:
            joined = add(stamp, *value)
        except ValueError as err:
            self.rejections.refuse(topic, f'cannot refine the chunk: {err}')
            return
        if joined is not None:
            self.joined[stamp] = joined[1:]
            self.refine(stamp, topic)

    def refine(self, stamp, topic):
        """The refined chunk of a requested observation whose inputs are in."""
        if stamp not in self.requests or stamp not in self.joined:
            return
        request, (x, ref, ref_msg) = self.requests.pop(stamp), self.joined.pop(stamp)
        if self.actor is None or not (self.phase.active or self.always):
            return
        C, lead = self.actor.config.chunk_len, request.lead_steps
        try:
            if lead + C > len(ref):
                raise ValueError(f'lead_steps {lead} + C {C} > the reference\'s {len(ref)} steps')
            chunk = self.actor.select_chunk(x, ref[lead:lead + C], explore=self.explore,
                                            generator=self.generator).numpy()
        except (ValueError, RuntimeError) as err:
            self.rejections.refuse(topic, f'cannot refine the chunk: {err}')
            return
        self.pub.publish(chunk_to_msg(chunk, ActionChunk.SOURCE_ACTOR, header=ref_msg.header,
                                      step_index=request.step_index + lead, action_names=ref_msg.action_names))


def main(args=None):
    spin_node(ActorNode, args)


if __name__ == '__main__':
    main()
