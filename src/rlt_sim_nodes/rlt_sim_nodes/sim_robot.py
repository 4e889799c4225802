"""The simulated robot: a MuJoCo peg-in-hole cell behind the interfaces of a real robot.

The cell is the robot of the robot profile (`robot_profile`: joints and limits, cameras and image size,
control rate, episode length, controller name): the gantry for a joint_delta profile, the 6-DoF arm for an
ee_delta one (`rlt_sim.episode.make_env`). Publishes `joint_states` and one image stream per camera on its
topic, as its driver would (`sensor_msgs/Image` in the camera's encoding, rgb8 for `any`, or a PNG or JPEG
`sensor_msgs/CompressedImage`; same stamp per control step), accepts `trajectory_msgs/JointTrajectory` on
`<controller_name>/joint_trajectory` as a ros2_control JointTrajectoryController does, and reports
episodes on `episode/events` (start, critical-phase switches, end with success). `sim/reset` (std_srvs/Trigger)
starts a new episode once every node in `wait_for_subscribers` subscribes to episode/events as this node sees
the graph (its own discovery, so the episode's start reaches them); until then it answers success=False and the
caller retries. `sim/privileged` (std_msgs/Float64MultiArray, one per control step, layout in PRIVILEGED_LAYOUT)
carries state a real robot does not report (peg tip and hole positions, the critical-phase flag); only the
simulated human reads it, never the learning nodes. Standing in for a real robot (`stand_in`), it publishes
no episode events and no privileged topics and never ends an episode: the operator's episodes run through the
arbiter. `sim/reset_scene` (std_srvs/Trigger) moves the hole and the peg's grip offset without moving the robot,
as an operator resets a real cell. Commands with wrong joints, non-finite values or positions outside the joint
limits are refused with a logged reason and never applied.
"""

import array

import cv2
import numpy as np
from geometry_msgs.msg import Vector3Stamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from rlt_core.control.profile import RobotProfile
from rlt_interfaces.msg import EpisodeEvent
from rlt_nodes.cameras import message_type
from rlt_nodes.params import ROBOT_PROFILE
from rlt_nodes.qos import EVENTS_QOS
from rlt_nodes.spin import spin_node
from rlt_sim.episode import make_env
from rlt_sim.trajectory import InvalidCommandError, validate_trajectory

PRIVILEGED_LAYOUT = ('tip_x', 'tip_y', 'tip_z', 'hole_x', 'hole_y', 'hole_z', 'critical', 'step', 'episode_id',
                     'stamp_ns')
"""Entries of a sim/privileged message's data (stamp_ns: that of the step's joint state)."""


