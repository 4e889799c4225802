"""Tests of demonstration recording: the LeRobot v3.0 layout, read-back, resume and the CLI."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlt_core.control.profile import RobotProfile
from rlt_sim import PegInsertionEnv, ScriptedExpert
from rlt_sim.cell import PROFILE
from rlt_sim.dataset import IMAGE_KEYS, ROBOT_TYPE, DemoWriter, decode_png, finalize_demos, load_demos, sim_features
from rlt_sim.record import RecordConfig, main, record, record_episode


def read_data(root: Path) -> pa.Table:
    """All frames of a dataset, read with plain pyarrow from the data files."""
    paths = sorted(root.glob("data/*/*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in paths])


def read_episodes(root: Path) -> pa.Table:
    return pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")


def small(output, **overrides) -> RecordConfig:
    """A fast recording: perfect expert (short episodes), 32 px images."""
    settings = {"output": str(output), "episodes": 3, "sigma_mm": 0.0, "image_size": 32, "progress": False}
    return RecordConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Four default episodes (96 px, imperfect expert: seeds 1 and 2 fail and run to the time limit)."""
    root = tmp_path_factory.mktemp("demos") / "set"
    summary = record(RecordConfig(output=str(root), episodes=4, progress=False))
    return root, summary


def test_layout_follows_lerobot_v3(demos):
    root, summary = demos
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["video_path"] is None
    assert info["total_episodes"] == summary["episodes"] == 4
    assert (root / info["data_path"].format(chunk_index=0, file_index=3)).exists()
    data = read_data(root)
    assert data.num_rows == info["total_frames"] == summary["frames"]
    assert data.column_names == list(info["features"])
    for key, feature in info["features"].items():
        column_type = data.schema.field(key).type
        if feature["dtype"] == "image":
            assert feature["shape"] == [96, 96, 3]
            assert column_type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        elif feature["shape"] == [1]:
            expected = pa.bool_() if feature["dtype"] == "bool" else pa.type_for_alias(feature["dtype"])
            assert column_type == expected
        else:
            assert pa.types.is_fixed_size_list(column_type)
            assert column_type.list_size == feature["shape"][0] == len(feature["names"])
    tasks = pq.read_table(root / "meta/tasks.parquet").to_pylist()
    assert tasks == [{"task_index": 0, "task": PegInsertionEnv(render=False).instruction}]
    assert info["total_tasks"] == 1
    stats = json.loads((root / "meta/stats.json").read_text())
    assert stats["action"]["count"] == [info["total_frames"]]
    assert np.asarray(stats[IMAGE_KEYS["scene"]]["mean"]).shape == (3, 1, 1)
    state = np.stack(data["observation.state"].to_pylist())
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), atol=1e-6)
    assert not list(root.rglob("*.tmp"))


def test_episode_boundaries_and_flags(demos):
    root, _ = demos
    data, episodes = read_data(root), read_episodes(root)
    assert episodes["episode_index"].to_pylist() == [0, 1, 2, 3]
    assert episodes["seed"].to_pylist() == [0, 1, 2, 3]
    assert set(episodes["demonstrator_sigma_mm"].to_pylist()) == {1.0}
    np.testing.assert_array_equal(data["index"].to_numpy(), np.arange(data.num_rows))
    frame_index, episode_index = data["frame_index"].to_numpy(), data["episode_index"].to_numpy()
    done = data["next.done"].to_numpy(zero_copy_only=False)
    success = data["next.success"].to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(data["timestamp"].to_numpy(), frame_index / 20.0, rtol=1e-6)
    assert set(data["task_index"].to_pylist()) == {0}
    lengths, outcomes = [], []
    for row in episodes.to_pylist():
        start, stop = row["dataset_from_index"], row["dataset_to_index"]
        assert stop - start == row["length"] and row["tasks"] == ["insert the peg into the hole"]
        assert (row["data/chunk_index"], row["data/file_index"]) == (0, row["episode_index"])
        np.testing.assert_array_equal(frame_index[start:stop], np.arange(row["length"]))
        assert np.all(episode_index[start:stop] == row["episode_index"])
        assert done[stop - 1] and not done[start : stop - 1].any()  # done marks the last frame only
        assert success[stop - 1] == row["success"] and not success[start : stop - 1].any()
        lengths.append(row["length"])
        outcomes.append(row["success"])
    assert outcomes == [True, False, False, True]  # failures are kept and flagged
    assert lengths[1] == lengths[2] == PROFILE.max_steps  # failures run to the time limit (the profile's)
    np.testing.assert_array_equal(data["next.reward"].to_numpy(), success.astype(np.float32))
    assert data["critical_phase"].to_numpy(zero_copy_only=False).any()


