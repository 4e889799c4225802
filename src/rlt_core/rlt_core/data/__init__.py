"""Recorded episodes on disk: the LeRobot v3.0 dataset format, the graph recorder's episode assembly and MCAP
logs of raw topics. No ROS imports."""
