"""The one `main()` shape every rlt node uses: init, spin one node, shut down cleanly on Ctrl-C."""

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def spin_node(node_class, args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # Ctrl-C shut the context down while a callback ran: its publish fails; that is a clean stop.
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
