"""The node graph's one definition (rlt_bringup.graph): executables, parameter files, launch files, and the one
robot profile every node, the simulator and the trainers take every robot quantity from."""

import ast
import dataclasses
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlt_bringup import embedded, graph
from rlt_core.control.profile import DEFAULT_PROFILE, KINEMATICS_FIELDS, ProfileError, RobotProfile, profiles_dir
from rlt_core.models.vla.spec import BackboneSpec, check_backbone, load_backbone

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'src' / 'rlt_bringup' / 'config'
PROFILES = sorted(profiles_dir().glob('*.yaml'))

ROBOT_FACTS = {f.name for f in dataclasses.fields(RobotProfile)} - {'name', 'description'} | {
    'camera_names', 'image_size', 'action_names', 'action_scale_m', 'action_dim', 'chunk_len', 'critical_max_delta_m',
    'max_delta_m', 'joint_ranges_m', 'joint_limits'}
"""Names under which a robot fact was (or could be) copied into a node parameter."""


def other_profile(path: Path) -> str:
    """The default profile with every robot quantity changed (still a robot the sim can be), written to `path`."""
    default = RobotProfile.load()
    other = dataclasses.replace(
        default, name='other_cell', joint_names=('ax', 'ay', 'az'), joint_lower=(-0.03, -0.04, -0.05),
        joint_upper=(0.02, 0.03, 0.01), controller_name='arm_controller', control_hz=25.0,
        max_delta=(0.004, 0.003, 0.002), critical_max_delta=(0.002, 0.001, 0.002),
        cameras=(dataclasses.replace(default.cameras[0], name='top', width=32, height=32),
                 dataclasses.replace(default.cameras[1], name='hand', width=32, height=32)),
        vla_chunk_len=8, actor_chunk_len=2, stride=1, max_steps=50)
    assert all(getattr(other, f) != getattr(default, f) for f in ROBOT_FACTS & {f.name for f in
               dataclasses.fields(RobotProfile)} - {'action_space', *KINEMATICS_FIELDS})  # those: ee_delta's
    return str(other.save(path))


@pytest.fixture(params=[*(p.stem for p in PROFILES), 'other'])
def profile_path(request, tmp_path) -> str:
    """Each profile under config/profiles, and a modified one."""
    if request.param == 'other':
        return other_profile(tmp_path / 'other_cell.yaml')
    return str(profiles_dir() / f'{request.param}.yaml')


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


def test_the_rviz_config_shows_the_robot_model_the_markers_and_the_profiles_cameras():
    config = yaml.safe_load((ROOT / 'src' / 'rlt_bringup' / 'rviz' / 'rlt.rviz').read_text())
    displays = config['Visualization Manager']['Displays']
    topics = {d['Class'].split('/')[-1]: [] for d in displays}
    for d in displays:
        topic = d.get('Description Topic') or d.get('Topic') or {}
        topics[d['Class'].split('/')[-1]].append(topic.get('Value'))
    assert topics['RobotModel'] == ['/robot_description']
    assert topics['MarkerArray'] == ['/rlt/markers']  # what the arbiter publishes
    assert "'rlt/markers'" in (ROOT / 'src' / 'rlt_nodes' / 'rlt_nodes' / 'arbiter.py').read_text()
    default = RobotProfile.load()
    assert set(topics['Image']) == {'/' + c.image_topic for c in default.cameras}
    assert config['Visualization Manager']['Global Options']['Fixed Frame'] == 'base_link'


# --- the robot profile: one source of every robot fact ---

def all_node_scripts() -> dict:
    """name -> script of every node: the graph's, and the keyboard teleop."""
    scripts = console_scripts()
    names = {s.name: scripts[s.executable] for v in graph.VARIANTS for s in graph.nodes(v)}
    return {**names, 'keyboard_teleop': scripts['keyboard_teleop']}


def test_every_node_declares_the_profile_and_no_robot_fact():
    for name, script in all_node_scripts().items():
        declared = declared_parameters(script)
        assert 'robot_profile' in declared, f'{name} does not declare robot_profile'
        assert not declared & ROBOT_FACTS, f'{name} declares robot facts {sorted(declared & ROBOT_FACTS)}'
    for f in sorted(CONFIG.glob('*.yaml')):
        for node, body in yaml.safe_load(f.read_text()).items():
            facts = set(body['ros__parameters']) & ROBOT_FACTS
            assert not facts, f'{f.name}: {node} sets robot facts {sorted(facts)}'


