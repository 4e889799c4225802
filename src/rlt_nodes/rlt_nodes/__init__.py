"""rlt's ROS 2 nodes. Each is a thin wrapper: parameters, QoS and message conversion; the logic
lives in rlt_core and rlt_sim."""
