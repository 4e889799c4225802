"""The core RLT graph: ingestion, vla_server, actor, arbiter, learner (nodes from rlt_bringup.graph).

  ros2 launch rlt_bringup rlt.launch.py variant:=real robot_profile:=/path/to/robot.yaml vla_path:=/path/to/vla

Included by real_robot.launch.py and sim.launch.py; every node, parameter file and override
comes from rlt_bringup.graph, which the embedded runner (./rlt run) uses too. `robot_profile`
reaches every node (core and sim): the one place the robot's facts come from.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from rlt_bringup import graph, launch_support


def _core(context):
    values = {arg: LaunchConfiguration(arg).perform(context) for arg in graph.LAUNCH_ARGUMENTS}
    variant = LaunchConfiguration('variant').perform(context)
    return launch_support.node_actions(graph.nodes(variant, graph.launch_overrides(values), core_only=True))


def generate_launch_description():
    args = [DeclareLaunchArgument('variant', default_value='real', choices=list(graph.VARIANTS),
                                  description='parameter variant: sim or real')]
    args += [DeclareLaunchArgument(name, default_value=default, description=text)
             for name, (default, text, _) in graph.LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*args, OpaqueFunction(function=_core)])
