"""The arbiter's transitions held while no learner subscribes are bounded: the oldest dropped and counted."""

import rclpy

from rlt_nodes.arbiter import ArbiterNode


def test_held_transitions_are_bounded_dropping_the_oldest(ros_env):
    rclpy.init(args=['--ros-args', '-p', 'max_held_transitions:=3'], domain_id=int(ros_env['ROS_DOMAIN_ID']))
    try:
        node = ArbiterNode()  # nothing subscribes to rlt/transitions on this private domain: all are held
        try:
            node.send_transitions(['t0', 't1'])
            node.send_transitions(['t2', 't3', 't4'])
            assert list(node.held) == ['t2', 't3', 't4'] and node.dropped_transitions == 2
            node.send_transitions([])
            assert node.dropped_transitions == 2
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