def test_frames_match_a_replay_with_the_same_seed(demos):
    root, _ = demos
    dataset = load_demos(root)
    recorded = dataset.episode(1)  # a failure: max_steps frames
    env = PegInsertionEnv()
    expert = ScriptedExpert(hole_error_sigma_mm=1.0)
    obs, info = env.reset(seed=1)
    expert.reset(info, np.random.SeedSequence([1, 1]))
    for t in range(len(recorded["action"])):
        action = expert.act(obs, info)
        np.testing.assert_array_equal(recorded["observation.state"][t], obs["proprio"])
        np.testing.assert_array_equal(recorded["action"][t], action)
        assert recorded["critical_phase"][t] == info["critical_phase"]
        offset = recorded["privileged.peg_hole_offset"][t]
        np.testing.assert_allclose(offset, info["peg_hole_offset"], atol=1e-7)
        if t in (0, 57, 199):
            for camera, key in IMAGE_KEYS.items():
                assert recorded[key][t].shape == (96, 96, 3) and recorded[key][t].dtype == np.uint8
                np.testing.assert_array_equal(recorded[key][t], obs["images"][camera])
        obs, _, terminated, truncated, info = env.step(action)
    assert truncated and not terminated
    env.close()


def test_reader_api(demos):
    root, summary = demos
    dataset = load_demos(root)
    assert len(dataset) == dataset.num_frames == summary["frames"] and dataset.num_episodes == 4
    assert dataset.tasks == ["insert the peg into the hole"]
    assert dataset.episodes["success"].to_pylist() == [True, False, False, True]
    frame = dataset[dataset.episodes["dataset_from_index"][2].as_py() + 5]
    assert frame["episode_index"] == 2 and frame["frame_index"] == 5
    assert frame["index"] == 18 + PROFILE.max_steps + 5  # episode 0 has 18 frames, episode 1 runs to the limit
    assert frame["task"] == "insert the peg into the hole"
    assert frame[IMAGE_KEYS["wrist_left"]].shape == (96, 96, 3) and frame["observation.state"].shape == (6,)
    arrays = dataset.arrays(["observation.state", "action", IMAGE_KEYS["scene"]], episodes=[0, 3])
    assert arrays["observation.state"].shape == (36, 6) and arrays["action"].dtype == np.float32
    pngs = arrays[IMAGE_KEYS["scene"]]
    assert len(pngs) == 36 and decode_png(pngs[0]).shape == (96, 96, 3)
    with pytest.raises(IndexError):
        dataset.episode(4)
    with pytest.raises(IndexError):
        dataset.frame(len(dataset))


def test_cli_records_and_reads_back(tmp_path, capsys):
    out = tmp_path / "cli"
    main(["--output", str(out), "--episodes", "2", "--sigma-mm", "0", "--image-size", "32", "--no-progress"])
    assert "2 episodes" in capsys.readouterr().out
    dataset = load_demos(out)
    assert dataset.num_episodes == 2 and dataset.episodes["success"].to_pylist() == [True, True]
    assert dataset.episode(0)[IMAGE_KEYS["scene"]].shape[1:] == (32, 32, 3)
    recording = json.loads((out / "meta/rlt_recording.json").read_text())
    assert recording["sigma_mm"] == 0.0 and recording["sim_config"]["image_size"] == 32


def assert_same_dataset(a: Path, b: Path) -> None:
    assert read_data(a).equals(read_data(b))
    assert read_episodes(a).equals(read_episodes(b))
    for name in ("info.json", "stats.json", "rlt_recording.json"):
        assert (a / "meta" / name).read_text() == (b / "meta" / name).read_text()


