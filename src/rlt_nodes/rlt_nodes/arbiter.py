"""Teleop arbiter: decides who drives each chunk, commands the robot, records transitions.

The RLT episode protocol is `rlt_core.control.engine.EpisodeEngine` (priority human > warmup VLA >
actor > VLA), driven here on the robot's own clock: the joint states that are control steps at the profile's
control rate (`rlt_core.control.steps.ControlSteps`, the same ones ingestion, the actor and the recorder take) are
its observations; the others, from a driver faster than the control rate, are the measured position that the
safety checks and an emergency stop go by (`EpisodeEngine.measure`). It asks the VLA server on
rlt/inference_request for each observation whose reference and RL state the engine needs (a chunk decided on it,
a recorded window starting at it): the server computes no other. Each chunk is decided ahead of need, `lead_steps`
control steps before the one in force runs out (-1: as many as the measured latency needs), and sent as that one
runs out. The robot's facts (joints, limits, control
rate, chunk length, stride, controller) come from the robot profile (`robot_profile`). At each chunk boundary the
executed chunk goes to `/<controller_name>/joint_trajectory` as absolute joint positions, one point per control
step, from the current command target, within the profile's per-step limits (its critical-phase limits
for a chunk decided in the critical phase, whoever drives) and joint limits; an end-effector profile's
chunk (tool moves) becomes joint points through its kinematics, or the robot holds where they refuse it.
Holding the joystick's dead-man button (sensor_msgs/Joy on `joy`) interrupts the current chunk at once and
drives with the chosen axes (the joints, or the tool along the base frame's x, y, z); releasing it sends a
hold at once (as does a chunk cut short with nothing to follow: one point, the command target). The markers draw
chunks in the base frame (an end-effector profile's as tool paths, through forward kinematics).

Chunk transitions (the profile's stride and C; during an intervention the human's chunk replaces the
reference) go to rlt/transitions, numbered, and are kept until the learner acknowledges them as stored
(rlt/transitions_ack); what is not acknowledged within `ack_timeout_s` is sent again (the learner stores each
once). At most `max_unacked_transitions` are out at a time; the others, and all while no learner subscribes,
wait in a queue of at most `max_held_transitions` (beyond it the oldest are dropped, counted and logged). A
learner that crashes or restarts thus loses none.
Joystick buttons label the episode (LABEL_SUCCESS / LABEL_FAILURE) and toggle the critical phase
(PHASE_*_CRITICAL, detail 'human') on episode/events; a robot without a task signal can enter it by place, the
tool within `critical_zone_radius_m` of `critical_zone_center` (taught with the rlt/teach_critical_zone
service: the tool's position then). With `episode_source: sim` the simulator's
episode/events (start, critical phase, end with success) drive episodes, phase and reward; with
`operator` a label ends the episode (reward 1 on success), the robot moves slowly to the profile's home pose
(where it has one; `rlt_core.control.homing`; the operator's takeover or an emergency stop cancels the move) and
the next episode starts once it is there. The first
`warmup_episodes` episodes execute the VLA's chunk. Also published: rlt/executed_chunk, rlt/markers
(RViz) and rlt/episode_stats (a JSON line per finished episode; the last 100 kept for subscribers
that join late).

Emergency stop: `true` on rlt/emergency_stop (std_msgs/Bool) or the joystick's stop button latches a hold,
whoever drives: the robot is sent at once to its measured position, the episode ends, nothing moves it and no
episode starts until the rlt/reset_emergency_stop service (std_srvs/Trigger) or the joystick's reset button
releases it. The state is on rlt/emergency_stop_state (std_msgs/Bool, latched) and in the markers. The latch
is kept on disk (`emergency_stop_file`): an arbiter that restarts, after a crash too, starts stopped and sends
the robot to hold at its first measurement.
"""

import json
import os
import time
from collections import deque
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, String, UInt64
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import MarkerArray