def test_the_launch_argument_gives_every_node_the_profile(profile_path, tmp_path):
    assert 'robot_profile' in graph.LAUNCH_ARGUMENTS
    targets = graph.LAUNCH_ARGUMENTS['robot_profile'][2]
    assert {node for node, _ in targets} == set(graph.CORE) | set(graph.SIM_ONLY)
    overrides = graph.launch_overrides({'robot_profile': profile_path})
    for variant in graph.VARIANTS:
        specs = graph.nodes(variant, overrides)
        assert all(s.parameters == {'robot_profile': profile_path} for s in specs), specs
    # The embedded runner: --robot-profile reaches every node's parameter file, --set still works beside it.
    run = embedded.merge(embedded.profile_overrides(profile_path), embedded.parse_set(['arbiter.warmup_episodes=5']))
    specs = graph.nodes('sim', run)
    commands = dict(embedded.commands(specs, tmp_path / 'overrides.yaml'))
    assert set(commands) == set(graph.CORE) | set(graph.SIM_ONLY)
    written = yaml.safe_load((tmp_path / 'overrides.yaml').read_text())
    for name, argv in commands.items():
        assert argv[-2:] == ['--params-file', str(tmp_path / 'overrides.yaml')], argv
        assert written[name]['ros__parameters']['robot_profile'] == str(Path(profile_path).resolve())
    assert written['arbiter']['ros__parameters']['warmup_episodes'] == 5
    given = written['sim_robot']['ros__parameters']['robot_profile']
    assert RobotProfile.load(given) == RobotProfile.load(profile_path)
    # A profile name resolves to its file in config/profiles; a bad profile fails before any node starts.
    by_name = embedded.profile_overrides(PROFILES[0].stem)
    assert by_name['actor']['robot_profile'] == str(PROFILES[0].resolve())
    with pytest.raises(ValueError, match='cannot read robot profile'):
        embedded.profile_overrides(str(tmp_path / 'absent.yaml'))


def test_the_launch_files_pass_the_launch_arguments_to_core_and_sim_nodes():
    launch = ROOT / 'src' / 'rlt_bringup' / 'launch'
    for name in ('rlt.launch.py', 'sim.launch.py'):
        assert 'graph.launch_overrides(values)' in (launch / name).read_text(), name
    for name in ('sim.launch.py', 'real_robot.launch.py'):  # they declare and forward every launch argument
        text = (launch / name).read_text()
        assert 'for name in graph.LAUNCH_ARGUMENTS' in text and '**forwarded' in text, name


def _weights(profile: RobotProfile, state_dim: int):
    import array

    from rlt_core.rl.actor import Actor, pack_weights
    from rlt_interfaces.msg import ActorWeights
    packed = pack_weights(Actor(profile.actor_config(state_dim, hidden=(8,))))
    msg = ActorWeights(version=1, format=packed['format'], sha256=packed['sha256'], config_json=packed['config_json'])
    msg.payload = array.array('B', packed['payload'])
    return msg


def _transition(profile: RobotProfile, chunk_len: int, state_dim: int = 5):
    from rlt_core.rl.replay import ChunkTransition
    from rlt_nodes.conversions import transition_to_msg
    chunk = np.zeros((chunk_len, profile.action_dim), np.float32)
    return transition_to_msg(ChunkTransition(
        state=np.zeros(state_dim, np.float32), executed_chunk=chunk, reference_chunk=chunk,
        rewards=np.zeros(chunk_len, np.float32), next_state=np.zeros(state_dim, np.float32),
        next_reference_chunk=chunk, done=False, source=1, episode_id=0))


@pytest.mark.parametrize('node_name', ['ingestion', 'vla_server', 'actor', 'learner', 'keyboard_teleop',
                                       'sim_robot', 'sim_human', 'episode_manager', 'arbiter'])
def test_each_node_takes_the_robot_from_its_profile(node_name, ros_env, tmp_path):
    """Each node, built in this process with a modified profile, has that robot's joints, cameras, rate,
    limits, chunks and controller; the actor refuses weights made for another profile."""
    import importlib

    import rclpy

    path = other_profile(tmp_path / 'other_cell.yaml')
    profile, default = RobotProfile.load(path), RobotProfile.load()
    package, module = all_node_scripts()[node_name]
    models = []
    if node_name in ('vla_server', 'actor', 'arbiter'):  # this robot has no committed VLA: a tiny one that fits it
        from rlt_bringup.tiny_models import make_tiny_models
        vla, token = make_tiny_models(tmp_path / 'models', path)
        models = ['-p', f'vla_path:={vla}'] + (['-p', f'token_path:={token}'] if node_name == 'vla_server' else [])
    rclpy.init(args=['--ros-args', '-p', f'robot_profile:={path}', '-p', 'compile:=false', *models])
    node = None
    try:
        loaded = importlib.import_module(f'{package}.{module}')
        node_class, = (c for c in vars(loaded).values() if isinstance(c, type) and c.__module__ == loaded.__name__
                       and c.__name__.endswith('Node'))
        node = node_class()
        assert node.get_parameter('robot_profile').value == path
        assert node.profile == profile
        topics = {s.topic_name for s in node.subscriptions}
        periods = {t.timer_period_ns for t in node.timers}
        if node_name == 'ingestion':
            assert node.cameras == ['top', 'hand'] and node.joint_names == ['ax', 'ay', 'az']
            assert {'/cameras/top/image_raw', '/cameras/hand/image_raw'} <= topics
            assert '/cameras/scene/image_raw' not in topics
        elif node_name == 'vla_server':
            assert node.action_names == ['ax', 'ay', 'az'] and node.vla.camera_names == ('top', 'hand')
            with pytest.raises(ProfileError, match="does not fit robot profile 'other_cell'"):
                check_backbone(load_backbone(BackboneSpec.parse('', DEFAULT_PROFILE)), profile)
        elif node_name == 'actor':
            node.on_weights(_weights(default, state_dim=5))  # weights for the default cell: refused
            assert node.actor is None
            node.on_weights(_weights(profile, state_dim=5))
            assert node.actor is not None and node.actor.config.profile_hash == profile.hash
        elif node_name == 'learner':
            node.on_transition(_transition(profile, chunk_len=default.actor_chunk_len))  # not this robot's C
            assert node.refused == 1 and node.learner is None
            node.on_transition(_transition(profile, chunk_len=profile.actor_chunk_len))
            config = node.learner.actor.config
            assert (config.chunk_len, config.action_dim, config.profile_hash) == (2, 3, profile.hash)
            assert config.action_scale == profile.max_delta and config.action_limit == profile.critical_max_delta
        elif node_name == 'keyboard_teleop':
            assert periods == {40_000_000}  # one Joy per control step at 25 Hz
        elif node_name == 'sim_robot':
            cfg = node.env.config
            assert (cfg.joint_names, cfg.control_hz, cfg.max_steps, cfg.max_delta_m, cfg.image_size) == (
                ('ax', 'ay', 'az'), 25.0, 50, (0.004, 0.003, 0.002), 32)
            assert cfg.joint_ranges_m == ((-0.03, 0.02), (-0.04, 0.03), (-0.05, 0.01))
            assert set(node.image_pubs) == {'top', 'hand'} and '/arm_controller/joint_trajectory' in topics
            assert periods == {40_000_000}
            for name, lo, hi in zip(profile.joint_names, profile.joint_lower, profile.joint_upper, strict=True):
                assert tuple(node.env.model.joint(name).range) == pytest.approx((lo, hi))
        elif node_name == 'sim_human':
            assert tuple(node.human.expert.max_delta_m) == profile.max_delta
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.shutdown()


