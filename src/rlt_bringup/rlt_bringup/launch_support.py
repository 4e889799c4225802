"""launch_ros actions from rlt_bringup.graph's node specs (used only inside the launch files)."""


def node_actions(specs):
    from launch_ros.actions import Node

    from rlt_bringup import graph
    config = graph.config_dir()
    return [Node(package=s.package, executable=s.executable, name=s.name, output='screen',
                 parameters=[str(config / f) for f in s.param_files] + ([s.parameters] if s.parameters else []),
                 remappings=list(s.remappings))
            for s in specs]
