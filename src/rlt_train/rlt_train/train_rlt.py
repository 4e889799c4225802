"""Phase 2: RLT online in the simulated cell, in one process (no ROS).

  python -m rlt_train.train_rlt --output runs/rlt --episodes 400

The frozen VLA drives outside the critical phase. Inside it, the actor pi(a | x, ref_chunk)
with x = (z_rl, proprio) refines the VLA's chunk; a simulated human takes over some visibly
failing episodes. Every episode runs through `rlt_core.control.engine.EpisodeEngine`, the protocol
the arbiter node runs on a robot, here driven synchronously (the simulator waits for each decision).
Chunk transitions (sub-sampled at the profile's stride) go to a replay buffer persisted on disk, and
the chunked TD3 learner makes `utd_ratio` updates per transition. The robot's facts (chunk lengths,
stride, limits, episode length, control rate) come from the robot profile (`--robot-profile`). Every
`eval_every` episodes the actor is evaluated without noise on held-out seeds; the best actor is
kept. The run resumes from `output/` after a crash (checkpoint + replay; no transition is lost).
With `--demo-replay`, recorded demonstrations (made into transitions by `rlt_train.demo_replay`)
are read-only prior data: `demo_fraction` of every batch, and `pretrain_updates` before the first episode.

Ablations (`--ablation`, same loop and seeds): beta0, no_reference, c1 (C = 1), no_dropout,
residual (a bounded residual on the VLA action, proprio only, no token), noise_only (the VLA
plus the actor's exploration noise, no learning), image_encoder (no RL token: x is a CNN's features
of the two wrist cameras, trained from scratch by the critic loss, as in HIL-SERL, plus proprio).

Diagnostic, not RLT: `--ablation oracle_offset` replaces z_rl by the simulator's true peg-hole
offset (mm, plus `oracle_noise_mm` of noise). It bounds what the RL machinery reaches when the state carries the
offset precisely; privileged state never enters the actor or critic in any other mode.
"""

import io
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rlt_core.control.engine import EpisodeEngine
from rlt_core.control.profile import RobotProfile
from rlt_core.models.image_encoder import FrameStore, ImageEncoder, downsample
from rlt_core.models.rl_token import RLTokenModel
from rlt_core.models.vla.backbone import VLABackbone, VLAInput
from rlt_core.models.vla.spec import BackboneSpec, check_backbone, load_backbone
from rlt_core.rl.actor import ActorConfig, load_actor, save_actor
from rlt_core.rl.checkpoint import atomic_write
from rlt_core.rl.replay import ReplayBuffer
from rlt_core.rl.rl_state import ProprioNormalization, rl_state
from rlt_core.rl.td3 import RLTLearner, TD3Config
from rlt_core.runtime import default_models_dir, setup_torch
from rlt_sim.episode import make_env, step_robot
from rlt_sim.human import SimulatedHuman
from rlt_train.cli import parse_config
from rlt_train.demo_replay import check_demo_replay

ABLATIONS = ('rlt', 'beta0', 'no_reference', 'c1', 'no_dropout', 'residual', 'noise_only', 'image_encoder')
DIAGNOSTICS = ('oracle_offset',)
WRIST_CAMERAS = ('wrist_left', 'wrist_right')
"""The cameras the image_encoder ablation's CNN sees (the hand-mounted pair that resolves the offset)."""
EVAL_SEED = 1_000_000
"""Periodic evaluations, which pick the best actor, use seeds EVAL_SEED + i, never seen in training."""
FINAL_EVAL_SEED = 2_000_000
"""The final evaluation of the best actor, and the base VLA's beside it, use seeds FINAL_EVAL_SEED + i: held out
from training and from the evaluations that selected that actor."""


