"""The one `main()` shape every rlt node uses: init, spin one node, shut down cleanly on Ctrl-C (SIGINT).

SIGINT stops a node however it was started. A process started with SIGINT ignored (a shell's background job,
and every process below it) would otherwise honour it only once `rclpy.init()` installs rclpy's handler: one
that came while the node imported its modules would be lost, and the node would spin until killed. Importing
this module makes such a SIGINT end the process at once (nothing of ROS exists yet); `spin_node` hands over
to the clean stop before `rclpy.init()`. The ingestion node imports it first, so that this covers its other
imports.
"""

import faulthandler
import os
import signal
import time


def _stop_before_start(signum, frame):
    """SIGINT before `spin_node`: nothing to shut down; end as a process that SIGINT ends by default does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # only a process whose parent left SIGINT ignored
    signal.signal(signal.SIGINT, _stop_before_start)


def spin_node(node_class, args=None):
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    # A node that does not stop on SIGINT gets a SIGUSR1 from the runner before its SIGKILL: every thread's
    # stack then goes to stderr, the node's log.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # From here on SIGINT raises KeyboardInterrupt, handled below, whatever the parent left (see above).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    node = None
    try:
        rclpy.init(args=args)
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
    import rclpy
    deadline = time.monotonic() + timeout
    while rclpy.ok() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not rclpy.ok()
