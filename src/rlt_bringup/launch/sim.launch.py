"""The RLT graph on the simulated cell: rlt.launch.py (variant sim) + sim_robot, episode_manager, sim_human.

  ros2 launch rlt_bringup sim.launch.py [rviz:=true] [warmup_episodes:=5] [robot_profile:=/path/to/cell.yaml]
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rlt_bringup import graph, launch_support

HERE = os.path.dirname(os.path.abspath(__file__))


def _sim_nodes(context):
    values = {arg: LaunchConfiguration(arg).perform(context) for arg in graph.LAUNCH_ARGUMENTS}
    specs = graph.nodes('sim', graph.launch_overrides(values))  # robot_profile reaches the sim nodes too
    return launch_support.node_actions([s for s in specs if s.name in graph.SIM_ONLY])


def generate_launch_description():
    forwarded = {name: LaunchConfiguration(name) for name in graph.LAUNCH_ARGUMENTS}
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text, _) in graph.LAUNCH_ARGUMENTS.items()],
        DeclareLaunchArgument('rviz', default_value='false', description='start RViz with rviz/rlt.rviz'),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, 'rlt.launch.py')),
                                 launch_arguments={'variant': 'sim', **forwarded}.items()),
        OpaqueFunction(function=_sim_nodes),
        Node(package='rviz2', executable='rviz2', arguments=['-d', os.path.join(HERE, '..', 'rviz', 'rlt.rviz')],
             condition=IfCondition(LaunchConfiguration('rviz'))),
    ])