@dataclass
class RLTTrainConfig:
    """RLT phase 2 in the simulated cell."""

    output: str = 'runs/rlt'
    """Folder for checkpoints, replay, metrics, TensorBoard logs and the learning curve."""
    vla: str = ''
    """The frozen VLA's backbone spec: a SmallVLA folder, pi0:/folder or module:Class[:/path] ('': the robot
    profile's committed one, rlt_bringup/models/<profile>/vla)."""
    token: str = ''
    """Folder of the RL-token encoder (default: the profile's, rlt_bringup/models/<profile>/rl_token)."""
    episodes: int = 400
    """Online training episodes."""
    seed: int = 0
    """Seed of the networks, the training episodes and the simulated human."""
    ablation: str = 'rlt'
    """One of rlt, beta0, no_reference, c1, no_dropout, residual, noise_only, image_encoder."""
    robot_profile: str = ''
    """Robot profile (a YAML path, or a name in rlt_bringup's config/profiles; empty: the default cell)."""
    warmup_episodes: int = 20
    """N_warm: episodes that execute the VLA's chunk to fill the replay buffer."""
    chunk_len: int = 0
    """C: actions per refined chunk (0: the profile's actor_chunk_len)."""
    stride: int = 0
    """Transitions start at every stride-th step of the critical phase (0: the profile's stride)."""
    utd_ratio: int = TD3Config.utd_ratio
    """G: learner updates per transition."""
    batch_size: int = TD3Config.batch_size
    """Transitions per update."""
    gamma: float = TD3Config.gamma
    """Discount per control step."""
    beta: float = TD3Config.beta
    """Weight of ||a - ref_chunk||^2 in the actor loss (1.0 holds the actor to the VLA's imprecise chunk)."""
    ref_dropout: float = TD3Config.ref_dropout
    """Fraction of actor-update samples with a zeroed reference."""
    actor_std: float = ActorConfig.std
    """Fixed std of the actor's Gaussian (normalised action units: 1 mm per step)."""
    actor_start_at_reference: bool = ActorConfig.start_at_reference
    """The actor is the reference plus a correction that starts at zero: it acts as the VLA until it learns."""
    target_noise: float = TD3Config.target_noise
    """Std of the TD3 smoothing noise on a' in the critic target (normalised action units)."""
    actor_lr: float = TD3Config.actor_lr
    """Actor learning rate."""
    critic_lr: float = TD3Config.critic_lr
    """Critic learning rate."""
    hidden: tuple[int, ...] = TD3Config.critic_hidden
    """Hidden widths of actor and critics."""
    critic_layer_norm: bool = TD3Config.critic_layer_norm
    """LayerNorm after each hidden layer of the critics (RLPD; --no-critic-layer-norm: plain TD3 critics)."""
    residual_scale: float = 0.3
    """Residual bound (normalised units) of the residual ablation."""
    image_size: int = 48
    """Pixels per side of the wrist-camera frames the image_encoder ablation's CNN sees (renders averaged down)."""
    intervention_rate: float = 0.1
    """Fraction of training episodes whose simulated human takes over when the robot visibly fails."""
    eval_every: int = 50
    """Online episodes between noise-free evaluations."""
    eval_episodes: int = 50
    """Episodes per periodic evaluation."""
    final_eval_episodes: int = 100
    """Episodes of the final evaluation of the best actor, and of the base VLA on the same seeds (FINAL_EVAL_SEED)."""
    threads: int = 1
    """Torch threads."""
    compile: bool = True
    """Compile the learner's update with TorchInductor: faster updates after a compile at start (without a
    C++ compiler it warns and runs eagerly; --no-compile: eager from the start)."""
    demo_replay: str = ''
    """Replay folder of demonstrations made by `python -m rlt_train.demo_replay` ('': none): prior data."""
    demo_fraction: float = 0.25
    """Fraction of every batch drawn from the demonstrations (with --demo-replay)."""
    pretrain_updates: int = 0
    """Learner updates on the demonstrations alone before the first online episode (with --demo-replay)."""
    critic_only_updates: int = TD3Config.critic_only_updates
    """Learner updates after warmup that train only the critics: the actor acts as it began meanwhile (with
    --actor-start-at-reference, the VLA plus exploration noise)."""
    critic_gate: bool = False
    """Critic-gated hand-over: after warmup the actor's chunk (with its exploration noise in training) executes only
    where the critic values its mean above the VLA's reference by `gate_margin` (min of the twin Q's); elsewhere
    the reference does, as the VLA would. Counted per episode (gate_actor, gate_reference)."""
    gate_margin: float = 0.0
    """The advantage in Q the actor's chunk needs over the reference under --critic-gate."""
    oracle_noise_mm: float = 0.3
    """Diagnostic oracle_offset only: std of the Gaussian noise on the true offset, mm."""

    def __post_init__(self):
        if self.ablation not in ABLATIONS + DIAGNOSTICS:
            raise ValueError(f'ablation must be one of {ABLATIONS + DIAGNOSTICS}, got {self.ablation!r}')
        if self.episodes < 1 or self.eval_every < 1:
            raise ValueError('episodes and eval_every must be >= 1')
        if self.chunk_len < 0 or self.stride < 0:
            raise ValueError('chunk_len and stride must be >= 0 (0: the robot profile\'s)')
        if not 0.0 <= self.demo_fraction <= 0.75 or self.pretrain_updates < 0:
            raise ValueError('demo_fraction must be in [0, 0.75] and pretrain_updates >= 0')
        if self.pretrain_updates and not self.demo_replay:
            raise ValueError('pretrain_updates needs demo_replay')
        if self.critic_gate and self.ablation in ('image_encoder', 'noise_only'):
            raise ValueError(f'the critic gate reads replay states of the token; not with {self.ablation}')