from rlt_core.control.engine import SOURCE_NAMES, EpisodeEngine, command_violation
from rlt_core.control.homing import at_home, homing_points
from rlt_core.control.phase import CriticalZone
from rlt_core.control.profile import RobotProfile
from rlt_core.control.steps import ControlSteps
from rlt_core.control.sync import Latest, joint_state_in_order
from rlt_core.control.teleop import ButtonEdges, JoyMapping, estop_pressed, joy_action
from rlt_core.models.vla.spec import BackboneSpec
from rlt_core.rl.checkpoint import atomic_write
from rlt_core.rl.rl_state import ProprioNormalization, RLInputJoin
from rlt_interfaces.msg import ActionChunk, EpisodeEvent, InferenceRequest, RLToken, Transition, TransitionAck
from rlt_nodes.conversions import as_numpy, chunk_to_msg, msg_to_chunk, set_stamp, stamp_ns, transition_to_msg
from rlt_nodes.markers import chunk_markers, emergency_stop_markers
from rlt_nodes.params import ROBOT_PROFILE, desc
from rlt_nodes.qos import ACKS_QOS, CHUNK_QOS, EVENTS_QOS, LATCHED_QOS, REQUEST_QOS, STATS_QOS, TRANSITIONS_QOS
from rlt_nodes.rejections import Rejections
from rlt_nodes.spin import spin_node

HOMING_GRACE_S = 5.0
"""How long after its last point the homing move may take to bring the robot home."""


