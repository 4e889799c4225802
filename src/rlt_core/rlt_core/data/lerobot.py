"""Episodes on disk in LeRobot's dataset format v3.0: a writer and a small reader, for any robot profile.

The features follow the robot: one image column per camera, the joint positions and velocities, the action
(one joint delta per joint), reward, done, success and critical-phase flags, then whatever extra columns a
producer adds (the simulator's ground truth, the graph recorder's action source and reference chunk), then
LeRobot's index columns. `dataset_features` builds them; `DemoWriter` writes episodes of any such features.

Layout under the dataset root (the LeRobot v3.0 layout, images embedded as PNG)::

    meta/info.json                                  format version, fps, features, counts, path templates
    meta/stats.json                                 per-feature min/max/mean/std/count over all frames
    meta/tasks.parquet                              task (the instruction) -> task_index
    meta/episodes/chunk-000/file-000.parquet        one row per episode (length, success, seed, ...)
    meta/rlt_recording.json                         how the episodes were made (rlt's own; other tools ignore it)
    data/chunk-{c:03d}/file-{f:03d}.parquet         one file per episode, one row per frame

Each data file holds one episode (episode ``i`` is chunk ``i // 1000``, file ``i % 1000``). It is
written to a temporary name and renamed, and it carries its own episode-metadata row in the parquet
footer, so the data files alone are the record: the ``meta/`` files are derived from them and are
rewritten periodically and when the writer closes. A writer opened on an interrupted dataset
deletes leftover temporary files and rebuilds ``meta/`` from the complete data files.

Images are dtype ``"image"`` features stored like Hugging Face ``datasets``' ``Image()``: a struct
``{"bytes": PNG, "path": null}`` per frame. PNG is lossless (sub-millimetre cues survive) and needs
no video encoder. Vectors are fixed-size lists, scalars plain columns, as ``datasets`` stores them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from rlt_core.control.profile import RobotProfile

CODEBASE_VERSION = "v3.0"
"""LeRobot dataset format version written to ``meta/info.json``."""

CHUNKS_SIZE = 1000
"""Files per chunk directory (LeRobot's default)."""

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
RECORDING_PATH = "meta/rlt_recording.json"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"

INDEX_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""LeRobot's index columns, last in every data file; the writer fills them."""

EPISODE_FOOTER_KEY = b"rlt_episode"
"""Parquet footer key under which each data file keeps its episode-metadata row (JSON)."""

_IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def image_key(camera: str) -> str:
    """The feature key of a camera's images."""
    return f"observation.images.{camera}"


def dataset_features(joint_names, cameras, extra: dict | None = None, action_names=None) -> dict:
    """The ``features`` of ``meta/info.json``, in column order: dtype, shape and names.

    `joint_names` give the state (positions then velocities), `action_names` the action's dimensions (a delta
    each; default: one per joint);
    `cameras` (`Camera`s: name, width, height) an RGB image column each; `extra` features follow
    ``critical_phase``, before the index columns.
    """
    scalar = {"shape": [1], "names": None}
    action_names = joint_names if action_names is None else action_names
    features = {
        image_key(c.name): {"dtype": "image", "shape": [c.height, c.width, 3], "names": ["height", "width", "channels"]}
        for c in cameras
    }
    features.update(
        {
            "observation.state": {
                "dtype": "float32",
                "shape": [2 * len(joint_names)],
                "names": [f"{j}.pos" for j in joint_names] + [f"{j}.vel" for j in joint_names],
            },
            "action": {"dtype": "float32", "shape": [len(action_names)], "names": [f"{a}.delta" for a in action_names]},
            "next.reward": {"dtype": "float32", **scalar},
            "next.done": {"dtype": "bool", **scalar},
            "next.success": {"dtype": "bool", **scalar},
            "critical_phase": {"dtype": "bool", **scalar},
            **(extra or {}),
            "timestamp": {"dtype": "float32", **scalar},
            "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar},
            "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar},
        }
    )
    return features


def profile_features(profile: RobotProfile, extra: dict | None = None) -> dict:
    """`dataset_features` of a robot profile's joints and cameras (every camera stored as RGB)."""
    return dataset_features(profile.joint_names, profile.cameras, extra, profile.action_names)


def _arrow_type(feature: dict) -> pa.DataType:
    if feature["dtype"] == "image":
        return _IMAGE_TYPE
    value = pa.bool_() if feature["dtype"] == "bool" else pa.from_numpy_dtype(np.dtype(feature["dtype"]))
    return value if feature["shape"] == [1] else pa.list_(value, feature["shape"][0])


def _hf_feature(feature: dict) -> dict:
    """A feature as Hugging Face ``datasets`` (4.x) serialises it in a parquet footer."""
    if feature["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": feature["dtype"], "_type": "Value"}
    if feature["shape"] == [1]:
        return value
    return {"feature": value, "length": feature["shape"][0], "_type": "List"}


def data_schema(features: dict) -> pa.Schema:
    """The arrow schema of a data file, with the footer that tells ``datasets`` which columns are images."""
    hf = {"info": {"features": {key: _hf_feature(ft) for key, ft in features.items()}}}
    return pa.schema(
        [pa.field(key, _arrow_type(ft)) for key, ft in features.items()],
        metadata={b"huggingface": json.dumps(hf).encode()},
    )


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) uint8 image (zlib `level` 0-9: 1 is the fastest that compresses)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """An (H, W, 3) uint8 array from PNG bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


# ----- one episode in memory -----


@dataclasses.dataclass
class Episode:
    """One recorded episode: T frames, each the observation before an action and what that action did."""

    images: dict[str, list[bytes]]
    """PNG bytes per camera (key: camera name), T each."""
    frames: dict[str, np.ndarray]
    """(T, ...) per feature key: every feature but the images and the index columns (``observation.state``,
    ``action``, ``next.reward``, ``next.done``, ``next.success``, ``critical_phase`` and the extras)."""
    instruction: str
    """The language instruction (the LeRobot task)."""
    metadata: dict
    """Extra episode-metadata columns (success, seed, demonstrator ...), JSON-serialisable."""
    stats: dict
    """Per-feature statistics of this episode (see `episode_stats`)."""

    @property
    def length(self) -> int:
        return len(self.frames["action"])


def _vector_stats(values: np.ndarray) -> dict:
    values = values.reshape(len(values), -1).astype(np.float64)
    return {
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "count": [len(values)],
    }


def _image_stats(frames: np.ndarray, max_frames: int = 10) -> dict:
    """Per-channel stats in [0, 1], shaped (3, 1, 1) as LeRobot stores them.

    Estimated, as LeRobot does, from a sample: <= `max_frames` frames, every other pixel.
    """
    sample = frames[:: max(1, math.ceil(len(frames) / max_frames)), ::2, ::2]
    pixels = sample.reshape(-1, 3)

    def as_chw(values) -> list:
        return (np.asarray(values, dtype=np.float64) / 255.0).reshape(3, 1, 1).tolist()

    return {
        "min": as_chw(pixels.min(0)),
        "max": as_chw(pixels.max(0)),
        "mean": as_chw(pixels.mean(0, dtype=np.float64)),
        "std": as_chw(pixels.std(0, dtype=np.float64)),
        "count": [len(sample)],
    }


def episode_stats(episode_arrays: dict[str, np.ndarray], raw_images: dict[str, np.ndarray]) -> dict:
    """Statistics of one episode: numeric features from `episode_arrays`, images from uint8 (T, H, W, 3)."""
    stats = {key: _vector_stats(np.asarray(v)) for key, v in episode_arrays.items()}
    stats.update({image_key(camera): _image_stats(frames) for camera, frames in raw_images.items()})
    return stats


def aggregate_stats(per_episode: list[dict]) -> dict:
    """Combine per-episode stats: exact min/max, count-weighted mean and pooled std."""
    out = {}
    for key in per_episode[0] if per_episode else []:
        parts = [s[key] for s in per_episode]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        means = np.array([p["mean"] for p in parts])
        stds = np.array([p["std"] for p in parts])
        weights = (counts / counts.sum()).reshape(-1, *[1] * (means.ndim - 1))
        mean = (weights * means).sum(0)
        var = (weights * (stds**2 + (means - mean) ** 2)).sum(0)
        out[key] = {
            "min": np.min([p["min"] for p in parts], axis=0).tolist(),
            "max": np.max([p["max"] for p in parts], axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(var).tolist(),
            "count": [int(counts.sum())],
        }
    return out


# ----- writer -----


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _atomic_write_table(path: Path, table: pa.Table, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, **kwargs)
    os.replace(tmp, path)


def _data_file_path(episode_index: int) -> str:
    return DATA_PATH.format(chunk_index=episode_index // CHUNKS_SIZE, file_index=episode_index % CHUNKS_SIZE)


def _tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet``: columns task, task_index, with pandas metadata making `task` the index."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
    }  # fmt: skip
    return pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())},
    ).replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


class DemoWriter:
    """Append episodes to a LeRobot v3.0 dataset directory; reopen it to resume.

    `features` are the dataset's columns (`dataset_features`). ``recording`` is a JSON-serialisable
    description of how the episodes are made (written to ``meta/rlt_recording.json``); reopening a
    dataset with a different description or other features raises, so a resumed recording cannot
    silently mix settings. Call `close()` (or use ``with``) to finalize.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        features: dict,
        fps: int,
        recording: dict,
        robot_type: str = "",
        flush_every: int = 50,
    ) -> None:
        if fps <= 0 or int(fps) != fps:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        self.root = Path(root)
        self.fps = int(fps)
        self.robot_type = robot_type
        self.features = json.loads(json.dumps(features))  # normalised as it reads back
        self.schema = data_schema(self.features)
        self.recording = json.loads(json.dumps(recording))  # normalised as it reads back
        self.flush_every = flush_every
        self.episodes: list[dict] = []
        self.tasks: list[str] = []
        self._stats: list[dict] = []
        self._unflushed = 0
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"output {self.root} exists and is not a directory")
        if (self.root / RECORDING_PATH).exists():
            self._resume()
        elif self.root.exists() and any(self.root.iterdir()):
            raise ValueError(f"output {self.root} is a non-empty directory that is not an rlt demo dataset")
        else:
            _atomic_write_json(self.root / RECORDING_PATH, self.recording)
            self.flush()

    # ----- resume -----

    def _resume(self) -> None:
        stored = json.loads((self.root / RECORDING_PATH).read_text())
        if stored != self.recording:
            diff = {
                key: (stored.get(key), self.recording.get(key))
                for key in sorted(set(stored) | set(self.recording))
                if stored.get(key) != self.recording.get(key)
            }
            raise ValueError(
                f"{self.root} was recorded with other settings; (stored, requested): {diff}. "
                "Use the same settings to resume, or a new output directory."
            )
        if (self.root / INFO_PATH).exists():
            stored_features = json.loads((self.root / INFO_PATH).read_text())["features"]
            if stored_features != self.features:
                raise ValueError(
                    f"{self.root} holds other features: {list(stored_features)}, not {list(self.features)}"
                )
        for tmp in self.root.rglob("*.tmp"):
            tmp.unlink()
        index = 0
        while (path := self.root / _data_file_path(index)).exists():
            row = json.loads(pq.read_schema(path).metadata[EPISODE_FOOTER_KEY])
            self._remember(row)
            index += 1
        # Files past a gap cannot come from this writer; a later episode would overwrite them anyway.
        for path in sorted((self.root / "data").glob("*/*.parquet")):
            if _episode_of_data_file(path) >= index:
                path.unlink()
        self.flush()

    def _remember(self, row: dict) -> None:
        stats = row.pop("stats")
        for task in row["tasks"]:
            if task not in self.tasks:
                self.tasks.append(task)
        self.episodes.append(row)
        self._stats.append(stats)

    # ----- append -----

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return self.episodes[-1]["dataset_to_index"] if self.episodes else 0

    def add_episode(self, episode: Episode) -> int:
        """Write `episode` as the next episode; returns its episode_index."""
        index, start, length = self.num_episodes, self.num_frames, episode.length
        if length < 1:
            raise ValueError("an episode needs at least one frame")
        if episode.instruction not in self.tasks:
            self.tasks.append(episode.instruction)
        task_index = self.tasks.index(episode.instruction)
        path = _data_file_path(index)
        row = {
            "episode_index": index,
            "tasks": [episode.instruction],
            "length": length,
            **episode.metadata,
            "data/chunk_index": index // CHUNKS_SIZE,
            "data/file_index": index % CHUNKS_SIZE,
            "dataset_from_index": start,
            "dataset_to_index": start + length,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        frame_index = np.arange(length, dtype=np.int64)
        columns = {
            key: [{"bytes": png, "path": None} for png in pngs] for key, pngs in
            ((image_key(camera), pngs) for camera, pngs in episode.images.items())
        }
        columns.update(episode.frames)
        columns.update(
            {
                "timestamp": (frame_index / self.fps).astype(np.float32),
                "frame_index": frame_index,
                "episode_index": np.full(length, index, dtype=np.int64),
                "index": start + frame_index,
                "task_index": np.full(length, task_index, dtype=np.int64),
            }
        )
        missing = [field.name for field in self.schema if field.name not in columns]
        if missing:
            raise ValueError(f"the episode lacks the features {missing}")
        arrays = []
        for field in self.schema:
            values = columns[field.name]
            if pa.types.is_fixed_size_list(field.type):
                values = np.asarray(values, dtype=field.type.value_type.to_pandas_dtype())
                flat = pa.array(values.reshape(-1), field.type.value_type)
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
            else:
                arrays.append(pa.array(values, field.type))
        metadata = dict(self.schema.metadata)
        metadata[EPISODE_FOOTER_KEY] = json.dumps({**row, "stats": episode.stats}).encode()
        table = pa.Table.from_arrays(arrays, schema=self.schema.with_metadata(metadata))
        images = [key for key, ft in self.features.items() if ft["dtype"] == "image"]
        compression = {name: ("none" if name in images else "snappy") for name in table.column_names}
        _atomic_write_table(self.root / path, table, compression=compression)
        self._remember({**row, "stats": episode.stats})
        self._unflushed += 1
        if self._unflushed >= self.flush_every:
            self.flush()
        return index

    # ----- metadata -----

    def flush(self) -> None:
        """Rewrite ``meta/`` from the episodes written so far (episodes, tasks, stats, then info)."""
        meta = self.root / "meta"
        if self.episodes:
            rows = [
                {**row, **_flatten({"stats": stats})}
                for row, stats in zip(self.episodes, self._stats, strict=True)
            ]
            table = pa.Table.from_pylist(rows)
            _atomic_write_table(self.root / EPISODES_PATH.format(chunk_index=0, file_index=0), table)
        _atomic_write_table(meta / "tasks.parquet", _tasks_table(self.tasks))
        _atomic_write_json(self.root / STATS_PATH, aggregate_stats(self._stats))
        n = self.num_episodes
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": n,
            "total_frames": self.num_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": self.fps,
            "splits": {"train": f"0:{n}"} if n else {},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": self.features,
        }
        _atomic_write_json(self.root / INFO_PATH, info)
        self._unflushed = 0

    def close(self) -> None:
        """Finalize: write all metadata for the episodes recorded so far, drop partial files."""
        self.flush()
        for tmp in (self.root / "data").glob("*/*.tmp"):
            tmp.unlink()

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, name + "/") if isinstance(value, dict) else {name: value})
    return out


