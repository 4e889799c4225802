"""Parameter helpers shared by the nodes."""

from rcl_interfaces.msg import ParameterDescriptor


def desc(text: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=text)


ROBOT_PROFILE = desc("robot profile: a YAML path or a name in rlt_bringup's config/profiles (empty: the default, "
                     'gantry_cell); joints, limits, rate, cameras, chunks and episode length come from it')
"""The description of every node's `robot_profile` parameter."""
