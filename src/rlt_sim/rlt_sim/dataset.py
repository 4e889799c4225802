"""The simulated cell's demonstrations: rlt_core's LeRobot v3.0 format plus the cell's ground truth.

The format (writer, reader, `load_demos`) lives in `rlt_core.data.lerobot` and follows the robot profile;
this module adds what only the simulator knows, the ``privileged.*`` columns, and names the image keys
of the default cell's cameras. Everything the format module offers is re-exported here.
"""

from rlt_core.control.profile import Camera
from rlt_core.data.lerobot import (  # noqa: F401  (re-exported)
    DemoDataset,
    DemoWriter,
    Episode,
    aggregate_stats,
    dataset_features,
    decode_png,
    encode_png,
    episode_stats,
    finalize_demos,
    image_key,
    load_demos,
    profile_features,
)
from rlt_sim.arm_cell import ArmCellConfig
from rlt_sim.cell import CAMERA_NAMES, SimConfig

ROBOT_TYPE, ARM_ROBOT_TYPE = "rlt_sim_gantry", "rlt_sim_arm"
"""``robot_type`` in ``meta/info.json`` of the gantry cell's and the arm cell's demonstrations."""

IMAGE_KEYS = {camera: image_key(camera) for camera in CAMERA_NAMES}
"""Feature key of each camera's images (the default cell's cameras)."""

PRIVILEGED_FEATURES = {
    "privileged.peg_hole_offset": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
    "privileged.hole_pos": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
}
"""Simulator ground truth a real robot does not observe: for probes and diagnostics, never policy inputs."""

PRIVILEGED_KEYS = tuple(PRIVILEGED_FEATURES)


def sim_features(config: SimConfig | ArmCellConfig) -> dict:
    """The features of the cell's demonstrations: its joints, actions and cameras, then the privileged columns."""
    if isinstance(config, ArmCellConfig):
        return profile_features(config.profile, PRIVILEGED_FEATURES)
    cameras = [Camera(name, width=config.image_size, height=config.image_size) for name in config.camera_names]
    return dataset_features(config.joint_names, cameras, PRIVILEGED_FEATURES)
