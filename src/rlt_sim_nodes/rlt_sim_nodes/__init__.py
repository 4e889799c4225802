"""The simulated cell presented to the graph as a ros2_control robot with cameras, and its sim-only helpers."""
