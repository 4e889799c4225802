"""rlt's robot-side ROS 2 nodes. Each is a thin wrapper: parameters, QoS and message conversion; the logic
lives in rlt_core. Nothing here imports the simulator (rlt_sim, MuJoCo).
"""