class ArbiterNode(Node):
    def __init__(self):
        super().__init__('arbiter')
        p = self.declare_parameter
        profile_path = p('robot_profile', '', ROBOT_PROFILE).value
        self.profile = profile = RobotProfile.load(profile_path)
        self.joint_names = list(profile.joint_names)
        self.C, self.dt = profile.actor_chunk_len, profile.dt
        warmup = p('warmup_episodes', 20, desc('N_warm: first episodes that execute the VLA chunk')).value
        vla_path = p('vla_path', '', desc("VLA backbone spec (as vla_server): its proprio normalisation; 'none': "
                                          'no VLA, only the joystick moves the robot (recording demonstrations)')
                     ).value
        self.episode_source = p('episode_source', 'sim',
                                desc("'sim': the simulator's episode/events drive episodes; "
                                     "'operator': joystick labels end them")).value
        lead = p('max_target_lead', 0.01, desc('command target kept within this of the measured joints')).value
        actor_wait = p('actor_wait_s', 0.05, desc('how long a chunk boundary waits for a live actor, s')).value
        human_timeout = p('human_timeout_s', 0.25, desc('a Joy older than this counts as released, s')).value
        lead_steps = p('lead_steps', -1, desc(
            'points of the chunk in force left when the next chunk is decided (0: when it runs out); -1: adapted to '
            'the measured latency of the VLA, the token and the actor')).value
        j = JoyMapping  # the defaults
        self.mapping = JoyMapping(
            deadman_button=p('deadman_button', j.deadman_button, desc('Joy button held to take over (LB)')).value,
            axes=tuple(p('axes', list(j.axes), desc('Joy axes driving x, y, z')).value),
            axis_signs=tuple(p('axis_signs', list(j.axis_signs), desc('sign of each axis')).value),
            max_delta=tuple(p('human_max_delta', list(j.max_delta),
                              desc('human move per control step at full deflection')).value),
            deadzone=p('deadzone', j.deadzone, desc('axis deflections below this count as zero')).value,
            success_button=p('success_button', j.success_button, desc('Joy button labelling success (A)')).value,
            failure_button=p('failure_button', j.failure_button, desc('Joy button labelling failure (B)')).value,
            phase_button=p('phase_button', j.phase_button, desc('Joy button toggling the critical phase (RB)')).value,
            estop_button=p('estop_button', j.estop_button, desc('Joy button of the emergency stop (Back)')).value,
            estop_reset_button=p('estop_reset_button', j.estop_reset_button,
                                 desc('Joy button releasing the emergency stop (Start)')).value)
        self.edges = ButtonEdges(self.mapping)
        self.join = None if vla_path == 'none' else RLInputJoin(ProprioNormalization.from_vla_checkpoint(
            BackboneSpec.parse(vla_path, profile.name), proprio_dim=profile.proprio_dim))
        self.engine = EpisodeEngine(profile, warmup_episodes=warmup, max_target_lead=lead, actor_wait_s=actor_wait,
                                    human_timeout_s=human_timeout, lead_steps=None if lead_steps < 0 else lead_steps)
        self.control_steps = ControlSteps(profile.control_hz)
        self.human_held = False
        self.episode_counter = 0
        self.homing, self.homing_deadline = None, 0.0
        center = p('critical_zone_center', Parameter.Type.DOUBLE_ARRAY, desc(
            'the taught pre-insertion point (x, y, z in the base frame; a gantry: its joints): the tool within '
            'critical_zone_radius_m of it is the critical phase (unset: none until rlt/teach_critical_zone)')).value
        radius = p('critical_zone_radius_m', 0.0, desc('radius of the critical zone, m (0: no zone)')).value
        self.critical_zone = CriticalZone(tuple(center), radius) if radius > 0 and center else None
        self.create_service(Trigger, 'rlt/teach_critical_zone', self.on_teach_critical_zone)
        """While the robot moves home between operator episodes: the home pose, and when to stop waiting for it."""
        self.q = None
        # Transitions recorded and not yet sent: at most max_held_transitions, the oldest dropped beyond that
        # (counted in dropped_transitions). Sent ones wait in `unacked` until the learner acknowledges them.
        self.held = deque(maxlen=p('max_held_transitions', 100_000, desc(
            'transitions waiting to be sent (no learner, or too many unacknowledged); beyond, the oldest are '
            'dropped (and counted)')).value)
        self.dropped_transitions = 0
        self.max_unacked = p('max_unacked_transitions', TRANSITIONS_QOS.depth, desc(
            'transitions sent and not yet acknowledged by the learner, at most')).value
        self.ack_timeout_s = p('ack_timeout_s', 2.0, desc('unacknowledged transitions are sent again after this, s')
                               ).value
        self.writer_id = int.from_bytes(os.urandom(8), 'little') >> 1 or 1
        self.sequence = self.acked = 0  # the last numbered, the last acknowledged
        self.unacked: deque[Transition] = deque()
        self.last_ack_time = self.now()

        controller = profile.controller_name
        self.traj_pub = self.create_publisher(JointTrajectory, f'{controller}/joint_trajectory', 10)
        self.request_pub = self.create_publisher(InferenceRequest, 'rlt/inference_request', REQUEST_QOS)
        self.requested: Latest[int, InferenceRequest] = Latest(50)
        """The last 50 requests to the VLA server, by the observation's stamp (each is asked for once)."""
        self.transition_pub = self.create_publisher(Transition, 'rlt/transitions', TRANSITIONS_QOS)
        self.executed_pub = self.create_publisher(ActionChunk, 'rlt/executed_chunk', CHUNK_QOS)
        self.marker_pub = self.create_publisher(MarkerArray, 'rlt/markers', 10)
        self.event_pub = self.create_publisher(EpisodeEvent, 'episode/events', EVENTS_QOS)
        self.stats_pub = self.create_publisher(String, 'rlt/episode_stats', STATS_QOS)
        ros_home = os.environ.get('ROS_HOME', os.path.expanduser('~/.ros'))
        self.estop_file = Path(p('emergency_stop_file', '', desc(
            f'where a latched emergency stop is kept across restarts (empty: {ros_home}/rlt/emergency_stop)')).value
            or Path(ros_home) / 'rlt' / 'emergency_stop')
        self.estop_pub = self.create_publisher(Bool, 'rlt/emergency_stop_state', LATCHED_QOS)
        self.hold_at_first_measurement = self.estop_file.exists()
        if self.hold_at_first_measurement:
            reason = self.estop_file.read_text(errors='replace').strip() or 'unknown'
            self.engine.emergency_stop(f'latched before this arbiter started ({reason})', self.now())
            self.get_logger().error(f'emergency stop latched before this arbiter started ({reason}): the robot '
                                    'holds until it is reset')
        self.estop_pub.publish(Bool(data=self.hold_at_first_measurement))
        self.create_subscription(Bool, 'rlt/emergency_stop', self.on_emergency_stop, 10)
        self.create_service(Trigger, 'rlt/reset_emergency_stop', self.on_reset_emergency_stop)
        self.create_subscription(JointState, 'joint_states', self.on_joint_state, 10)
        self.create_subscription(RLToken, 'rlt/rl_token', self.on_token, CHUNK_QOS)
        self.create_subscription(ActionChunk, 'rlt/reference_chunk', self.on_reference, CHUNK_QOS)
        self.actor_chunks = self.create_subscription(ActionChunk, 'rlt/actor_chunk', self.on_actor_chunk, CHUNK_QOS)
        self.create_subscription(Joy, 'joy', self.on_joy, 10)
        self.create_subscription(EpisodeEvent, 'episode/events', self.on_event, EVENTS_QOS)
        self.create_subscription(String, 'rlt/learner_stats', self.on_learner_stats, 10)
        self.create_subscription(TransitionAck, 'rlt/transitions_ack', self.on_ack, ACKS_QOS)
        self.actor_version = 0
        self.create_subscription(UInt64, 'rlt/actor_version', self.on_actor_version, LATCHED_QOS)
        self.rejections = Rejections(self)
        self.create_timer(0.01, self.on_timer)
        self.create_timer(0.5, self.check_actor)
        self.get_logger().info(f'arbiter: robot profile {profile.name} ({profile.hash}), commands on '
                               f'{controller}/joint_trajectory, C={self.C}, warmup {warmup} episodes, '
                               f'episodes from {self.episode_source}')

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # --- robot clock ---

    def on_joint_state(self, msg: JointState):
        try:
            position, velocity = joint_state_in_order(msg.name, msg.position, msg.velocity, self.joint_names)
        except ValueError as err:
            self.rejections.refuse('joint_states', err)
            return
        stamp = stamp_ns(msg.header)
        if self.control_steps.admit(stamp):
            self.on_control_step(stamp, position, velocity)
        else:
            self.engine.measure(stamp, position)
        if (self.hold_at_first_measurement and self.engine.stop_reason is not None
                and self.traj_pub.get_subscription_count() > 0):  # the controller listens: hold where measured
            self.hold_at_first_measurement = False
            self.publish_trajectory([self.engine.emergency_stop(self.engine.stop_reason, self.now())])

    def on_control_step(self, stamp, position, velocity):
        if (self.episode_source == 'operator' and not self.engine.active and self.engine.stop_reason is None
                and self.home_reached(position)):
            self.start_operator_episode(stamp)
        critical = None if self.critical_zone is None else self.critical_zone.contains(self.drawn(position)[0][0])
        before = self.engine.episode.phase.active
        self.engine.observe(stamp, position, self.now(), critical=critical)  # the inputs below drain its output
        if critical is not None and self.engine.active and self.engine.episode.phase.active != before:
            self.publish_event(EpisodeEvent.PHASE_ENTER_CRITICAL if self.engine.episode.phase.active
                               else EpisodeEvent.PHASE_EXIT_CRITICAL, detail='zone')
        self.join_inputs('add_proprio', stamp, [*position, *velocity], 'joint_states')

    def on_timer(self):
        self.engine.tick(self.now())
        self.drain()

    # --- VLA and actor ---

    def on_token(self, msg: RLToken):
        self.join_inputs('add_token', stamp_ns(msg.header), as_numpy(msg.data), 'rlt/rl_token')

    def on_reference(self, msg: ActionChunk):
        try:
            chunk = msg_to_chunk(msg)
        except ValueError as err:
            self.rejections.refuse('rlt/reference_chunk', err)
            return
        self.join_inputs('add_reference', stamp_ns(msg.header), chunk, 'rlt/reference_chunk')

    def join_inputs(self, add, stamp, value, topic):
        """One input of an observation (`add`: the RLInputJoin method taking it); its RL state and reference go to
        the engine once all three are in."""
        if self.join is None:  # no VLA
            if topic != 'joint_states':
                self.rejections.refuse(topic, "no VLA in this graph (vla_path: 'none')")
            self.drain()
            return
        try:
            joined = getattr(self.join, add)(stamp, value)
            if joined is not None:
                stamp, x, ref, _ = joined
                self.engine.add_inputs(stamp, x, ref, self.now())
        except ValueError as err:
            self.rejections.refuse(topic, err)
        self.drain()

    def on_actor_version(self, msg: UInt64):
        self.actor_version = msg.data
        self.check_actor()

    def check_actor(self):
        """The engine waits for the actor at critical-phase chunk boundaries while it runs with weights."""
        self.engine.actor_ready = self.actor_version > 0 and self.actor_chunks.get_publisher_count() > 0

    def on_actor_chunk(self, msg: ActionChunk):
        """The actor's chunk starts at its `step_index`: the rows it refined begin that many steps after the
        requested observation's."""
        stamp = stamp_ns(msg.header)
        request = self.requested.get(stamp)
        lead = None if request is None else msg.step_index - request.step_index
        try:
            self.engine.add_actor_chunk(stamp, msg_to_chunk(msg), self.now(), lead=lead)
        except ValueError as err:
            self.rejections.refuse('rlt/actor_chunk', err)
            return
        self.drain()

    # --- human ---

    def on_joy(self, msg: Joy):
        if estop_pressed(msg.buttons, self.mapping):
            self.emergency_stop('joystick stop button')
        action = joy_action(msg.buttons, msg.axes, self.mapping)
        held = action is not None
        if held and self.homing is not None:  # the operator's takeover wins over the homing move
            self.homing = None
            if self.engine.measured is not None:
                self.publish_trajectory([self.engine.measured])
            self.get_logger().warning('homing move cancelled by the operator: the robot holds where it is')
        if held != self.human_held:
            self.human_held = held
            self.publish_event(EpisodeEvent.TAKEOVER_START if held else EpisodeEvent.TAKEOVER_END, detail='joy')
        self.engine.set_human(action, self.now())
        for name in self.edges.update(msg.buttons):
            if name == 'estop_reset':
                if not estop_pressed(msg.buttons, self.mapping):
                    self.reset_emergency_stop('joystick reset button')
            elif name == 'phase':
                self.engine.toggle_phase(self.now())
                self.publish_event(EpisodeEvent.PHASE_ENTER_CRITICAL if self.engine.episode.phase.active
                                   else EpisodeEvent.PHASE_EXIT_CRITICAL, detail='human')
            else:
                success = name == 'success'
                self.publish_event(EpisodeEvent.LABEL_SUCCESS if success else EpisodeEvent.LABEL_FAILURE,
                                   success=success, detail='human')
                if self.episode_source == 'operator' and self.engine.active:
                    self.engine.end_episode(success, now=self.now())
                    self.publish_event(EpisodeEvent.EPISODE_END, success=success, detail='operator label',
                                       chunk_count=self.engine.episode.chunk_index)
                    self.start_homing()
        self.drain()

    # --- emergency stop ---

    def on_emergency_stop(self, msg: Bool):
        if msg.data:
            self.emergency_stop('rlt/emergency_stop')

    def emergency_stop(self, reason: str):
        latched = self.engine.stop_reason is not None
        self.homing = None
        hold = self.engine.emergency_stop(reason, self.now())
        if not latched:
            if hold is not None:
                self.publish_trajectory([hold])
            try:
                self.estop_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.estop_file, reason.encode())
            except OSError as err:
                self.get_logger().error(f'emergency stop latched, but not kept in {self.estop_file} ({err}): '
                                        'a restarted arbiter would not know it')
            self.estop_pub.publish(Bool(data=True))
            where, frame = self.drawn(hold) if hold is not None else (None, 'base_link')
            self.marker_pub.publish(emergency_stop_markers(self.engine.stop_reason, None if where is None else where[0],
                                                           self.get_clock().now().to_msg(), frame=frame))
        self.drain()

    def reset_emergency_stop(self, reason: str) -> bool:
        if not self.engine.reset_emergency_stop():
            return False
        try:
            self.estop_file.unlink(missing_ok=True)
        except OSError as err:
            self.get_logger().error(f'{self.estop_file} not removed ({err}): a restarted arbiter starts stopped')
        self.get_logger().warning(f'emergency stop released ({reason})')
        self.estop_pub.publish(Bool(data=False))
        self.marker_pub.publish(emergency_stop_markers(None, None, self.get_clock().now().to_msg()))
        return True

    def on_reset_emergency_stop(self, request, response):
        response.success = self.reset_emergency_stop('rlt/reset_emergency_stop')
        response.message = 'released' if response.success else 'no emergency stop was latched'
        return response

    # --- episodes ---

    def on_event(self, msg: EpisodeEvent):
        now = self.now()
        if self.episode_source == 'sim':
            if msg.event == EpisodeEvent.EPISODE_START:
                self.engine.start_episode(msg.episode_id, stamp_ns(msg.header))
            elif msg.event == EpisodeEvent.EPISODE_END:
                self.engine.end_episode(msg.success, final_step=msg.step_index, now=now)
        if (msg.event in (EpisodeEvent.PHASE_ENTER_CRITICAL, EpisodeEvent.PHASE_EXIT_CRITICAL)
                and msg.detail not in ('human', 'zone')):  # a task's signal, not this arbiter's own
            entering = msg.event == EpisodeEvent.PHASE_ENTER_CRITICAL
            self.engine.set_phase_signal(entering, now, step=msg.step_index)  # for the observation of that step
        self.drain()

    def on_teach_critical_zone(self, request, response):
        """The critical zone's centre becomes where the tool is now (its radius: critical_zone_radius_m)."""
        radius = self.get_parameter('critical_zone_radius_m').value
        if self.engine.measured is None or radius <= 0:
            response.success, response.message = False, 'no joint state yet, or critical_zone_radius_m is 0'
            return response
        center = tuple(float(v) for v in self.drawn(self.engine.measured)[0][0])
        self.critical_zone = CriticalZone(center, radius)
        response.success = True
        response.message = f'critical_zone_center: {[round(v, 4) for v in center]} (keep it in the parameter file)'
        self.get_logger().info(f'critical zone taught: {response.message}')
        return response

    def start_homing(self):
        """After a labelled operator episode: a slow move to the profile's home pose (none without one)."""
        measured, home = self.engine.measured, self.profile.home
        if not home or measured is None or self.engine.stop_reason is not None:
            return
        points = homing_points(measured, home, self.engine.joint_step_limits.high)
        unsafe = command_violation(measured, points, measured, self.engine.low, self.engine.high,
                                   self.engine.joint_step_limits, self.engine.max_target_lead)
        if unsafe:
            self.get_logger().warning(f'no homing move ({unsafe}): the next episode starts where the robot is')
            return
        self.publish_trajectory(points)
        self.homing, self.homing_deadline = np.asarray(home), self.now() + len(points) * self.dt + HOMING_GRACE_S

    def home_reached(self, position) -> bool:
        """Whether the next operator episode may start: no homing move under way, or the robot is home (or did not
        get there in time: then it starts where the robot is, with a warning)."""
        if self.homing is None:
            return True
        if not at_home(position, self.homing) and self.now() < self.homing_deadline:
            return False
        if not at_home(position, self.homing):
            self.get_logger().warning(f'the robot did not reach home within {HOMING_GRACE_S:g} s of the homing '
                                      f'move\'s end (measured {np.round(position, 4).tolist()})')
        self.homing = None
        return True

    def start_operator_episode(self, stamp):
        self.engine.start_episode(self.episode_counter, stamp - 1)
        # Stamped with its first observation's stamp: a recorder takes the joint state stamped so as o_1, even when
        # the event reaches it after the next step's joint state (its clock is the robot's, not this node's).
        self.publish_event(EpisodeEvent.EPISODE_START, detail='operator', stamp=stamp)
        self.episode_counter += 1

    def publish_event(self, event, success=False, detail='', stamp=None, chunk_count=0):
        """An event on episode/events, stamped now or, given `stamp` (ns), with the robot's stamp of its step."""
        msg = EpisodeEvent(episode_id=self.engine.episode.episode_id, step_index=self.engine.episode.n, event=event,
                           success=bool(success), detail=detail, chunk_count=int(chunk_count))
        if stamp is None:
            msg.header.stamp = self.get_clock().now().to_msg()
        else:
            set_stamp(msg.header, stamp)
        self.event_pub.publish(msg)

    def on_learner_stats(self, msg: String):
        try:
            q = json.loads(msg.data).get('values/q')
            if q is not None:
                self.q = float(q)  # shown in the markers only
        except (ValueError, TypeError, AttributeError) as err:
            self.rejections.refuse('rlt/learner_stats', f'not a JSON object with a numeric values/q: {err}')

    # --- outputs ---

    def drain(self):
        self.request_inputs()
        for warning in self.engine.warnings:
            self.get_logger().warning(warning, throttle_duration_sec=1.0)
        self.engine.warnings.clear()
        commands, transitions, finished = self.engine.take()
        for cmd in commands:
            self.publish_command(cmd)
        self.send_transitions(transitions)
        for stats in finished:
            self.stats_pub.publish(String(data=json.dumps(stats.as_dict())))
            self.get_logger().info(f'episode {stats.episode_id}: success={stats.success} steps={stats.steps} '
                                   f'critical={stats.critical_steps} by source {stats.steps_by_source}')

    def request_inputs(self):
        """Ask the VLA server for the observations the engine waits for: only asked-for observations are computed."""
        for step in [] if self.join is None else self.engine.wanted_observations(self.now()):
            if step.stamp in self.requested:
                continue
            msg = InferenceRequest(episode_id=self.engine.episode.episode_id, step_index=step.n,
                                   decides=self.engine.decides_on(step.stamp),
                                   lead_steps=self.engine.lead_for(step.stamp))
            set_stamp(msg.header, step.stamp)
            self.requested[step.stamp] = msg
            self.request_pub.publish(msg)

    def send_transitions(self, transitions):
        """Queue, then send oldest first while a learner subscribes (a RELIABLE writer drops what it sends before
        it has matched a reader) and fewer than `max_unacked_transitions` are unacknowledged, at most half the
        queue depth per call so that a backlog does not fill the queue at once; send the unacknowledged again
        once `ack_timeout_s` passes without an acknowledgement. Beyond `max_held_transitions` the oldest queued
        are dropped."""
        dropped = max(0, len(self.held) + len(transitions) - self.held.maxlen)
        self.held.extend(transitions)
        if dropped:
            self.dropped_transitions += dropped
            self.get_logger().error(f'{self.dropped_transitions} recorded transitions dropped so far (the oldest): '
                                    f'{self.held.maxlen} held and still nothing subscribes to rlt/transitions',
                                    throttle_duration_sec=10.0)
        if not (self.held or self.unacked):
            return
        if self.transition_pub.get_subscription_count() == 0:
            self.get_logger().info(f'{len(self.held) + len(self.unacked)} transitions held: nothing subscribes to '
                                   'rlt/transitions', throttle_duration_sec=10.0)
            return
        now, budget = self.now(), TRANSITIONS_QOS.depth // 2
        if self.unacked and now - self.last_ack_time > self.ack_timeout_s:
            self.get_logger().warning(f'{len(self.unacked)} transitions not acknowledged within {self.ack_timeout_s} '
                                      's: sent again', throttle_duration_sec=10.0)
            for msg in list(self.unacked)[:budget]:
                msg.acked_sequence = self.acked
                self.transition_pub.publish(msg)
            self.last_ack_time = now
            return
        if not self.unacked:
            self.last_ack_time = now  # the time-out counts from the first unacknowledged
        for _ in range(min(len(self.held), budget, self.max_unacked - len(self.unacked))):
            self.sequence += 1
            msg = transition_to_msg(self.held.popleft())
            msg.writer_id, msg.sequence, msg.acked_sequence = self.writer_id, self.sequence, self.acked
            self.unacked.append(msg)
            self.transition_pub.publish(msg)

    def on_ack(self, msg: TransitionAck):
        if msg.writer_id != self.writer_id or msg.sequence <= self.acked:
            return
        self.acked = min(msg.sequence, self.sequence)
        while self.unacked and self.unacked[0].sequence <= self.acked:
            self.unacked.popleft()
        self.last_ack_time = self.now()

    def destroy_node(self):
        if self.held or self.unacked:
            self.get_logger().error(f'{len(self.held) + len(self.unacked)} recorded transitions were not stored by '
                                    f'a learner ({len(self.unacked)} sent and not acknowledged)')
        if self.dropped_transitions:
            self.get_logger().error(f'{self.dropped_transitions} recorded transitions were dropped while held')
        super().destroy_node()

    def publish_trajectory(self, points) -> JointTrajectory:
        """Joint positions to the controller, one point per control step."""
        traj = JointTrajectory(joint_names=list(self.joint_names))
        traj.header.stamp = self.get_clock().now().to_msg()
        for k, point in enumerate(points, start=1):
            t = k * self.dt
            traj.points.append(JointTrajectoryPoint(
                positions=[float(v) for v in point],
                time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))))
        self.traj_pub.publish(traj)
        return traj

    def publish_command(self, cmd):
        traj = self.publish_trajectory(cmd.points)
        if cmd.is_hold:  # a chunk cut short with nothing to follow: no actions executed, nothing to draw
            return
        header = set_stamp(traj.header, cmd.stamp_ns)
        self.executed_pub.publish(chunk_to_msg(cmd.executed, cmd.source, header=header, episode_id=cmd.episode_id,
                                               chunk_index=cmd.chunk_index, step_index=cmd.step_index,
                                               action_names=self.profile.action_names))
        phase = 'critical' if cmd.critical else 'approach'
        text = f'{phase} | {SOURCE_NAMES[cmd.source]}' + (f' | Q {self.q:.2f}' if self.q is not None else '')
        path, frame = self.drawn(np.vstack([cmd.start, cmd.points]))
        reference = cmd.reference
        if reference is not None and self.engine.kinematics is not None:
            reference = reference[:, :3]  # the tool's moves
        self.marker_pub.publish(chunk_markers(path[0], path[1:], reference, cmd.source, text, traj.header.stamp,
                                              frame=frame))

    def drawn(self, joint_points):
        """Joint positions (N, J) as points to draw and their frame: a Cartesian gantry's as they are, an arm's as
        its tool's positions in the base frame (ee_delta)."""
        joint_points = np.atleast_2d(joint_points)
        if self.engine.kinematics is None:
            return joint_points, 'base_link'
        return self.engine.kinematics.tool_positions(joint_points), self.profile.base_frame


def main(args=None):
    spin_node(ArbiterNode, args)


if __name__ == '__main__':
    main()
