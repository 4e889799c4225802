"""real_robot.launch.py's graph (the core nodes with config/real_robot.yaml) against the simulated arm standing
in for a real one: joint_states, driver-encoded images and the JointTrajectoryController's topic, no episode
events and no privileged topics from it. A simulated operator on sensor_msgs/Joy runs the episodes: drives,
enters the critical phase with the button, labels; between episodes the arbiter homes the arm and the scene is
reset by the sim-only service. Every transition the arbiter reports is stored by the learner."""

import json
from dataclasses import replace

import numpy as np
from conftest import replay_records
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from rlt_bringup import embedded, graph
from rlt_bringup.tiny_models import make_tiny_models
from rlt_core.control.homing import HOME_TOLERANCE
from rlt_core.control.profile import RobotProfile
from rlt_core.control.teleop import JoyMapping
from rlt_interfaces.msg import ActionChunk, EpisodeEvent
from rlt_nodes.qos import CHUNK_QOS, EVENTS_QOS, STATS_QOS

MAPPING = JoyMapping()


def test_operator_episodes_on_the_real_robot_graph_with_the_simulated_arm_standing_in(processes, test_node,
                                                                                       tmp_path):
    arm = RobotProfile.load('ur5e_cell')
    profile = replace(arm, cameras=tuple(replace(c, width=32, height=32) for c in arm.cameras), max_steps=100_000)
    path = str(profile.save(tmp_path / 'arm.yaml'))
    vla, token = make_tiny_models(tmp_path / 'models', path)
    overrides = embedded.merge(graph.launch_overrides({'robot_profile': path, 'vla_path': vla, 'token_path': token,
                                                       'warmup_episodes': '1',
                                                       'replay_dir': str(tmp_path / 'replay')}), {
        'learner': {'batch_size': 16, 'min_transitions': 16, 'publish_every': 10, 'hidden': [32, 32]},
        'arbiter': {'emergency_stop_file': str(tmp_path / 'estop')},
    })
    specs = graph.nodes('real', overrides)
    assert {s.name for s in specs} == set(graph.CORE)
    for _, argv in embedded.commands(specs, tmp_path / 'overrides.yaml'):
        processes.spawn(*argv)
    processes.spawn(embedded.executable('rlt_sim_nodes', 'sim_robot'), '--ros-args', '-p', f'robot_profile:={path}',
                    '-p', 'stand_in:=true')

    node = test_node.node
    joints, events, stats, executed = [], [], {}, []
    node.create_subscription(JointState, 'joint_states', joints.append, 100)
    node.create_subscription(ActionChunk, 'rlt/executed_chunk', executed.append, CHUNK_QOS)
    node.create_subscription(EpisodeEvent, 'episode/events', events.append, EVENTS_QOS)
    node.create_subscription(String, 'rlt/episode_stats', lambda m: stats.update(
        {json.loads(m.data)['episode_id']: json.loads(m.data)}), STATS_QOS)
    joy = node.create_publisher(Joy, 'joy', 10)
    reset_scene = node.create_client(Trigger, 'sim/reset_scene')
    assert test_node.spin_until(lambda: joints and joy.get_subscription_count() and reset_scene.service_is_ready(),
                                timeout=90), 'the graph did not come up'
    assert not node.get_publishers_info_by_topic('sim/privileged')  # a real robot has none

    def steps(n, msg):
        for _ in range(n):
            count = len(joints)
            joy.publish(msg)
            assert test_node.spin_until(lambda c=count: len(joints) > c, timeout=5), 'no joint states'

    def joy_msg(held=False, x=0.0, buttons=()):
        msg = Joy(axes=[0.0] * 8, buttons=[0] * 12)
        msg.buttons[MAPPING.deadman_button] = int(held)
        msg.axes[MAPPING.axes[0]] = x
        for b in buttons:
            msg.buttons[b] = 1
        return msg

    def human_steps(episode_id):
        """Steps the human drove: while the stick is fresh a human chunk is issued at every observation, and one issued
        at the next observation too means the robot executed a step of it."""
        issued_at = {c.step_index for c in executed
                     if c.episode_id == episode_id and c.source == ActionChunk.SOURCE_HUMAN}
        return sum(n + 1 in issued_at for n in issued_at)

    def started():
        return [e for e in events if e.event == EpisodeEvent.EPISODE_START]

    def episode(success):
        """The operator drives, enters the critical phase, lets the policy act, labels; returns the episode id."""
        if not test_node.spin_until(lambda: started(), timeout=15):  # it began before this node listened: end it
            steps(1, joy_msg(buttons=[MAPPING.failure_button]))
            steps(1, joy_msg())
            assert test_node.spin_until(lambda: started(), timeout=60), 'no operator episode'
        episode_id = started()[-1].episode_id
        for _ in range(200):  # the stick held until the arbiter has executed 4 human steps, however loaded the CPU
            if human_steps(episode_id) >= 4:
                break
            steps(1, joy_msg(True, x=0.5))
        assert human_steps(episode_id) >= 4, 'the takeover did not drive the arm'
        steps(1, joy_msg(buttons=[MAPPING.phase_button]))  # released, and the phase button
        steps(12, joy_msg())  # the policy, in the critical phase
        count = len(started())
        steps(1, joy_msg(buttons=[MAPPING.success_button if success else MAPPING.failure_button]))
        steps(1, joy_msg())
        assert test_node.spin_until(lambda: episode_id in stats, timeout=20), 'no episode stats'
        future = reset_scene.call_async(Trigger.Request())  # the operator resets the cell while the arm homes
        assert test_node.spin_until(future.done, timeout=10) and future.result().success
        assert test_node.spin_until(lambda: len(started()) > count, timeout=60), 'no episode after homing'
        np.testing.assert_allclose(joints[-1].position, profile.home, atol=2 * HOME_TOLERANCE)
        return episode_id

    ids = [episode(success=False), episode(success=True)]
    for episode_id, success in zip(ids, (False, True), strict=True):
        s = stats[episode_id]
        assert s['success'] == success and s['steps_by_source']['human'] >= 4 and s['critical_steps'] > 0, s
    assert [stats[e]['warmup'] for e in ids] == [e == 0 for e in ids]  # the first episode is the warmup
    assert {e.detail for e in events} <= {'operator', 'operator label', 'human', 'joy'}  # nothing from the robot
    reported = sum(s['transitions'] for s in stats.values())
    assert reported > 0
    assert test_node.spin_until(lambda: replay_records(tmp_path / 'replay') >= reported, timeout=30), \
        f'the learner stored {replay_records(tmp_path / "replay")} of {reported} transitions'
