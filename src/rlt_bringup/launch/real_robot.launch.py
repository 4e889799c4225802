"""The RLT graph on a real robot: rlt.launch.py with the real-robot parameters (config/real_robot.yaml).

  ros2 launch rlt_bringup real_robot.launch.py robot_profile:=/path/to/my_robot.yaml vla_path:=... device:=cuda
      [rviz:=true]

The robot profile states the robot's joints, limits, cameras, control rate, chunk lengths and
controller name once (config/profiles/; empty: gantry_cell). Start the robot's own driver
(joint_states, the cameras on their profile topics, the profile's JointTrajectoryController) and
`ros2 run joy joy_node` beside it.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rlt_bringup import graph

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_launch_description():
    forwarded = {name: LaunchConfiguration(name) for name in graph.LAUNCH_ARGUMENTS}
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text, _) in graph.LAUNCH_ARGUMENTS.items()],
        DeclareLaunchArgument('rviz', default_value='false', description='start RViz with rviz/rlt.rviz'),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, 'rlt.launch.py')),
                                 launch_arguments={'variant': 'real', **forwarded}.items()),
        Node(package='rviz2', executable='rviz2', arguments=['-d', os.path.join(HERE, '..', 'rviz', 'rlt.rviz')],
             condition=IfCondition(LaunchConfiguration('rviz'))),
    ])