def apply_ablation(cfg: RLTTrainConfig) -> RLTTrainConfig:
    if cfg.ablation == 'beta0':
        return replace(cfg, beta=0.0)
    if cfg.ablation == 'no_dropout':
        return replace(cfg, ref_dropout=0.0)
    if cfg.ablation == 'c1':
        return replace(cfg, chunk_len=1, stride=1)
    return cfg


def load_profile(cfg: RLTTrainConfig) -> RobotProfile:
    """The robot profile, with the run's chunk length and stride where it sets them."""
    profile = RobotProfile.load(cfg.robot_profile)
    if cfg.chunk_len or cfg.stride:
        profile = profile.with_chunks(cfg.chunk_len or profile.actor_chunk_len, cfg.stride or profile.stride)
    return profile


class FrozenPolicyInputs:
    """The frozen VLA and RL-token encoder: observation -> (x, ref_chunk)."""

    def __init__(self, vla: VLABackbone, token: RLTokenModel, norm: ProprioNormalization, use_token: bool = True,
                 oracle: bool = False, oracle_noise_mm: float = 0.3, frames: FrameStore | None = None):
        self.vla, self.token, self.use_token, self.oracle = vla, token, use_token, oracle
        self.oracle_noise_mm = oracle_noise_mm
        self.frames = frames  # image_encoder ablation: x = [proprio, id of the wrist frames]
        self.norm = norm
        self.state_dim = ((2 if oracle else token.config.token_dim if use_token else 0) + self.norm.dim
                          + (frames is not None))
        self.rng = np.random.default_rng(0)

    @torch.no_grad()
    def __call__(self, obs: dict, instruction: str, info: dict):
        out = self.vla(VLAInput.from_env(obs, instruction))
        if self.oracle:  # diagnostic only: the true offset in mm, with noise
            z_rl = info['peg_hole_offset'] * 1000 + self.rng.normal(0, self.oracle_noise_mm, 2)
        elif self.use_token:
            z_rl = self.token.extract(out.embeddings, out.mask)[0].numpy()
        else:
            z_rl = np.zeros(0)
        x = rl_state(z_rl, obs['proprio'], self.norm)
        if self.frames is not None:
            size = self.frames.shape[1]
            frame_id = self.frames.add(np.stack([downsample(obs['images'][c], size) for c in WRIST_CAMERAS]))
            x = np.append(x, np.float32(frame_id))
        return x, out.chunk[0].numpy()