def _episode_of_data_file(path: Path) -> int:
    chunk = int(path.parent.name.removeprefix("chunk-"))
    return chunk * CHUNKS_SIZE + int(path.stem.removeprefix("file-"))


def finalize_demos(root: str | os.PathLike) -> int:
    """Rebuild ``meta/`` of an interrupted recording from its complete data files; returns episodes kept."""
    root = Path(root)
    recording = json.loads((root / RECORDING_PATH).read_text())
    info = json.loads((root / INFO_PATH).read_text())
    with DemoWriter(root, info["features"], info["fps"], recording, robot_type=info["robot_type"]) as writer:
        return writer.num_episodes


# ----- reader -----


class DemoDataset:
    """Read a dataset written by `DemoWriter` (any LeRobot v3.0 image dataset of this layout).

    Frames are addressed by the global ``index``; episodes by ``episode_index``. Images stay PNG
    bytes until asked for. Only episodes listed in ``meta/episodes`` are visible, so a dataset whose
    recording was interrupted reads as its finalized prefix (`finalize_demos` recovers the rest).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not (self.root / INFO_PATH).exists():
            raise FileNotFoundError(f"{self.root} has no {INFO_PATH}: not a LeRobot dataset")
        self.info = json.loads((self.root / INFO_PATH).read_text())
        if self.info.get("codebase_version") != CODEBASE_VERSION:
            found = self.info.get("codebase_version")
            raise ValueError(f"expected LeRobot format {CODEBASE_VERSION}, got {found}")
        self.features: dict = self.info["features"]
        self.fps: int = self.info["fps"]
        paths = sorted((self.root / "meta/episodes").glob("*/*.parquet"))
        tables = [pq.read_table(p) for p in paths]
        self.episodes: pa.Table = (
            pa.concat_tables(tables).sort_by("episode_index") if tables else pa.table({"episode_index": []})
        )
        """Episode metadata, one row per episode (a pyarrow Table)."""
        tasks = pq.read_table(self.root / TASKS_PATH).sort_by("task_index")
        self.tasks: list[str] = tasks["task"].to_pylist()
        self.image_keys = [k for k, ft in self.features.items() if ft["dtype"] == "image"]
        self._ends = np.asarray(self.episodes["dataset_to_index"]) if len(self.episodes) else np.zeros(0, int)
        self._cache: tuple[int, pa.Table] | None = None

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __len__(self) -> int:
        return self.num_frames

    @property
    def stats(self) -> dict:
        return json.loads((self.root / STATS_PATH).read_text())

    def episode_table(self, episode_index: int, columns=None) -> pa.Table:
        """The raw arrow table of one episode (images as PNG structs); `columns` default all."""
        if not 0 <= episode_index < self.num_episodes:
            raise IndexError(f"episode {episode_index} out of range [0, {self.num_episodes})")
        if self._cache and self._cache[0] == episode_index:
            if columns is None and self._cache[1].column_names == list(self.features):
                return self._cache[1]
            if columns is not None and set(columns) <= set(self._cache[1].column_names):
                return self._cache[1].select(list(columns))
        row = self.episodes.slice(episode_index, 1).to_pylist()[0]
        path = self.root / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )
        wanted = None if columns is None else list(dict.fromkeys([*columns, "episode_index"]))
        table = pq.read_table(path, columns=wanted)
        if table.num_rows != row["length"]:  # several episodes in one file
            table = table.filter(pc.equal(table["episode_index"], episode_index))
        self._cache = (episode_index, table)
        return table if columns is None else table.select(list(columns))

    def episode(self, episode_index: int, columns=None, decode_images: bool = True) -> dict:
        """One episode as numpy arrays: (T, ...) per column; images (T, H, W, 3) uint8 or PNG bytes."""
        table = self.episode_table(episode_index, columns)
        return {key: self._column(table, key, decode_images) for key in table.column_names}

    def arrays(self, columns, episodes=None, decode_images: bool = False) -> dict:
        """Columns concatenated over `episodes` (default all): ``arrays(["observation.state", "action"])``."""
        episodes = range(self.num_episodes) if episodes is None else episodes
        parts = [self.episode(i, columns, decode_images) for i in episodes]
        out = {}
        for key in columns:
            values = [p[key] for p in parts]
            out[key] = sum(values, []) if values and isinstance(values[0], list) else np.concatenate(values)
        return out

    def frame(self, index: int) -> dict:
        """Frame `index` (global): every column, images decoded, plus ``"task"`` (the instruction)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range [0, {self.num_frames})")
        episode_index = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self.episodes["dataset_from_index"][episode_index].as_py())
        row = self.episode_table(episode_index).slice(index - start, 1)
        item = {key: self._column(row, key, decode_images=True)[0] for key in row.column_names}
        item["task"] = self.tasks[int(item["task_index"])]
        return item

    def __getitem__(self, index: int) -> dict:
        return self.frame(index)

    def _column(self, table: pa.Table, key: str, decode_images: bool):
        column = table[key].combine_chunks()
        if key in self.image_keys:
            data = column.field("bytes").to_pylist()
            return np.stack([decode_png(b) for b in data]) if decode_images else data
        if pa.types.is_fixed_size_list(column.type):
            return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
        return column.to_numpy(zero_copy_only=False)


def load_demos(root: str | os.PathLike) -> DemoDataset:
    """Open a recorded dataset (demonstrations, or episodes recorded from the graph) for reading."""
    return DemoDataset(root)
