"""Messages that once ended a node, given to the node in this process: each is refused and counted, none raises."""

import math

import rclpy
from rlt_sim_nodes.sim_human import SimHumanNode
from std_msgs.msg import Float64MultiArray, String

from rlt_nodes.arbiter import ArbiterNode


def test_learner_stats_without_a_numeric_q_are_refused_by_the_arbiter(ros_env):
    rclpy.init(domain_id=int(ros_env['ROS_DOMAIN_ID']))
    try:
        node = ArbiterNode()
        try:
            for data in ('{"values/q": "high"}', '[1, 2]', 'not json', '{"values/q": [0.5]}'):
                node.on_learner_stats(String(data=data))
            assert node.q is None and node.rejections.counts['rlt/learner_stats'] == 4
            node.on_learner_stats(String(data='{"values/q": 0.25}'))
            assert node.q == 0.25
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()


def test_non_finite_privileged_state_is_ignored_by_the_simulated_human(ros_env):
    rclpy.init(domain_id=int(ros_env['ROS_DOMAIN_ID']))
    try:
        node = SimHumanNode()
        try:
            node.on_privileged(Float64MultiArray(data=[math.nan] * 10))
            node.on_privileged(Float64MultiArray(data=[0.0] * 3))
            assert node.episode == -1  # no episode was taken from them
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