def test_resume_records_only_the_missing_episodes(tmp_path):
    first = record(small(tmp_path / "resumed", episodes=3))
    assert (first["recorded"], first["episodes"]) == (3, 3)
    second = record(small(tmp_path / "resumed", episodes=5))
    assert (second["resumed_from"], second["recorded"], second["episodes"]) == (3, 2, 5)
    again = record(small(tmp_path / "resumed", episodes=5))
    assert again["recorded"] == 0 and again["attempts"] == 0
    record(small(tmp_path / "straight", episodes=5))
    assert_same_dataset(tmp_path / "resumed", tmp_path / "straight")


def test_interrupted_recording_is_readable_and_resumes(tmp_path):
    config = small(tmp_path / "crashed")
    env = PegInsertionEnv(config.sim_config())
    writer = DemoWriter(config.output, sim_features(config.sim_config()), 20, config.recording(), robot_type=ROBOT_TYPE,
                        flush_every=100)
    for seed in (0, 1):
        writer.add_episode(record_episode(env, ScriptedExpert(), seed, RobotProfile.load(config.robot_profile)))
    env.close()
    # Killed here: two complete data files, a half-written third, metadata not yet flushed.
    (Path(config.output) / "data/chunk-000/file-002.parquet.tmp").write_bytes(b"partial")
    assert load_demos(config.output).num_episodes == 0  # the finalized prefix
    assert finalize_demos(config.output) == 2
    assert load_demos(config.output).num_episodes == 2
    summary = record(config)
    assert (summary["resumed_from"], summary["recorded"]) == (2, 1)
    assert not list(Path(config.output).rglob("*.tmp"))
    record(small(tmp_path / "straight"))
    assert_same_dataset(Path(config.output), tmp_path / "straight")


def test_two_workers_give_the_same_data(tmp_path):
    record(small(tmp_path / "parallel", episodes=4, workers=2))
    record(small(tmp_path / "serial", episodes=4))
    assert_same_dataset(tmp_path / "parallel", tmp_path / "serial")


def test_successes_only_skips_failed_seeds(tmp_path):
    summary = record(small(tmp_path / "good", episodes=2, sigma_mm=1.0, successes_only=True))
    dataset = load_demos(tmp_path / "good")
    assert dataset.episodes["success"].to_pylist() == [True, True]
    assert dataset.episodes["seed"].to_pylist() == [0, 3]  # seeds 1 and 2 fail
    assert summary["attempts"] == 4 and summary["success_rate"] == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"episodes": 0}, "episodes must be >= 1"),
        ({"sigma_mm": -1.0}, "sigma_mm"),
        ({"sigma_mm": float("nan")}, "sigma_mm"),
        ({"workers": 0}, "workers"),
        ({"image_size": 8}, "image_size"),
        ({"png_level": 10}, "png_level"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_settings_raise_clear_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        record(small(tmp_path / "bad", **overrides))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="output directory is required"):
        record(RecordConfig(output=""))


def test_bad_cli_arguments_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--output", str(tmp_path / "x"), "--episodes", "-3"])
    assert exit_info.value.code == 2 and "episodes must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--episodes", "3"])  # no --output
    assert "--output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--output", str(tmp_path / "x"), "--successes-only", "--keep-failures"])


def test_refuses_to_mix_settings_or_overwrite_other_files(tmp_path):
    record(small(tmp_path / "set", episodes=1))
    with pytest.raises(ValueError, match="other settings.*sigma_mm"):
        record(small(tmp_path / "set", episodes=2, sigma_mm=0.5))
    with pytest.raises(SystemExit, match="other settings"):
        main(["--output", str(tmp_path / "set"), "--episodes", "2", "--image-size", "32", "--no-progress"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an rlt demo dataset"):
        record(small(tmp_path / "other"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        record(small(tmp_path / "file"))


def test_hugging_face_datasets_reads_it(demos):
    import datasets

    root, summary = demos
    paths = sorted(str(p) for p in root.glob("data/*/*.parquet"))
    loaded = datasets.load_dataset("parquet", data_files=paths, split="train")
    assert len(loaded) == summary["frames"]
    assert isinstance(loaded.features[IMAGE_KEYS["scene"]], datasets.Image)
    frame = loaded[20]
    assert np.asarray(frame[IMAGE_KEYS["wrist_right"]]).shape == (96, 96, 3)
    assert frame["episode_index"] == 1 and len(frame["observation.state"]) == 6
