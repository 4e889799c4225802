"""Ingestion: camera images and joint states -> one synchronized, validated rlt/observation.

Subscribes `cameras/<name>/image_raw` (sensor_msgs/Image, sensor-data QoS) for every configured
camera and `joint_states`, takes the joint states that are control steps at the profile's control rate (the
arbiter's steps, `rlt_core.control.steps.ControlSteps`: one observation per step, whatever the driver's rate),
pairs each with one image per camera stamped within `sync_tolerance_s` of it (0: identical stamps, as the
simulator publishes them) and publishes an rlt_interfaces/Observation stamped like the joint state, with the
profile's joints in its order.
Invalid input (not the camera's encoding or size, NaN joint values, unknown joints, stale) is dropped and
counted per topic with its reason (`rlt_nodes.rejections.Rejections`: logged, reported on /diagnostics).
"""

from rlt_nodes.spin import spin_node  # noqa: I001 - first: a SIGINT during the imports below stops the node

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

from rlt_core.control.profile import RobotProfile
from rlt_core.control.steps import ControlSteps
from rlt_core.control.sync import StampSync, check_age, check_image, joint_state_in_order
from rlt_interfaces.msg import Observation
from rlt_nodes.conversions import stamp_ns
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import OBSERVATION_QOS
from rlt_nodes.rejections import Rejections


class IngestionNode(Node):
    def __init__(self):
        super().__init__('ingestion')
        p = self.declare_parameter
        self.profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        self.cameras = list(self.profile.camera_names)  # subscribed on cameras/<name>/image_raw
        self.camera_specs = {c.name: c for c in self.profile.cameras}
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
        for name in self.cameras:
            self.create_subscription(Image, f'cameras/{name}/image_raw',
                                     lambda msg, name=name: self.on_image(name, msg), qos_profile_sensor_data)
        self.create_subscription(JointState, 'joint_states', self.on_joint_state, 10)
        self.count = 0
        self.get_logger().info(f'ingestion: robot profile {self.profile.name} ({self.profile.hash}), cameras '
                               f'{self.cameras}, joints {self.joint_names}, tolerance {tolerance:g} s')

    def drop(self, topic, reason):
        self.rejections.refuse(topic, reason)

    def on_image(self, name, msg: Image):
        reason = check_image(msg.encoding, msg.height, msg.width, msg.step, len(msg.data),
                             camera=self.camera_specs[name])
        if reason:
            return self.drop(f'cameras/{name}/image_raw', reason)
        self.emit(self.sync.add_image(name, stamp_ns(msg.header), msg))

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
