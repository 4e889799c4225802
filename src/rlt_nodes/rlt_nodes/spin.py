"""The one `main()` shape every rlt node uses: init, spin one node, shut down cleanly on Ctrl-C."""

import faulthandler
import signal
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def spin_node(node_class, args=None):
    # A node that does not stop on SIGINT gets a SIGUSR1 from the runner before its SIGKILL: every thread's
    # stack then goes to stderr, the node's log.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
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
        # Ctrl-C shut the context down while a callback ran: its publish fails; that is a clean stop. rclpy
        # shuts the context down from its own thread, so a KeyboardInterrupt raised inside a message's
        # conversion (pybind reports it as a RuntimeError) can come first: give that shutdown a moment.
        if not _shut_down_within(1.0):
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def _shut_down_within(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while rclpy.ok() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not rclpy.ok()
