"""rlt's algorithms in plain Python and PyTorch. Nothing here imports ROS."""
