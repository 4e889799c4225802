"""Parameter helpers shared by the nodes."""

from rcl_interfaces.msg import ParameterDescriptor


def desc(text: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=text)