def run_episode(env, inputs, learner, cfg, profile, seed, train, warmup, replay=None, human=None, episode_id=0,
                generator=None):
    """One episode through the episode engine; returns its statistics. In training, transitions go to `replay`
    with `utd_ratio` learner updates each."""
    engine = EpisodeEngine(profile, record=replay is not None)
    engine.start_episode(episode_id, warmup=warmup)
    scale = np.asarray(profile.max_delta, np.float32)
    obs, info = env.reset(seed=seed)
    if human is not None:
        human.reset(info)
    stats = {'seed': seed, 'updates': 0, 'lateral_mm': 0.0, 'gate_actor': 0, 'gate_reference': 0}
    n, terminated, truncated = 0, False, False
    while True:
        n += 1
        now = n * profile.dt  # the simulator's clock: the engine never waits on it
        if terminated or truncated:
            engine.end_episode(bool(info['success']), final_step=n, terminated=terminated, now=now)
        driving = human is not None and not (terminated or truncated) and human.wants_control(info)
        engine.observe(n, obs['proprio'][:len(profile.joint_names)], now, critical=info['critical_phase'],
                       human=human.act(obs, info) if driving else None)
        if engine.wants_inputs(now) or engine.wants_final_state():
            x, ref = inputs(obs, env.instruction, info)
            if engine.wants_actor_chunk(now):
                rows = engine.decision_reference(n, ref)
                if cfg.ablation == 'noise_only':
                    noise = np.random.default_rng(seed * 1000 + n - 1).normal(0, cfg.actor_std, (engine.C, scale.size))
                    engine.add_actor_chunk(n, rows + (noise * scale if train else 0.0), now)
                elif learner is not None:
                    chunk = learner.select_chunk(x, rows, explore=train, generator=generator).numpy()
                    if cfg.critic_gate and not warmup:
                        chunk = gated_chunk(learner, x, rows, chunk, cfg.gate_margin, stats)
                    engine.add_actor_chunk(n, chunk, now)
            engine.add_inputs(n, x, ref, now)
        for transition in engine.take()[1]:
            replay.add(transition)
            if learner is not None and not warmup and len(replay) >= cfg.batch_size:
                for _ in range(cfg.utd_ratio):
                    learner.update(learner.prepare(replay.sample(cfg.batch_size, learner.generator)))
                    stats['updates'] += 1
        if terminated or truncated:
            break
        action = engine.pending_action()
        if engine.episode.phase.active:
            stats['lateral_mm'] += 1000.0 * float(np.hypot(action[0], action[1]))
        obs, _, terminated, truncated, info = step_robot(env, engine)
    episode = engine.episode.stats
    stats.update(steps=episode.steps, critical_steps=episode.critical_steps,
                 human_steps=episode.steps_by_source['human'], hold_steps=episode.steps_by_source['hold'],
                 actor_chunks=episode.chunks_by_source['actor'], success=bool(info['success']),
                 intervened=episode.intervention)
    return stats


def gated_chunk(learner, x, ref, chunk, margin: float, stats: dict) -> np.ndarray:
    """The actor's `chunk` if the critic values the actor's mean chunk above the reference `ref` by `margin`, else
    the reference."""
    mean = learner.select_chunk(x, ref).numpy()
    q_actor, q_ref = learner.chunk_values(x, np.stack([mean, ref])).tolist()
    if q_actor > q_ref + margin:
        stats['gate_actor'] += 1
        return chunk
    stats['gate_reference'] += 1
    return ref


