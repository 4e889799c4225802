"""The node graph's one definition (rlt_bringup.graph): executables, parameter files, launch files."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from rlt_bringup import graph

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'src' / 'rlt_bringup' / 'config'


def console_scripts() -> dict:
    """name -> (package, module) of the node packages' console_scripts, read from their setup.py."""
    scripts = {}
    for package in ('rlt_nodes', 'rlt_sim_nodes'):
        text = (ROOT / 'src' / package / 'setup.py').read_text()
        scripts.update({name: (package, module) for name, module in
                        re.findall(rf"'(\w+) = {package}\.(\w+):main'", text)})
    return scripts


def declared_parameters(script: tuple[str, str]) -> set:
    """Parameter names a node declares: p('name', ...) / self.declare_parameter('name', ...)."""
    package, module = script
    tree = ast.parse((ROOT / 'src' / package / package / f'{module}.py').read_text())
    names = set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant):
            func = call.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            if fname in ('p', 'declare_parameter') and isinstance(call.args[0].value, str):
                names.add(call.args[0].value)
    return names


@pytest.mark.parametrize('variant', graph.VARIANTS)
def test_every_node_is_an_installed_console_script(variant):
    scripts = console_scripts()
    for spec in graph.nodes(variant):
        assert scripts[spec.executable][0] == spec.package, spec
        installed = ROOT / 'install' / spec.package / 'lib' / spec.package / spec.executable
        assert installed.exists(), f'{installed} missing: rebuild with ./rlt setup'
        for f in spec.param_files:
            assert (CONFIG / f).exists(), f


def test_parameter_files_are_keyed_by_graph_nodes_and_declare_only_known_parameters():
    scripts = console_scripts()
    names = {s.name: scripts[s.executable] for v in graph.VARIANTS for s in graph.nodes(v)}
    files = sorted(CONFIG.glob('*.yaml'))
    assert {f.name for f in files} >= {'rlt.yaml', 'sim.yaml', 'real_robot.yaml', 'sim_robot.yaml'}
    for f in files:
        data = yaml.safe_load(f.read_text())
        assert isinstance(data, dict) and data, f
        for node, body in data.items():
            assert node in names, f'{f.name}: {node} is not a node of the graph'
            assert list(body) == ['ros__parameters'], f'{f.name}: {node} needs only ros__parameters'
            unknown = set(body['ros__parameters']) - declared_parameters(names[node])
            assert not unknown, f'{f.name}: {node} does not declare {sorted(unknown)}'


def test_the_graph_learns_with_the_libraries_defaults():
    """The learner's hyper-parameters in the graph's config are TD3Config's defaults, which train_rlt uses too."""
    from rlt_core.rl.td3 import TD3Config
    names = {'hidden': 'critic_hidden'}  # node parameter -> TD3Config field, where they differ
    d = TD3Config()
    for f in sorted(CONFIG.glob('*.yaml')):
        learner = yaml.safe_load(f.read_text()).get('learner', {}).get('ros__parameters', {})
        for param, value in learner.items():
            field = names.get(param, param)
            if hasattr(d, field):
                default = getattr(d, field)
                assert value == (list(default) if isinstance(default, tuple) else default), f'{f.name}: {param}'


def test_launch_arguments_reach_declared_parameters():
    scripts = console_scripts()
    for arg, (default, text, targets) in graph.LAUNCH_ARGUMENTS.items():
        assert isinstance(default, str) and text
        for node, param in targets:
            assert param in declared_parameters(scripts[node]), (arg, node, param)
    overrides = graph.launch_overrides({'warmup_episodes': '5', 'explore': 'false', 'vla_path': '/m/vla',
                                        'device': ''})
    assert overrides == {'arbiter': {'warmup_episodes': 5, 'vla_path': '/m/vla'}, 'actor': {'explore': False,
                         'vla_path': '/m/vla'}, 'vla_server': {'vla_path': '/m/vla'}}


def test_variants_and_ros_arguments():
    sim = [s.name for s in graph.nodes('sim')]
    real = [s.name for s in graph.nodes('real')]
    assert real == list(graph.CORE) and sim == list(graph.CORE) + list(graph.SIM_ONLY)
    spec = graph.nodes('real', {'arbiter': {'warmup_episodes': 3}})[3]
    args = graph.ros_arguments(spec, Path('/cfg'), Path('/tmp/o.yaml'))
    assert args == ['--ros-args', '-r', '__node:=arbiter', '--params-file', '/cfg/rlt.yaml',
                    '--params-file', '/cfg/real_robot.yaml', '--params-file', '/tmp/o.yaml']
    with pytest.raises(ValueError):
        graph.nodes('moon')


def test_launch_files_only_iterate_over_the_graph():
    launch = ROOT / 'src' / 'rlt_bringup' / 'launch'
    for name in ('rlt.launch.py', 'sim.launch.py', 'real_robot.launch.py'):
        text = (launch / name).read_text()
        ast.parse(text)
        assert 'from rlt_bringup import graph' in text and "executable='" not in text.replace("executable='rviz2'", '')
    assert "'variant': 'sim'" in (launch / 'sim.launch.py').read_text()
    assert "'variant': 'real'" in (launch / 'real_robot.launch.py').read_text()
