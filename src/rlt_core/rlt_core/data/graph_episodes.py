"""Episodes assembled from what the node graph publishes, frame by frame, for the LeRobot dataset.

The graph recorder (`rlt_nodes.recorder`) feeds an `EpisodeAssembler` the messages it receives, in arrival order:
joint states, camera images, executed and reference chunks and episode events. The assembler turns them into
finished episodes, one frame per control step, each the observation before an action and what that action did, as
the simulator's demonstrations are recorded. The control steps are the joint states the arbiter takes as steps at
the profile's control rate (`rlt_core.control.steps.ControlSteps`); the others, from a driver faster than the
control rate, are not frames.

- ``observation.state``: the joint positions then velocities of the joint state o_n (the profile's joint order);
  ``observation.stamp_ns`` its header stamp (the key into the MCAP log and the graph's other topics).
- ``observation.images.<camera>``: each camera's image stamped like o_n, or the nearest one in time (within
  `image_tolerance_ns`; beyond it the nearest is still taken and the episode's ``images_beyond_tolerance`` counts
  it), as the VLA sees it: RGB at the camera's size in the profile (`rlt_core.data.images`).
- ``action``: the action a_n executed between o_n and o_{n+1}, in robot units (a joint delta per joint), from
  ``rlt/executed_chunk``. A chunk is stamped with the observation it was decided on and carries the step_index of
  the arbiter's latest observation when it was issued: its row k is the action after o_{step_index + k} (a chunk
  decided late starts after the hold steps it waited for; a step_index of 0, from a publisher that does not set
  it, starts it at the observation of its stamp). It is in force until a newer chunk of the episode (a later
  start, or the same start and a higher chunk_index), the chunk's rows run out (the robot holds: zero), or, for a
  human chunk, the operator lets go (the first ``TAKEOVER_END`` stamped after the chunk's observation: zero from
  the observation its step_index names, the arbiter's latest when it let go). Stamps and step indices, not
  arrival order, decide: topics may arrive out of order. This is what the arbiter's engine records as the
  transitions' actions.
- ``action_source``: 0 VLA, 1 actor, 2 human: the source of that chunk (of the last chunk while holding; 0 before
  any). ``intervention``: the action is a human's (a human chunk in force, not a hold after it).
- ``reference_chunk``: the VLA's reference chunk (H x A, row-major, flattened) for o_n when the VLA computed one
  (``has_reference_chunk``; zeros otherwise).
- ``critical_phase``: the phase at o_n, from the PHASE_* events: a task's (the simulator's) switch counts from the
  observation its step_index names, an operator's (detail ``human``) from the one after it.
- ``next.reward``, ``next.done``, ``next.success``: 1 / true on the last frame of a successful episode.

Episodes are delimited by ``episode/events``: EPISODE_START and EPISODE_END of the episode source (``any``: every
such event; ``operator``: only the arbiter's operator episodes, whose details begin with ``operator``). A
simulator's episode begins with the first control step stamped after its start; an operator's with the one stamped
as it (the arbiter starts it on that step and stamps it so), whether that joint state arrives before the event or
after it. EPISODE_END names its final observation o_k (step_index): frames o_1 .. o_{k-1} are the episode, o_k is
what its last action led to. Its ``success`` is the episode's label. A START while an episode is open ends that
one at its latest observation, not a success and truncated (an emergency stop ends an episode without an
EPISODE_END). An episode whose start, any of whose control steps o_1 .. o_k, or any of whose executed chunks (the
arbiter numbers them 0, 1, 2, ...; its EPISODE_END says how many, else the last one is not checked) the recorder
did not receive is not recorded (`ignored` counts them): it would be misaligned with its step indices or hold
actions it did not execute.

No ROS here: the node converts messages into the calls below.
"""

from __future__ import annotations

import bisect
import dataclasses

import numpy as np