def evaluate(env, inputs, learner, cfg, profile, episodes, first_seed: int = EVAL_SEED) -> dict:
    """Noise-free episodes on the held-out seeds from `first_seed`: success rate, mean (critical-phase) steps, and
    the mean horizontal move commanded per critical-phase step in mm (a policy that shakes the peg against the rim
    at the per-step limit reads high)."""
    results = [run_episode(env, inputs, learner, cfg, profile, first_seed + i, train=False, warmup=False)
               for i in range(episodes)]
    return {'success_rate': float(np.mean([r['success'] for r in results])),
            'gate_actor_fraction': gate_fraction(results),
            'mean_critical_steps': float(np.mean([r['critical_steps'] for r in results])),
            'mean_steps': float(np.mean([r['steps'] for r in results])),
            'lateral_mm_per_step': float(sum(r['lateral_mm'] for r in results)
                                         / max(1, sum(r['critical_steps'] for r in results)))}


def gate_fraction(episodes: list[dict]) -> float | None:
    """The fraction of critic-gated decisions that chose the actor (None without the gate)."""
    actor, reference = (sum(e.get(k, 0) for e in episodes) for k in ('gate_actor', 'gate_reference'))
    return actor / (actor + reference) if actor + reference else None


def lowest_rolling_success(episodes: list[dict], after: int, window: int = 20) -> float | None:
    """The lowest training success rate over `window` consecutive episodes from episode `after` on."""
    success = np.array([e['success'] for e in episodes[after:]], float)
    if len(success) < window:
        return None
    return float(np.convolve(success, np.ones(window) / window, mode='valid').min())


