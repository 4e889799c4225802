"""Episode manager for sim runs: resets the simulator after every episode and counts episodes.

Once the graph is up (every topic in `wait_for_publishers` has a publisher: the VLA server publishes
rlt/reference_chunk once its models are loaded and warm) it starts a fresh episode via `sim/reset`,
retrying while the simulator refuses (it waits until the nodes that follow episodes subscribe to its
episode/events); after each EPISODE_END on episode/events it waits `reset_delay_s` (so the arbiter can
close the episode's last transitions) and resets again, until `episodes` episodes have ended (0:
forever). Only episodes it started count: the one the simulator runs on its own before the first reset
(it can time out while the graph comes up) does not. Progress goes to rlt/episode_count
(std_msgs/UInt64, latched).
"""

from rclpy.node import Node
from std_msgs.msg import UInt64
from std_srvs.srv import Trigger

from rlt_core.control.profile import RobotProfile
from rlt_interfaces.msg import EpisodeEvent
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import EVENTS_QOS, LATCHED_QOS
from rlt_nodes.spin import spin_node


class EpisodeManagerNode(Node):
    def __init__(self):
        super().__init__('episode_manager')
        p = self.declare_parameter
        self.profile = RobotProfile.load(p('robot_profile', '', ROBOT_PROFILE).value)
        self.episodes = p('episodes', 0, desc('episodes to run (0: no limit)')).value
        self.reset_delay_s = p('reset_delay_s', 0.5, desc('pause between an episode end and the reset, s')).value
        self.wait_for = list(p('wait_for_publishers', ['rlt/reference_chunk', 'rlt/transitions', 'rlt/actor_chunk'],
                               desc('topics that need a publisher before the first episode')).value)
        self.client = self.create_client(Trigger, 'sim/reset')
        self.count_pub = self.create_publisher(UInt64, 'rlt/episode_count', LATCHED_QOS)
        self.create_subscription(EpisodeEvent, 'episode/events', self.on_event, EVENTS_QOS)
        self.started = self.counting = False
        self.ended = 0
        self.pending = None
        self.create_timer(0.1, self.on_timer)
        self.get_logger().info(f'episode manager: {self.episodes or "unlimited"} episodes of at most '
                               f'{self.profile.max_steps} steps ({self.profile.name})')

    def on_timer(self):
        if not self.started:
            if (self.client.service_is_ready()
                    and all(self.count_publishers(t) > 0 for t in self.wait_for)):
                self.started = True
                self.reset()
            return
        if self.pending is not None and self.get_clock().now().nanoseconds >= self.pending:
            self.pending = None
            self.reset()

    def on_event(self, msg: EpisodeEvent):
        if msg.event != EpisodeEvent.EPISODE_END or not self.counting:
            return
        self.ended += 1
        self.count_pub.publish(UInt64(data=self.ended))
        if self.episodes and self.ended >= self.episodes:
            self.get_logger().info(f'{self.ended} episodes done')
            return
        self.pending = self.get_clock().now().nanoseconds + int(self.reset_delay_s * 1e9)

    def reset(self):
        self.client.call_async(Trigger.Request()).add_done_callback(self.on_reset_done)

    def on_reset_done(self, future):
        response = future.result()
        self.counting = self.counting or response.success
        if not response.success:  # the simulator is not ready: try again shortly
            self.get_logger().info(f'sim/reset refused: {response.message}', throttle_duration_sec=5.0)
            self.pending = self.get_clock().now().nanoseconds + 200_000_000


def main(args=None):
    spin_node(EpisodeManagerNode, args)


if __name__ == '__main__':
    main()
