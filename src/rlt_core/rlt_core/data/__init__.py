"""Recorded episodes on disk: the LeRobot v3.0 dataset format, the graph recorder's episode assembly and MCAP
logs of raw topics; camera images converted to what the VLA reads. No ROS imports."""
