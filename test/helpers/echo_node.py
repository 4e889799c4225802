"""A node that sends back every RLToken and ActionChunk it receives (for the transport test)."""

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from rlt_interfaces.msg import ActionChunk, RLToken


class Echo(Node):
    def __init__(self):
        super().__init__('echo')
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.token_pub = self.create_publisher(RLToken, 'echo/token_out', qos)
        self.chunk_pub = self.create_publisher(ActionChunk, 'echo/chunk_out', qos)
        self.create_subscription(RLToken, 'echo/token_in', self.token_pub.publish, qos)
        self.create_subscription(ActionChunk, 'echo/chunk_in', self.chunk_pub.publish, qos)


def main():
    rclpy.init()
    node = Echo()
    print('echo ready', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
