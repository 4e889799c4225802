"""Refused input, counted per topic and reason, logged and reported on /diagnostics.

Every node refuses a malformed message on any subscribed topic (wrong sizes or names, NaN/Inf, a stale
stamp, weights of another robot) without stopping: it calls `Rejections.refuse(topic, reason)`, which
counts it, logs it (throttled per topic), and once a second, while anything was refused, publishes the
counts as a diagnostic_msgs/DiagnosticArray on /diagnostics (one status named `<node>: refused input`,
one key per topic, WARN), where rqt_robot_monitor shows them.
"""

from collections import Counter

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

DIAGNOSTICS_TOPIC = '/diagnostics'


class Rejections:
    def __init__(self, node, period_s: float = 1.0):
        self.node = node
        self.counts: Counter[str] = Counter()
        """Refused messages by topic."""
        self.reasons: dict[str, str] = {}
        """The last reason given per topic."""
        self._published = None
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        node.create_timer(period_s, self.publish)

    def refuse(self, topic: str, reason) -> None:
        self.counts[topic] += 1
        self.reasons[topic] = str(reason)
        self.node.get_logger().warning(f'{topic}: message refused ({self.counts[topic]} so far): {reason}',
                                       throttle_duration_sec=2.0)

    def publish(self) -> None:
        if not self.counts or self._published == self.counts:
            return
        self._published = Counter(self.counts)
        status = DiagnosticStatus(level=DiagnosticStatus.WARN, name=f'{self.node.get_name()}: refused input',
                                  hardware_id=self.node.get_name(),
                                  message=f'{sum(self.counts.values())} messages refused')
        status.values = [KeyValue(key=topic, value=f'{n} (last: {self.reasons[topic]})')
                         for topic, n in sorted(self.counts.items())]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)
