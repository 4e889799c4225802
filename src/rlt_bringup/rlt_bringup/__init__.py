"""Bringup of the rlt node graph."""