def test_trainers_take_the_robot_from_the_profile(tmp_path):
    from rlt_bringup.tiny_models import make_tiny_models
    from rlt_core.models.vla.small_vla import SmallVLA
    from rlt_sim import PegInsertionEnv, SimConfig
    from rlt_sim.record import RecordConfig
    from rlt_train import demo_replay, train_rlt, train_vla
    path = other_profile(tmp_path / 'other_cell.yaml')
    profile = RobotProfile.load(path)
    assert demo_replay.DemoReplayConfig(robot_profile=path).profile() == profile
    assert train_vla.VLATrainConfig(robot_profile=path).profile() == profile
    assert train_rlt.load_profile(train_rlt.RLTTrainConfig(robot_profile=path)) == profile
    c1 = train_rlt.load_profile(train_rlt.apply_ablation(train_rlt.RLTTrainConfig(robot_profile=path, ablation='c1')))
    assert c1 == replace(profile, actor_chunk_len=1, stride=1) and c1.hash != profile.hash
    with pytest.raises(ValueError, match='execute_steps'):  # at most H = 8 of this robot's actions
        train_vla.VLATrainConfig(robot_profile=path, execute_steps=profile.vla_chunk_len + 1)
    train_vla.VLATrainConfig(execute_steps=profile.vla_chunk_len + 1)  # the default cell's H is 10
    cfg = RecordConfig(output=str(tmp_path / 'demos'), robot_profile=path).sim_config()
    assert cfg == SimConfig.from_profile(profile)
    env = PegInsertionEnv(cfg)
    assert env.observation_space['images'].keys() == {'top', 'hand'} and env.metadata['render_fps'] == 25.0
    env.close()
    vla_dir, _ = make_tiny_models(tmp_path / 'models', path)
    vla = SmallVLA.load(vla_dir)
    assert (vla.config.camera_names, vla.config.image_size, vla.config.chunk_len, vla.config.action_dim) == (
        ('top', 'hand'), 32, 8, 3)


def test_ablations_give_every_run_the_profile(tmp_path):
    from rlt_train import ablations  # imports train_rlt
    path = other_profile(tmp_path / 'other_cell.yaml')
    assert ablations.profile_args(path) == ['--robot-profile', str(Path(path).resolve())]
    assert ablations.profile_args('') == []  # train_rlt's default: the default profile
    with pytest.raises(ValueError, match='cannot read robot profile'):
        ablations.profile_args(str(tmp_path / 'absent.yaml'))


def test_benchmarks_run_their_graph_on_a_domain_of_their_own(monkeypatch):
    monkeypatch.delenv('ROS_DOMAIN_ID', raising=False)
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    env = embedded.ros_environment(private_domain=True)
    assert 201 <= int(env['ROS_DOMAIN_ID']) <= 232 and os.environ['ROS_DOMAIN_ID'] == env['ROS_DOMAIN_ID']
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' == os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']
    monkeypatch.setenv('ROS_DOMAIN_ID', '42')  # the user's choice stands
    assert embedded.ros_environment(private_domain=True)['ROS_DOMAIN_ID'] == '42'
    monkeypatch.delenv('ROS_DOMAIN_ID')
    assert 'ROS_DOMAIN_ID' not in embedded.ros_environment()  # `./rlt run`: the user's default domain