def plot_curve(history, base, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    eps = [h['episode'] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(eps, [h['success_rate'] for h in history], 'o-', label='RLT (noise-free eval)')
    ax1.axhline(base['success_rate'], color='gray', ls='--', label='base VLA')
    ax1.set(xlabel='online episodes', ylabel='success rate', ylim=(0, 1.02), title=title)
    ax2.plot(eps, [h['mean_critical_steps'] for h in history], 'o-', label='RLT')
    ax2.axhline(base['mean_critical_steps'], color='gray', ls='--', label='base VLA')
    ax2.set(xlabel='online episodes', ylabel='mean critical-phase steps')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: RLTTrainConfig) -> dict:
    cfg = apply_ablation(cfg)
    profile = load_profile(cfg)
    setup_torch(cfg.threads, cfg.seed)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    vla_spec = BackboneSpec.parse(cfg.vla, profile.name)
    token_dir = Path(cfg.token or default_models_dir(profile.name) / 'rl_token')
    vla = load_backbone(vla_spec)
    check_backbone(vla, profile, vla_spec)
    token = RLTokenModel.load(token_dir)
    encoder = frames = None
    if cfg.ablation == 'image_encoder':
        encoder = ImageEncoder(cameras=len(WRIST_CAMERAS), size=cfg.image_size)
        frames = FrameStore((len(WRIST_CAMERAS), cfg.image_size, cfg.image_size, 3), path=out / 'frames.bin')
    inputs = FrozenPolicyInputs(vla, token, ProprioNormalization.from_vla_checkpoint(vla_spec),
                                use_token=cfg.ablation not in ('residual', 'image_encoder'),
                                oracle=cfg.ablation == 'oracle_offset', oracle_noise_mm=cfg.oracle_noise_mm,
                                frames=frames)
    env = make_env(profile)

    learner = None
    if cfg.ablation != 'noise_only':
        state_dim = inputs.state_dim if encoder is None else encoder.feature_dim + inputs.norm.dim
        actor_cfg = profile.actor_config(state_dim, hidden=cfg.hidden, std=cfg.actor_std,
                                         use_reference=cfg.ablation != 'no_reference',
                                         residual=cfg.residual_scale if cfg.ablation == 'residual' else 0.0,
                                         start_at_reference=cfg.actor_start_at_reference
                                         and cfg.ablation not in ('no_reference', 'residual'))
        learner = RLTLearner(actor_cfg, TD3Config(
            gamma=cfg.gamma, beta=cfg.beta, ref_dropout=cfg.ref_dropout, actor_lr=cfg.actor_lr,
            target_noise=cfg.target_noise, noise_clip=2.5 * cfg.target_noise,
            critic_lr=cfg.critic_lr, critic_hidden=cfg.hidden, critic_layer_norm=cfg.critic_layer_norm,
            critic_only_updates=cfg.critic_only_updates,
            batch_size=cfg.batch_size, utd_ratio=cfg.utd_ratio), seed=cfg.seed, encoder=encoder, frames=frames,
            compile=cfg.compile)
    # Flushed to the OS per transition (a crash of this process loses none); fsync'ed every 100.
    replay = ReplayBuffer(inputs.state_dim, profile.actor_chunk_len, profile.action_dim, path=out / 'replay',
                          fsync_every=100,
                          prior_fraction=cfg.demo_fraction)
    if cfg.demo_replay and learner is not None:
        meta = check_demo_replay(cfg.demo_replay, vla_spec.path, token_dir, profile.actor_chunk_len, profile.stride)
        print(f'prior data: {replay.load_prior(cfg.demo_replay)} transitions from {meta["episodes"]} demonstrations')
    human = SimulatedHuman(rate=cfg.intervention_rate, seed=cfg.seed, profile=profile)

    # Resume: the learner, counters and evaluation history from the checkpoint; the replay from its log.
    state = {'episode': 0, 'history': [], 'episodes': [], 'best': -1.0}
    ckpt, previous = out / 'checkpoint.pt', out / 'checkpoint.prev.pt'
    saved = None
    for path in (ckpt, previous):  # the newest whole checkpoint; a corrupt one falls back to the one before
        try:
            saved = torch.load(path, weights_only=False) if path.exists() else None
        except Exception as err:  # noqa: BLE001 -- any unreadable file: say so and take the previous one
            print(f'checkpoint {path} is unreadable ({type(err).__name__}: {err}); trying the one before')
        if saved is not None:
            break
    if saved is not None:
        state = saved['state']
        if learner is not None:
            learner.load_state_dict(saved['learner'])
        human.rng.bit_generator.state = saved['human_rng']
        print(f'resumed at episode {state["episode"]} with {len(replay)} transitions in the replay')
    def evaluate_base(name, episodes, first_seed):  # the frozen VLA alone, once per output folder
        path = out / name
        if not path.exists():
            path.write_text(json.dumps(evaluate(env, inputs, None, replace(cfg, ablation='rlt'), profile, episodes,
                                                first_seed)))
        return json.loads(path.read_text())

    base = evaluate_base('base_vla_eval.json', cfg.eval_episodes, EVAL_SEED)
    print(f'base VLA (noise-free, {cfg.eval_episodes} episodes): {base}')

    def checkpoint():  # atomic and fsync'ed; the one before is kept as the fallback
        buffer = io.BytesIO()
        torch.save({'state': state, 'learner': learner.state_dict() if learner else None,
                    'human_rng': human.rng.bit_generator.state}, buffer)
        atomic_write(ckpt, buffer.getvalue(), keep_previous=previous)

    writer = SummaryWriter(str(out / 'tensorboard'))
    start = time.time()
    if learner is not None and replay.prior is not None and learner.num_updates == 0:
        for _ in tqdm(range(cfg.pretrain_updates), desc='learner on the demonstrations'):
            learner.update(learner.prepare(replay.sample(cfg.batch_size, learner.generator)))
    bar = tqdm(range(state['episode'], cfg.episodes), initial=state['episode'], total=cfg.episodes, desc='RLT')
    for episode in bar:
        warmup = episode < cfg.warmup_episodes
        began = time.perf_counter()
        stats = run_episode(env, inputs, learner, cfg, profile, cfg.seed * 100_000 + episode, train=True,
                            warmup=warmup,
                            replay=replay, human=human, episode_id=episode, generator=learner.generator
                            if learner else None)
        stats['wall_s'] = time.perf_counter() - began
        state['episodes'].append({'episode': episode, **stats})
        state['episode'] = episode + 1
        recent = state['episodes'][-20:]
        writer.add_scalar('charts/train_success', stats['success'], episode)
        writer.add_scalar('charts/critical_steps', stats['critical_steps'], episode)
        if learner and learner.metrics:
            for key, value in learner.scalar_metrics().items():
                writer.add_scalar(key, value, episode)
        bar.set_postfix(success=f'{np.mean([e["success"] for e in recent]):.2f}', replay=len(replay),
                        human=sum(e['intervened'] for e in state['episodes']))
        if (episode + 1) % cfg.eval_every == 0 or episode + 1 == cfg.episodes:
            result = evaluate(env, inputs, learner, cfg, profile, cfg.eval_episodes)
            state['history'].append({'episode': episode + 1, **result})
            writer.add_scalar('eval/success_rate', result['success_rate'], episode + 1)
            writer.add_scalar('eval/mean_critical_steps', result['mean_critical_steps'], episode + 1)
            tqdm.write(f'episode {episode + 1}: eval {result}')
            if learner and result['success_rate'] >= state['best']:
                state['best'] = result['success_rate']
                save_actor(learner.actor, out / 'best_actor.safetensors')
                if encoder is not None:  # the image_encoder ablation's actor acts on this encoder's features
                    torch.save(encoder.state_dict(), out / 'best_encoder.pt')
            checkpoint()
        elif (episode + 1) % 10 == 0:
            checkpoint()
    replay.close()

    if learner and (out / 'best_actor.safetensors').exists():
        learner.actor = load_actor(out / 'best_actor.safetensors')
        if encoder is not None:
            encoder.load_state_dict(torch.load(out / 'best_encoder.pt'))
    final = base_final = None
    if cfg.final_eval_episodes:
        final = evaluate(env, inputs, learner, cfg, profile, cfg.final_eval_episodes, FINAL_EVAL_SEED)
        base_final = evaluate_base('base_vla_final_eval.json', cfg.final_eval_episodes, FINAL_EVAL_SEED)
    if frames is not None:
        frames.close()
    env_steps = sum(e['steps'] for e in state['episodes'])
    successes = sum(e['success'] for e in state['episodes'])
    summary = {
        'command': 'python -m rlt_train.train_rlt ' + shlex.join(sys.argv[1:]), 'config': asdict(cfg),
        'robot_profile': {'name': profile.name, 'hash': profile.hash},
        'base_vla': base, 'final_eval': final, 'base_vla_final_eval': base_final, 'history': state['history'],
        'online_episodes': state['episode'], 'interventions': sum(e['intervened'] for e in state['episodes']),
        'train_success_rate': successes / max(1, len(state['episodes'])),
        'successes_per_sim_minute': successes / max(1e-9, env_steps / profile.control_hz / 60),
        'episodes_to_90': next((h['episode'] for h in state['history'] if h['success_rate'] >= 0.9), None),
        'lowest_rolling20_after_warmup': lowest_rolling_success(state['episodes'], cfg.warmup_episodes),
        'gate_actor_fraction_in_training': gate_fraction(state['episodes'][cfg.warmup_episodes:]),
        'wall_minutes_this_run': (time.time() - start) / 60,
        'training_wall_minutes': sum(e.get('wall_s', 0.0) for e in state['episodes']) / 60,
        'learner_updates': learner.num_updates if learner else 0,
    }
    (out / 'summary.json').write_text(json.dumps(summary, indent=1))
    (out / 'episodes.json').write_text(json.dumps(state['episodes']))
    plot_curve(state['history'], base, out / 'learning_curve.png', f'RLT ({cfg.ablation}, seed {cfg.seed})')
    writer.close()
    print(json.dumps({k: summary[k] for k in ('base_vla', 'final_eval', 'base_vla_final_eval', 'episodes_to_90',
                                              'lowest_rolling20_after_warmup', 'successes_per_sim_minute',
                                              'interventions')}, indent=1))
    return summary


def main(argv=None):
    train(parse_config(RLTTrainConfig, argv, prog='python -m rlt_train.train_rlt'))


if __name__ == '__main__':
    main()
