"""Two processes exchange rlt's RL-token and action-chunk messages over DDS, bit-exactly."""

import numpy as np
from conftest import HELPERS
from rclpy.qos import QoSProfile, ReliabilityPolicy

from rlt_interfaces.msg import ActionChunk, RLToken
from rlt_nodes.conversions import as_numpy, chunk_to_msg, token_to_msg

QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def _payloads(rng, n, size):
    """Random float32 vectors plus the awkward values: -0.0, infinities, NaN, subnormals, extremes."""
    special = np.array([-0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45,
                        np.finfo(np.float32).max, np.finfo(np.float32).tiny], dtype=np.float32)
    out = []
    for _ in range(n):
        x = rng.standard_normal(size).astype(np.float32)
        x[:special.size] = special
        out.append(x)
    return out


def test_token_and_chunk_roundtrip_between_processes(processes, test_node):
    echo = processes.python(HELPERS / 'echo_node.py')
    node = test_node.node
    token_back, chunk_back = [], []
    token_pub = node.create_publisher(RLToken, 'echo/token_in', QOS)
    chunk_pub = node.create_publisher(ActionChunk, 'echo/chunk_in', QOS)
    node.create_subscription(RLToken, 'echo/token_out', token_back.append, QOS)
    node.create_subscription(ActionChunk, 'echo/chunk_out', chunk_back.append, QOS)

    def connected():
        return (token_pub.get_subscription_count() and chunk_pub.get_subscription_count()
                and node.count_publishers('echo/token_out') and node.count_publishers('echo/chunk_out'))

    assert test_node.spin_until(connected, timeout=30), 'echo node never joined the graph: ' + (
        processes.stop(echo))

    rng = np.random.default_rng(42)
    tokens = _payloads(rng, 20, 2048)
    chunks = [x.reshape(50, 14) for x in _payloads(rng, 20, 50 * 14)]
    for i, (z, a) in enumerate(zip(tokens, chunks, strict=True)):
        token_pub.publish(token_to_msg(z, episode_id=5, chunk_index=i, step_index=10 * i))
        chunk_pub.publish(chunk_to_msg(a, ActionChunk.SOURCE_HUMAN, episode_id=5, chunk_index=i,
                                       action_names=[f'j{k}' for k in range(14)]))

    assert test_node.spin_until(lambda: len(token_back) == 20 and len(chunk_back) == 20, timeout=30)
    for i, msg in enumerate(token_back):
        assert (msg.episode_id, msg.chunk_index, msg.step_index) == (5, i, 10 * i)
        assert as_numpy(msg.data).tobytes() == tokens[i].tobytes()
    for i, msg in enumerate(chunk_back):
        assert (msg.chunk_length, msg.action_dim, msg.source) == (50, 14, ActionChunk.SOURCE_HUMAN)
        assert list(msg.action_names) == [f'j{k}' for k in range(14)]
        assert as_numpy(msg.data).tobytes() == chunks[i].tobytes()
    assert echo.poll() is None, 'echo process died'
