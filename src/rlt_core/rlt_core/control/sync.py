"""Synchronising and validating the raw sensor streams into one observation.

`StampSync` pairs each joint state with one image per camera whose stamp lies within a
tolerance of it (0: identical stamps, as the simulator publishes them). Observations come out in
stamp order; nothing older than the last emitted one is ever emitted. The `check_*` functions
say why an input must be dropped (None when it is fine); `joint_state_in_order` reads a joint state
in the robot profile's joint order, whatever order and extra joints the driver publishes. `Latest` keeps the
newest entries of a stamp-keyed table.
"""

import math
from collections import OrderedDict


class Latest(OrderedDict):
    """A table of at most `size` entries: setting one beyond drops the oldest set (counted in `dropped`)."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.dropped = size, 0

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        while len(self) > self.size:
            self.popitem(last=False)
            self.dropped += 1


class StampSync:
    def __init__(self, camera_names, tolerance_ns: int = 0, max_buffer: int = 10):
        if tolerance_ns < 0:
            raise ValueError('tolerance must be >= 0')
        self.camera_names = list(camera_names)
        self.tolerance_ns, self.max_buffer = int(tolerance_ns), max_buffer
        self.joints: list[tuple[int, object]] = []
        self.images: dict[str, list[tuple[int, object]]] = {name: [] for name in self.camera_names}
        self.last_emitted = -1

    def add_joint_state(self, stamp_ns: int, item):
        return self._add(self.joints, stamp_ns, item)

    def add_image(self, camera: str, stamp_ns: int, item):
        if camera not in self.images:
            raise KeyError(f'unknown camera {camera!r}')
        return self._add(self.images[camera], stamp_ns, item)

    def _add(self, buffer, stamp_ns, item):
        if stamp_ns <= self.last_emitted:
            return None
        buffer.append((int(stamp_ns), item))
        buffer.sort(key=lambda e: e[0])
        del buffer[:-self.max_buffer]
        return self._match()

    def _match(self):
        """(stamp, joint_state, {camera: image}) for the newest joint state all cameras match, or None."""
        for stamp, joint in reversed(self.joints):
            chosen = {}
            for name in self.camera_names:
                near = [(abs(s - stamp), img) for s, img in self.images[name] if abs(s - stamp) <= self.tolerance_ns]
                if not near:
                    break
                chosen[name] = min(near, key=lambda e: e[0])[1]
            else:
                self.last_emitted = stamp
                self.joints = [e for e in self.joints if e[0] > stamp]
                for name in self.camera_names:  # keep images that may still match a newer joint state
                    self.images[name] = [e for e in self.images[name] if e[0] > stamp - self.tolerance_ns]
                return stamp, joint, chosen
        return None


def check_image(encoding: str, height: int, width: int, step: int, data_len: int, camera):
    """Why an observation's image of `camera` (a robot profile's `Camera`) is unusable, or None: ingestion
    publishes every camera's images as rgb8 at the camera's size, and nothing else is accepted."""
    if encoding != 'rgb8':
        return f'encoding {encoding!r} is not rgb8'
    if (height, width) != (camera.height, camera.width):
        return f'image is {height}x{width}, expected {camera.height}x{camera.width} (robot profile)'
    if step != width * 3 or data_len != height * step:
        return f'image data ({data_len} bytes, step {step}) does not match {height}x{width} rgb8'
    return None


def check_joint_state(names, positions, velocities, expected_names):
    """Why a joint state is unusable, or None. It may name other joints too (a joint_state_broadcaster
    publishes every joint of the robot, grippers included, in its own order)."""
    missing = [n for n in expected_names if n not in names]
    if missing or len(set(names)) != len(names):
        return f'joint names {list(names)} lack {missing} or repeat a name'
    if len(positions) != len(names) or len(velocities) != len(names):
        return f'{len(positions)} positions and {len(velocities)} velocities for {len(names)} joints'
    if not all(math.isfinite(v) for v in [*positions, *velocities]):
        return 'joint state contains NaN or infinite values'
    return None


def joint_state_in_order(names, positions, velocities, expected_names) -> tuple[list, list]:
    """(positions, velocities) of `expected_names`, in that order; ValueError saying why the state is unusable."""
    reason = check_joint_state(names, positions, velocities, expected_names)
    if reason:
        raise ValueError(reason)
    index = {name: i for i, name in enumerate(names)}
    return [positions[index[n]] for n in expected_names], [velocities[index[n]] for n in expected_names]


def check_age(stamp_ns: int, now_ns: int, max_age_s: float):
    """Why an observation is stale, or None (`max_age_s` <= 0 disables the check)."""
    age = (now_ns - stamp_ns) * 1e-9
    if max_age_s > 0 and age > max_age_s:
        return f'observation is {age:.3f} s old (max {max_age_s:g} s)'
    return None