from rlt_core.control.profile import RobotProfile
from rlt_core.control.steps import ControlSteps
from rlt_core.data.lerobot import Episode, encode_png, episode_stats
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA

EPISODE_SOURCES = ("any", "operator")
SOURCE_NAMES = {SOURCE_VLA: "vla", SOURCE_ACTOR: "actor", SOURCE_HUMAN: "human"}


def recorder_features(profile: RobotProfile) -> dict:
    """The graph recorder's columns beyond the standard ones (`rlt_core.data.lerobot.profile_features` extras)."""
    scalar = {"shape": [1], "names": None}
    return {
        "observation.stamp_ns": {"dtype": "int64", **scalar},
        "action_source": {"dtype": "int64", **scalar},
        "intervention": {"dtype": "bool", **scalar},
        "reference_chunk": {
            "dtype": "float32",
            "shape": [profile.vla_chunk_len * profile.action_dim],
            "names": [f"{t}.{a}" for t in range(profile.vla_chunk_len) for a in profile.action_names],
        },
        "has_reference_chunk": {"dtype": "bool", **scalar},
    }


@dataclasses.dataclass
class ExecutedChunk:
    stamp: int
    """Stamp of the observation it was decided on."""
    chunk_index: int
    source: int
    rows: np.ndarray
    """(C, A) the executed actions."""
    step_index: int = 0
    """Row 0 is the action after o_{step_index} of the episode (0: after the observation of `stamp`)."""
    episode_id: int | None = None
    """The graph episode it was executed in (None: not known, its chunk indices are not checked)."""


@dataclasses.dataclass
class RecordedEpisode:
    """A finished episode: frames o_1 .. o_T with their images (raw RGB), ready to encode and write."""

    episode_id: int
    images: dict[str, list[np.ndarray]]
    """(H, W, 3) uint8 per frame, per camera."""
    frames: dict[str, np.ndarray]
    """(T, ...) per feature: observation.state, action, next.*, critical_phase and the recorder's columns."""
    metadata: dict
    """success, truncated, the operator's label, counts of what was approximated."""

    @property
    def length(self) -> int:
        return len(self.frames["action"])

    def to_dataset_episode(self, instruction: str, fps: int, png_level: int = 1) -> Episode:
        """The episode for `DemoWriter`: images PNG-encoded, statistics computed."""
        index_columns = {
            "frame_index": np.arange(self.length),
            "timestamp": np.arange(self.length, dtype=np.float32) / np.float32(fps),
        }
        raw = {camera: np.stack(images) for camera, images in self.images.items()}
        return Episode(
            images={camera: [encode_png(image, png_level) for image in stack] for camera, stack in raw.items()},
            frames=self.frames,
            instruction=instruction,
            metadata=self.metadata,
            stats=episode_stats({**self.frames, **index_columns}, raw),
        )


@dataclasses.dataclass
class _OpenEpisode:
    episode_id: int
    start_stamp: int
    from_operator: bool
    stamps: list = dataclasses.field(default_factory=list)
    states: list = dataclasses.field(default_factory=list)
    phase_events: list = dataclasses.field(default_factory=list)
    """(step the switch counts from, critical)."""
    releases: list = dataclasses.field(default_factory=list)
    """(stamp, step_index) of its TAKEOVER_END events: the operator let go."""
    label: bool | None = None
    end_step: int | None = None
    chunk_count: int = 0
    """How many chunks the arbiter executed in it, by its EPISODE_END (0: not counted)."""
    success: bool = False
    truncated: bool = False
    ended_at: float | None = None
    """Wall time (s) its end arrived: it is written once `settle_s` later (late images and chunks)."""


