"""The QoS of the graph's own topics, one profile per kind of traffic. Both ends of a topic take its
profile from here: a subscriber that asks for more than its publisher offers (RELIABLE from
BEST_EFFORT, TRANSIENT_LOCAL from VOLATILE) matches nothing and receives nothing, without an error.
Camera images and joint states use rclpy's sensor-data and default profiles."""
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def _reliable(depth: int, latched: bool = False) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


OBSERVATION_QOS = _reliable(1)     # rlt/observation: only the newest is worth an inference
REQUESTED_OBSERVATION_QOS = _reliable(4)  # rlt/observation at the VLA server: kept until the arbiter asks for one
REQUEST_QOS = _reliable(10)        # rlt/inference_request: each asked for once
CHUNK_QOS = _reliable(10)          # rlt/rl_token, rlt/reference_chunk, rlt/actor_chunk, rlt/executed_chunk
EVENTS_QOS = _reliable(100)        # episode/events: none may be dropped
TRANSITIONS_QOS = _reliable(1000)  # rlt/transitions: the arbiter also holds them until a learner matches
ACKS_QOS = _reliable(100)         # rlt/transitions_ack: the learner's acknowledgements
STATS_QOS = _reliable(100, latched=True)  # rlt/episode_stats: a late subscriber gets the last 100
LATCHED_QOS = _reliable(1, latched=True)  # rlt/actor_weights, rlt/actor_version, rlt/episode_count: the latest
