"""The one `main()` shape every rlt node uses: init, spin one node, shut down cleanly on Ctrl-C (SIGINT).

SIGINT stops a node at any moment, also while it still imports its modules, before rclpy handles SIGINT.
There Python's KeyboardInterrupt can be swallowed (raised inside a weakref callback or a destructor, it is
only printed), and a process started with SIGINT ignored (a shell's background job, and every process below
it) discards the signal; either way the node would come up and spin until killed. So in a process started
as a ROS node (`--ros-args` on its command line) or with SIGINT ignored, importing this module makes SIGINT
end the process at once, as SIGINT ends a process by default (nothing of ROS exists yet), until `spin_node`
has rclpy handle it. The ingestion node imports it first, so that this covers its other imports.
"""

import faulthandler
import os
import signal
import sys
import time


def _stop_before_start(signum, frame):
    """SIGINT before `spin_node`: nothing to shut down; end as a process that SIGINT ends by default does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


if '--ros-args' in sys.argv or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, _stop_before_start)


def spin_node(node_class, args=None):
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    # A node that does not stop on SIGINT gets a SIGUSR1 from the runner before its SIGKILL: every thread's
    # stack then goes to stderr, the node's log.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # SIGINT raises KeyboardInterrupt, handled below, whatever the parent left; before `rclpy.init()`, which
    # installs rclpy's handler over it (a later `signal.signal` would replace rclpy's handler) and chains to it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    node = None
    try:
        rclpy.init(args=args)
        node = node_class()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        sys.unraisablehook = _ignore_interrupted_task
        # rclpy shuts the context down from its signal thread while KeyboardInterrupt unwinds this one: let it
        # finish before this thread destroys the node, not at the same time.
        _shut_down_within(1.0)
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


def _ignore_interrupted_task(unraisable, default=sys.unraisablehook):
    """The KeyboardInterrupt that stopped the executor may have come while it built an rclpy Task: the half-built
    Task's destructor then fails on the attribute it never set, when it is collected. That is the stop itself,
    not an error: not printed. Everything else is reported as Python does."""
    if not (isinstance(unraisable.exc_value, AttributeError) and type(unraisable.object).__name__ == 'function'
            and getattr(unraisable.object, '__qualname__', '') == 'Future.__del__'):
        default(unraisable)


def _shut_down_within(timeout: float) -> bool:
    import rclpy
    deadline = time.monotonic() + timeout
    while rclpy.ok() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not rclpy.ok()
