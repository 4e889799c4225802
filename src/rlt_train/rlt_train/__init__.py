"""Training entry points of rlt on the simulated cell: the default VLA, the RL token, and RLT."""
