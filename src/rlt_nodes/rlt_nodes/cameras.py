"""The robot profile's cameras on the graph: the message type of each camera's topic, the RGB image the VLA sees
of each message (`rlt_core.data.images`), and that image as the sensor_msgs/Image an observation carries."""

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from rlt_core.control.profile import Camera
from rlt_core.data.images import camera_image_to_rgb


def message_type(camera: Camera):
    """sensor_msgs/CompressedImage for a compressed camera, sensor_msgs/Image for a raw one."""
    return CompressedImage if camera.compressed else Image


def to_rgb(camera: Camera, msg) -> np.ndarray:
    """(camera.height, camera.width, 3) uint8 RGB of a message of `camera`'s topic; ValueError saying why not."""
    if camera.compressed:
        return camera_image_to_rgb(camera, msg.data, msg.format)
    return camera_image_to_rgb(camera, msg.data, msg.encoding, msg.height, msg.width, msg.step)


def rgb_to_msg(rgb: np.ndarray, header) -> Image:
    """An rgb8 sensor_msgs/Image of an (height, width, 3) uint8 array, with `header`."""
    height, width = rgb.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding='rgb8', is_bigendian=0, step=width * 3)
    msg.data = array.array('B', np.ascontiguousarray(rgb).tobytes())
    return msg
