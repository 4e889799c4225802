"""Ingestion: camera images and joint states -> one synchronized, validated rlt/observation.

Subscribes each camera of the robot profile on its topic (`cameras/<name>/image_raw` unless the profile names
another; sensor_msgs/Image, or sensor_msgs/CompressedImage for a compressed camera; sensor-data QoS) and
`joint_states`. Every image is converted at once to what the VLA reads, RGB at the camera's size in the profile
(`rlt_core.data.images`: rgb8, bgr8, mono8, JPEG or PNG at any resolution, resized). Of the joint states, those
that are control steps at the profile's control rate are taken (the arbiter's steps,
`rlt_core.control.steps.ControlSteps`: one observation per step, whatever the driver's rate); each is paired
with one image per camera stamped within `sync_tolerance_s` of it (0: identical stamps, as the simulator
publishes them) and published as an rlt_interfaces/Observation stamped like the joint state, with the profile's
joints in its order and one rgb8 image per camera, each with its original header. Invalid input (an encoding the
profile does not state for the camera, image data that does not convert, NaN joint values, unknown joints,
stale) is dropped and counted per topic with its reason (`rlt_nodes.rejections.Rejections`: logged, reported on
/diagnostics).
"""

from rlt_nodes.spin import spin_node  # noqa: I001 - first: a SIGINT during the imports below stops the node

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState

from rlt_core.control.profile import RobotProfile
from rlt_core.control.steps import ControlSteps
from rlt_core.control.sync import StampSync, check_age, joint_state_in_order
from rlt_interfaces.msg import Observation
from rlt_nodes.cameras import message_type, rgb_to_msg, to_rgb
from rlt_nodes.conversions import stamp_ns
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import OBSERVATION_QOS
from rlt_nodes.rejections import Rejections


class IngestionNode(Node):
    def __init__(self):
        super().__init__('ingestion')
        p = self.declare_parameter
        self.profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        self.cameras = list(self.profile.camera_names)
        self.joint_names = list(self.profile.joint_names)  # the observation's joints, in this order
        tolerance = p('sync_tolerance_s', 0.0,
                      desc('largest stamp difference between a joint state and its images, s')).value
        self.max_age_s = p('max_age_s', 0.5, desc('drop observations older than this, s (0: never)')).value
        self.instruction = p('instruction', 'insert the peg into the hole',
                             desc('language instruction sent with every observation')).value
        self.rejections = Rejections(self)
        self.sync = StampSync(self.cameras, tolerance_ns=int(tolerance * 1e9))
        self.control_steps = ControlSteps(self.profile.control_hz)
        self.pub = self.create_publisher(Observation, 'rlt/observation', OBSERVATION_QOS)
        for camera in self.profile.cameras:
            self.create_subscription(message_type(camera), camera.image_topic,
                                     lambda msg, camera=camera: self.on_image(camera, msg), qos_profile_sensor_data)
        self.create_subscription(JointState, 'joint_states', self.on_joint_state, 10)
        self.count = 0
        cameras = ', '.join(f"{c.name} on {c.image_topic} ({'compressed' if c.compressed else 'raw'})"
                            for c in self.profile.cameras)
        self.get_logger().info(f'ingestion: robot profile {self.profile.name} ({self.profile.hash}), cameras '
                               f'{cameras}, joints {self.joint_names}, tolerance {tolerance:g} s')

    def drop(self, topic, reason):
        self.rejections.refuse(topic, reason)

    def on_image(self, camera, msg):
        try:
            rgb = to_rgb(camera, msg)
        except ValueError as reason:
            return self.drop(camera.image_topic, reason)
        self.emit(self.sync.add_image(camera.name, stamp_ns(msg.header), rgb_to_msg(rgb, msg.header)))

    def on_joint_state(self, msg: JointState):
        try:
            msg.position, msg.velocity = joint_state_in_order(msg.name, msg.position, msg.velocity, self.joint_names)
        except ValueError as reason:
            return self.drop('joint_states', reason)
        if not self.control_steps.admit(stamp_ns(msg.header)):
            return  # between control steps
        msg.name = list(self.joint_names)
        self.emit(self.sync.add_joint_state(stamp_ns(msg.header), msg))

    def emit(self, matched):
        if matched is None:
            return
        stamp, joints, images = matched
        reason = check_age(stamp, self.get_clock().now().nanoseconds, self.max_age_s)
        if reason:
            return self.drop('joint_states', f'stale observation: {reason}')
        obs = Observation(step_index=self.count % 2**32, camera_names=self.cameras, joint_state=joints,
                          images=[images[name] for name in self.cameras], instruction=self.instruction)
        obs.header = joints.header
        self.count += 1
        self.pub.publish(obs)


def main(args=None):
    spin_node(IngestionNode, args)


if __name__ == '__main__':
    main()