class SimRobotNode(Node):
    def __init__(self):
        super().__init__('sim_robot')
        p = self.declare_parameter
        self.profile = profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        seed = p('seed', 0, _desc('seed of the first episode; episode k uses seed + k')).value
        controller = profile.controller_name  # commands arrive on <controller_name>/joint_trajectory
        self.auto_reset = p('auto_reset', False,
                            _desc('start the next episode as soon as one ends')).value
        self.wait_for_subscribers = list(p('wait_for_subscribers', Parameter.Type.STRING_ARRAY, _desc(
            'nodes that must subscribe to episode/events before sim/reset starts an episode')).value or [])
        self.stand_in = p('stand_in', False, _desc(
            'stand in for a real robot: no episode events or privileged topics, the simulation never ends an '
            'episode; sim/reset_scene moves the hole between the operator\'s episodes')).value
        clearance = p('clearance_mm', 1.0, _desc('peg-hole clearance per side, mm')).value
        self.env = make_env(profile, clearance_mm=clearance,
                            render=p('render', True, _desc('render and publish camera images')).value)
        config = self.env.config
        self.joint_names = profile.joint_names
        self.dt = profile.dt
        self.joint_low = np.array(profile.joint_lower)
        self.joint_high = np.array(profile.joint_upper)

        self.joint_pub = self.create_publisher(JointState, 'joint_states', 10)
        self.image_pubs = {c.name: self.create_publisher(message_type(c), c.image_topic, qos_profile_sensor_data)
                           for c in (profile.cameras if config.render else ())}
        if not self.stand_in:
            self.event_pub = self.create_publisher(EpisodeEvent, 'episode/events', EVENTS_QOS)
            self.offset_pub = self.create_publisher(Vector3Stamped, 'sim/peg_hole_offset', 10)
            self.privileged_pub = self.create_publisher(Float64MultiArray, 'sim/privileged', 10)
            self.create_service(Trigger, 'sim/reset', self.on_reset)
        self.create_subscription(JointTrajectory, f'{controller}/joint_trajectory', self.on_trajectory, 10)
        self.create_service(Trigger, 'sim/reset_scene', self.on_reset_scene)

        self.next_seed = seed
        self.episode_id = -1
        self.start_episode()
        self.create_timer(self.dt, self.on_tick)
        self.get_logger().info(
            f'sim robot ready: robot profile {profile.name} ({profile.hash}), joints {list(self.joint_names)}, '
            f'cameras {list(self.image_pubs)}, {profile.control_hz:g} Hz, {profile.max_steps} steps per episode, '
            f'commands on {controller}/joint_trajectory')

    # --- episode ---

    def start_episode(self):
        self.episode_id += 1
        seed = self.next_seed
        self.next_seed += 1
        self.obs, self.info = self.env.reset(seed=seed)
        self.active = True
        self.command, self.command_start, self.command_t = None, None, 0.0
        self.critical = self.info['critical_phase']
        self.publish_event(EpisodeEvent.EPISODE_START, detail=f'seed={seed}')
        return seed

    def on_reset_scene(self, request, response):
        seed = self.next_seed
        self.next_seed += 1
        self.obs, self.info = self.env.reset_scene(seed)
        response.success, response.message = True, f'hole moved (seed {seed}); the robot stays where it is'
        return response

    def on_reset(self, request, response):
        seen = {info.node_name for info in self.get_subscriptions_info_by_topic(self.event_pub.topic_name)}
        missing = [name for name in self.wait_for_subscribers if name not in seen]
        if missing:
            response.success = False
            response.message = f'waiting for {missing} to subscribe to episode/events'
            return response
        seed = self.start_episode()
        response.success = True
        response.message = f'episode {self.episode_id} started with seed {seed}'
        return response

    # --- commands ---

    def on_trajectory(self, msg: JointTrajectory):
        try:
            self.command = validate_trajectory(
                msg.joint_names, [pt.positions for pt in msg.points],
                [pt.time_from_start.sec + 1e-9 * pt.time_from_start.nanosec for pt in msg.points],
                self.joint_names, self.joint_low, self.joint_high)
        except InvalidCommandError as err:
            self.get_logger().warning(f'refused trajectory: {err}')
            return
        self.command_start = self.env.position_target
        self.command_t = 0.0

    # --- control loop ---

    def on_tick(self):
        if self.active:
            target = self.env.position_target
            if self.command is not None:
                self.command_t += self.dt
                target = self.command.target_at(self.command_t, self.command_start)
            self.obs, _, terminated, truncated, self.info = self.env.step_to(target)
            if self.info['critical_phase'] != self.critical:
                self.critical = self.info['critical_phase']
                self.publish_event(EpisodeEvent.PHASE_ENTER_CRITICAL if self.critical
                                   else EpisodeEvent.PHASE_EXIT_CRITICAL, detail='sim')
            if (terminated or truncated) and not self.stand_in:  # a stand-in's episodes are the operator's
                self.active = False
                self.publish_event(EpisodeEvent.EPISODE_END, success=self.info['success'],
                                   detail='success' if self.info['success'] else 'time limit')
        self.publish_observation()
        if not self.active and self.auto_reset:
            self.start_episode()

    def publish_observation(self):
        stamp = self.get_clock().now().to_msg()
        proprio, n = self.obs['proprio'].astype(np.float64), len(self.joint_names)
        joints = JointState(name=list(self.joint_names), position=proprio[:n].tolist(),
                            velocity=proprio[n:].tolist())
        joints.header.stamp = stamp
        joints.header.frame_id = 'base_link'
        self.joint_pub.publish(joints)
        for camera in self.profile.cameras if self.image_pubs else ():
            msg = driver_message(camera, self.obs['images'][camera.name])
            msg.header.stamp = stamp
            msg.header.frame_id = f'{camera.name}_optical_frame'
            self.image_pubs[camera.name].publish(msg)
        if not self.stand_in:
            self.publish_privileged(stamp)

    def publish_privileged(self, stamp):
        offset = Vector3Stamped()
        offset.header.stamp = stamp
        offset.header.frame_id = 'world'
        offset.vector.x, offset.vector.y = (float(v) for v in self.info['peg_hole_offset'])
        self.offset_pub.publish(offset)
        privileged = Float64MultiArray()
        privileged.layout.dim = [MultiArrayDimension(label=','.join(PRIVILEGED_LAYOUT), size=len(PRIVILEGED_LAYOUT),
                                                     stride=len(PRIVILEGED_LAYOUT))]
        privileged.data = [*map(float, self.info['peg_tip_pos']), *map(float, self.info['hole_pos']),
                           float(self.info['critical_phase']), float(self.info['step']), float(self.episode_id),
                           float(stamp.sec * 1_000_000_000 + stamp.nanosec)]
        self.privileged_pub.publish(privileged)

    def publish_event(self, event, success=False, detail=''):
        if self.stand_in:  # a real robot reports no episodes
            return
        msg = EpisodeEvent(episode_id=self.episode_id, step_index=int(self.info['step']), event=event,
                           success=bool(success), detail=detail)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.event_pub.publish(msg)


def driver_message(camera, rgb: np.ndarray):
    """A rendered RGB image as `camera`'s driver publishes it: a sensor_msgs/Image in its encoding (rgb8, bgr8 or
    mono8; rgb8 for any), or a CompressedImage as image_transport writes it (PNG for any)."""
    if camera.compressed:
        compression = 'jpeg' if camera.encoding == 'jpeg' else 'png'
        _, encoded = cv2.imencode('.jpg' if compression == 'jpeg' else '.png', np.ascontiguousarray(rgb[..., ::-1]))
        msg = CompressedImage(format=f'rgb8; {compression} compressed bgr8')
        msg.data = array.array('B', encoded.tobytes())
        return msg
    encoding = 'rgb8' if camera.encoding == 'any' else camera.encoding
    if encoding == 'bgr8':
        rgb = np.ascontiguousarray(rgb[..., ::-1])
    elif encoding == 'mono8':
        rgb = np.round(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0,
                step=rgb.shape[1] * (rgb.shape[2] if rgb.ndim == 3 else 1))
    msg.data = array.array('B', rgb.tobytes())
    return msg


def _desc(text):
    return ParameterDescriptor(description=text)


def main(args=None):
    spin_node(SimRobotNode, args)


if __name__ == '__main__':
    main()
