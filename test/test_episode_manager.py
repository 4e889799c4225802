"""The episode manager and the sim robot in their own processes: only the episodes it starts count."""

import os

import rclpy
from conftest import write_profile
from std_msgs.msg import UInt64

from rlt_interfaces.msg import ActionChunk, EpisodeEvent
from rlt_nodes.qos import EVENTS_QOS, LATCHED_QOS

INSTALL = os.path.join(os.path.dirname(__file__), '..', 'install')


def test_the_simulators_start_up_episode_does_not_count(processes, test_node, tmp_path):
    """The sim runs an episode of its own from start-up; while the graph comes up (the sim refuses
    resets until `episode_follower` subscribes) it times out. The manager counts only what follows."""
    exe = os.path.join(INSTALL, 'rlt_sim_nodes', 'lib', 'rlt_sim_nodes')
    node = test_node.node
    events, counts = [], []
    node.create_subscription(EpisodeEvent, 'episode/events', events.append, EVENTS_QOS)
    node.create_subscription(UInt64, 'rlt/episode_count', lambda m: counts.append(m.data), LATCHED_QOS)
    node.create_publisher(ActionChunk, 'rlt/reference_chunk', 10)  # the VLA server is up
    profile = write_profile(tmp_path / 'long_episodes.yaml', max_steps=160)
    sim = processes.spawn(os.path.join(exe, 'sim_robot'), '--ros-args', '-p', f'robot_profile:={profile}',
                          '-p', 'render:=false', '-p', 'wait_for_subscribers:=[episode_follower]')
    manager = processes.spawn(os.path.join(exe, 'episode_manager'), '--ros-args', '-p', f'robot_profile:={profile}',
                              '-p', 'episodes:=1',
                              '-p', 'wait_for_publishers:=[rlt/reference_chunk]', '-p', 'reset_delay_s:=0.1')

    def ends():
        return [e for e in events if e.event == EpisodeEvent.EPISODE_END]

    # The start-up episode (160 steps, 8 s: time for every node to discover the others, so that its end
    # reaches them) ends while the manager's resets are refused.
    assert test_node.spin_until(lambda: bool(ends()), timeout=60), \
        processes.stop(sim)[-2000:] + processes.stop(manager)[-2000:]
    startup = ends()[0].episode_id
    test_node.spin_until(lambda: False, timeout=1.0)
    assert not any(counts), f'the start-up episode counted: {counts}'

    # Once a follower subscribes, the manager's reset starts an episode, and that one counts.
    follower = rclpy.create_node('episode_follower', context=test_node.context)
    follower.create_subscription(EpisodeEvent, 'episode/events', lambda m: None, EVENTS_QOS)
    test_node.executor.add_node(follower)
    try:
        assert test_node.spin_until(lambda: counts and counts[-1] == 1, timeout=60), \
            processes.stop(manager)[-2000:]
        counted = [e.episode_id for e in ends()]
        assert counted[0] == startup and counted[-1] > startup
        assert manager.poll() is None  # it keeps serving; the count stays latched
    finally:
        test_node.executor.remove_node(follower)
        follower.destroy_node()