class EpisodeAssembler:
    """Frames of the graph's episodes from its messages; see the module docstring for what each column holds."""

    def __init__(self, profile: RobotProfile, image_tolerance_ns: int, episode_source: str = "any",
                 settle_s: float = 0.5, history_ns: int = 10_000_000_000):
        if episode_source not in EPISODE_SOURCES:
            raise ValueError(f"episode_source must be one of {EPISODE_SOURCES}, got {episode_source!r}")
        self.profile = profile
        self.cameras = profile.camera_names
        self.image_tolerance_ns = int(image_tolerance_ns)
        self.episode_source = episode_source
        self.settle_s = settle_s
        self.history_ns = history_ns
        """Messages older than this before the oldest open episode's first frame are forgotten."""
        self.control_steps = ControlSteps(profile.control_hz)
        self.recent_joint_states: list[tuple[int, np.ndarray]] = []
        """The latest control steps' (stamp, state)."""
        self.images: dict[str, list[tuple[int, np.ndarray]]] = {c: [] for c in self.cameras}
        self.chunks: list[ExecutedChunk] = []
        self.references: dict[int, np.ndarray] = {}
        self.open: list[_OpenEpisode] = []
        """Episodes recording or settling, oldest first; only the last one takes new frames."""
        self.ignored: dict[str, int] = {}
        """Counts of what was not recorded, by reason."""

    # --- inputs ---

    def joint_state(self, stamp: int, position, velocity) -> None:
        if not self.control_steps.admit(stamp):
            return  # between control steps
        state = np.concatenate([np.asarray(position, np.float32), np.asarray(velocity, np.float32)])
        self.recent_joint_states.append((int(stamp), state))
        del self.recent_joint_states[:-10]
        for episode in reversed(self.open):  # the latest episode it can belong to
            if stamp <= episode.start_stamp:
                continue
            collecting = episode.ended_at is None or len(episode.stamps) < (episode.end_step or 0)
            if collecting and (not episode.stamps or stamp > episode.stamps[-1]):
                episode.stamps.append(int(stamp))
                episode.states.append(state)
            return

    def image(self, camera: str, stamp: int, rgb: np.ndarray) -> None:
        if camera in self.images:
            bisect.insort(self.images[camera], (int(stamp), rgb), key=lambda e: e[0])

    def executed_chunk(self, stamp: int, chunk_index: int, source: int, rows: np.ndarray, step_index: int = 0,
                       episode_id: int | None = None) -> None:
        chunk = ExecutedChunk(int(stamp), int(chunk_index), int(source), np.asarray(rows, np.float32),
                              int(step_index), None if episode_id is None else int(episode_id))
        bisect.insort(self.chunks, chunk, key=lambda c: (c.stamp, c.chunk_index))

    def reference_chunk(self, stamp: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float32)
        if rows.shape != (self.profile.vla_chunk_len, self.profile.action_dim):
            self._ignore("reference chunks of another shape than the profile's H x A")
            return
        self.references[int(stamp)] = rows

    def start(self, episode_id: int, stamp: int, detail: str) -> bool:
        """EPISODE_START; returns whether the episode is recorded (it is of the episode source)."""
        from_operator = detail.startswith("operator")
        if self.episode_source == "operator" and not from_operator:
            return False
        current = self._recording()
        if current is not None:
            current.end_step = len(current.stamps)  # its latest observation is the final one
            current.success, current.truncated = False, True
            current.ended_at = -np.inf
        episode = _OpenEpisode(int(episode_id), int(stamp), from_operator)
        if from_operator:  # the arbiter stamps it with o_1's stamp; o_1 may come before this event or after it
            taken = current.stamps[-1] if current is not None and current.stamps else -1
            episode.start_stamp = max(int(stamp) - 1, taken)
            for s, state in self.recent_joint_states:  # o_1 and the steps after it, received before this event
                if s > episode.start_stamp:
                    episode.stamps.append(s)
                    episode.states.append(state)
        self.open.append(episode)
        return True

    def end(self, episode_id: int, step_index: int, success: bool, detail: str, now: float,
            chunk_count: int = 0) -> None:
        """EPISODE_END: o_{step_index} is the final observation; the arbiter's executed `chunk_count` chunks in the
        episode (0: not counted)."""
        if self.episode_source == "operator" and not detail.startswith("operator"):
            return
        episode = self._recording()
        if episode is None or episode.episode_id != int(episode_id):
            self._ignore("episode ends without a start seen by the recorder")
            return
        episode.end_step = int(step_index) if step_index > 0 else len(episode.stamps)
        episode.success = bool(success)
        episode.chunk_count = int(chunk_count)
        episode.ended_at = now

    def phase(self, critical: bool, step_index: int, by_human: bool) -> None:
        episode = self._recording()
        if episode is not None:
            episode.phase_events.append((int(step_index) + int(by_human), bool(critical)))

    def label(self, success: bool) -> None:
        episode = self._recording()
        if episode is not None:
            episode.label = bool(success)

    def takeover_end(self, stamp: int, step_index: int) -> None:
        """The operator let go at `stamp`, the arbiter's latest observation being o_{step_index}: the human chunk in
        force then ends (the robot holds until the next decision). Applied when the episode is assembled: the
        last human chunk may arrive after this event."""
        episode = self._recording()
        if episode is not None:
            bisect.insort(episode.releases, (int(stamp), int(step_index)))

    # --- outputs ---

    def take_finished(self, now: float) -> list[RecordedEpisode]:
        """Episodes that ended at least `settle_s` ago (or were cut short by a new start), oldest first."""
        done = []
        while self.open and self.open[0].ended_at is not None and now - self.open[0].ended_at >= self.settle_s:
            episode = self.open.pop(0)
            recorded = self._assemble(episode)
            if recorded is not None:
                done.append(recorded)
        self._forget()
        return done

    def close(self) -> list[RecordedEpisode]:
        """At shutdown: the episodes that ended (the one still recording is dropped: it has no end)."""
        done = []
        for episode in self.open:
            if episode.ended_at is not None:
                recorded = self._assemble(episode)
                if recorded is not None:
                    done.append(recorded)
        self.open = []
        return done

    # --- assembly ---

    def _recording(self) -> _OpenEpisode | None:
        if self.open and self.open[-1].ended_at is None:
            return self.open[-1]
        return None

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    def _assemble(self, episode: _OpenEpisode) -> RecordedEpisode | None:
        if len(episode.stamps) < (episode.end_step or 0):  # o_1 .. o_k did not all arrive
            self._ignore("episodes with joint states the recorder did not receive")
            return None
        indices = sorted({c.chunk_index for c in self.chunks if c.episode_id == episode.episode_id})
        if indices != list(range(max(len(indices), episode.chunk_count))):  # the arbiter numbers them 0, 1, 2, ...
            self._ignore("episodes with executed chunks the recorder did not receive")
            return None
        length = min(len(episode.stamps), max(episode.end_step or 0, 1) - 1)
        if length < 1:
            self._ignore("episodes without a complete step")
            return None
        stamps = episode.stamps[:length]
        images, beyond = {}, 0
        for camera in self.cameras:
            if not self.images[camera]:
                self._ignore(f"episodes without an image from camera {camera}")
                return None
            chosen = [self._nearest_image(camera, s) for s in stamps]
            beyond += sum(offset > self.image_tolerance_ns for offset, _ in chosen)
            images[camera] = [image for _, image in chosen]
        actions, sources, driven = self._actions(stamps, episode.releases)
        intervention = driven & (sources == SOURCE_HUMAN)
        critical = self._phases(episode, length)
        has_reference = np.array([s in self.references for s in stamps])
        zeros = np.zeros((self.profile.vla_chunk_len, self.profile.action_dim), np.float32)
        references = np.stack([self.references.get(s, zeros).reshape(-1) for s in stamps])
        last = np.arange(length) == length - 1
        success = bool(episode.success)
        frames = {
            "observation.state": np.stack(episode.states[:length]),
            "action": actions,
            "next.reward": (last & success).astype(np.float32),
            "next.done": last,
            "next.success": last & success,
            "critical_phase": critical,
            "observation.stamp_ns": np.asarray(stamps, np.int64),
            "action_source": sources,
            "intervention": intervention,
            "reference_chunk": references,
            "has_reference_chunk": has_reference,
        }
        metadata = {
            "success": success,
            "truncated": bool(episode.truncated),
            "graph_episode_id": episode.episode_id,
            "operator_label": episode.label,
            "start_stamp_ns": stamps[0],
            "intervention": bool(intervention.any()),
            "steps_by_source": {
                **{name: int((driven & (sources == source)).sum()) for source, name in SOURCE_NAMES.items()},
                "hold": int((~driven).sum()),
            },
            "critical_steps": int(critical.sum()),
            "images_beyond_tolerance": int(beyond),
        }
        return RecordedEpisode(episode.episode_id, images, frames, metadata)

    def _nearest_image(self, camera: str, stamp: int) -> tuple[int, np.ndarray]:
        entries = self.images[camera]
        i = bisect.bisect_left(entries, stamp, key=lambda e: e[0])
        near = [entries[j] for j in (i - 1, i) if 0 <= j < len(entries)]
        offset, image = min(((abs(s - stamp), image) for s, image in near), key=lambda e: e[0])
        return offset, image

    def _actions(self, stamps: list[int], releases: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The action after each frame, its source and whether a chunk was in force (see the module docstring)."""
        actions = np.zeros((len(stamps), self.profile.action_dim), np.float32)
        sources = np.full(len(stamps), SOURCE_VLA, np.int64)
        driven = np.zeros(len(stamps), bool)
        position = {s: n for n, s in enumerate(stamps)}
        starts = sorted(((max(c.step_index - 1, position[c.stamp]), c.chunk_index, c)
                         for c in self.chunks if c.stamp in position), key=lambda e: e[:2])
        last_source, in_force, first, i = SOURCE_VLA, None, 0, 0
        for n in range(len(stamps)):
            while i < len(starts) and starts[i][0] <= n:  # by (start, chunk_index): the last one wins
                first, _, in_force = starts[i]
                i += 1
            if in_force is not None:
                k = n - first
                if k < len(in_force.rows) and not self._released(in_force, n, releases):
                    actions[n], driven[n] = in_force.rows[k], True
                last_source = in_force.source
            sources[n] = last_source
        return actions, sources, driven

    @staticmethod
    def _released(chunk: ExecutedChunk, n: int, releases: list) -> bool:
        """Whether the operator let go of human `chunk` by frame n (0-based): the first release stamped at or after
        the chunk's observation holds the robot from the observation it names on."""
        if chunk.source != SOURCE_HUMAN:
            return False
        i = bisect.bisect_left(releases, (chunk.stamp, -1))
        return i < len(releases) and n + 1 >= releases[i][1]

    def _phases(self, episode: _OpenEpisode, length: int) -> np.ndarray:
        critical = np.zeros(length, bool)
        for step, value in sorted(episode.phase_events, key=lambda e: e[0]):
            critical[max(step, 1) - 1:] = value
        return critical

    def _forget(self) -> None:
        """Drop images, chunks and references no open episode can use."""
        if self.open and self.open[0].stamps:
            horizon = self.open[0].stamps[0] - self.image_tolerance_ns
        elif self.recent_joint_states:
            horizon = self.recent_joint_states[-1][0] - self.history_ns
        else:
            return
        for camera in self.cameras:
            entries = self.images[camera]
            keep = max(0, bisect.bisect_left(entries, horizon, key=lambda e: e[0]) - 1)
            del entries[:keep]
        self.chunks = [c for c in self.chunks if c.stamp >= horizon]
        self.references = {s: r for s, r in self.references.items() if s >= horizon}
