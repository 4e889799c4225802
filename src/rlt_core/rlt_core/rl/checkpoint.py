"""The learner's checkpoints: its networks, optimisers and counters, written atomically beside its replay.

`Checkpoints(folder, meta)` keeps two files: `learner.pt`, the newest, and `learner.prev.pt`, the one before.
A save writes a temporary file in the same folder (flushed and fsync'ed), moves `learner.pt` to
`learner.prev.pt`, renames the temporary file to `learner.pt` (os.replace) and fsyncs the folder: a crash at
any moment leaves at least one whole checkpoint. A file is `MAGIC`, the SHA-256 of the payload, then the
payload (`torch.save` of {'meta': ..., 'state': ...}); a file that is cut short, altered or unreadable is
corrupt: `load()` then falls back to the previous one, renames the corrupt one `learner.corrupt.pt` (so that
the next save does not rotate it over the good one) and reports it in `errors`. A readable checkpoint whose
`meta` (state_dim, C, A, the robot profile's hash, widths) differs from this learner's raises
`CheckpointMismatchError`, and nothing is written: the learner refuses to start rather than overwrite it.

`LearnerDisk` is what the learner node keeps on disk, its replay log and these checkpoints, and how it
behaves when a write fails (OSError: a full disk, ENOSPC): it pauses updates (`paused`), keeps received
transitions in memory (the replay's `unsaved`, bounded) and, at most every `retry_s` seconds, `retry()`
writes them and the checkpoint still due; when both succeed, updates resume. No transition it was given is
lost unless more than the replay's `max_unsaved` wait (counted in `replay.dropped_unsaved`).
"""

import hashlib
import io
import os
import time
from pathlib import Path

import torch

MAGIC = b'RLT-LEARNER-CHECKPOINT-1\n'
CURRENT, PREVIOUS, CORRUPT = 'learner.pt', 'learner.prev.pt', 'learner.corrupt.pt'


class CheckpointMismatchError(ValueError):
    """A readable checkpoint of another learner (another robot profile, state or widths)."""


def atomic_write(path: Path, data: bytes, keep_previous: Path | None = None):
    """Write `data` to `path` so that a crash leaves the old file or the new one, never a part: a temporary
    file in the same folder, fsync'ed, renamed over `path`, then the folder fsync'ed. With `keep_previous`,
    the old `path` is first renamed to it."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)  # a full disk: free what the part took
        raise
    os.close(fd)
    if keep_previous is not None and path.exists():
        os.replace(path, keep_previous)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Checkpoints:
    """`learner.pt` and `learner.prev.pt` in `folder`, for a learner described by `meta` (a JSON-able dict)."""

    def __init__(self, folder, meta: dict):
        self.folder, self.meta = Path(folder), dict(meta)
        self.errors: list[str] = []  # what load() found corrupt, for the caller's log

    @property
    def path(self) -> Path:
        return self.folder / CURRENT

    def save(self, state: dict):
        """Write `state` as the newest checkpoint, the old newest kept as the previous one (OSError on failure:
        the files already there stay as they were)."""
        buffer = io.BytesIO()
        torch.save({'meta': self.meta, 'state': state}, buffer)
        payload = buffer.getvalue()
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, MAGIC + hashlib.sha256(payload).digest() + payload,
                     keep_previous=self.folder / PREVIOUS)

    def load(self) -> dict | None:
        """The newest whole checkpoint's state, or None when there is none; corrupt files are noted in `errors`
        (the newest renamed `learner.corrupt.pt`). Raises CheckpointMismatchError on another learner's checkpoint."""
        self.errors = []
        for name in (CURRENT, PREVIOUS):
            path = self.folder / name
            if not path.exists():
                continue
            try:
                saved = self._read(path)
            except (OSError, ValueError, RuntimeError, EOFError, KeyError, TypeError, AttributeError) as err:
                self.errors.append(f'corrupt learner checkpoint {path} ({type(err).__name__}: {err})')
                if name == CURRENT:
                    try:
                        os.replace(path, self.folder / CORRUPT)
                    except OSError as err:  # a read-only folder: the learner cannot save either
                        self.errors.append(f'{path} not set aside: {err}')
                continue
            if saved['meta'] != self.meta:
                there = saved['meta']
                differ = ', '.join(f'{k}: {there.get(k)!r} there, {self.meta.get(k)!r} here'
                                   for k in sorted(set(there) | set(self.meta)) if there.get(k) != self.meta.get(k))
                raise CheckpointMismatchError(
                    f'{path} is the checkpoint of another learner ({differ}); '
                    f'refusing to start so as not to overwrite it. To go on training it, start the learner with its '
                    f'robot profile and parameters; to start a new learner, give it another replay_dir (or move '
                    f'{self.folder} away)')
            return saved['state']
        return None

    @staticmethod
    def _read(path: Path) -> dict:
        data = path.read_bytes()
        head, digest, payload = data[:len(MAGIC)], data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
        if head != MAGIC:
            raise ValueError('not an rlt learner checkpoint')
        if hashlib.sha256(payload).digest() != digest:
            raise ValueError(f'sha256 mismatch ({len(payload)} bytes of payload)')
        saved = torch.load(io.BytesIO(payload), weights_only=True)
        if not isinstance(saved, dict) or 'meta' not in saved or 'state' not in saved:
            raise ValueError('no meta and state in it')
        return saved


class LearnerDisk:
    """A learner's replay log and checkpoints, paused while the disk refuses writes.

    `add(t)` records a transition; `checkpoint(state)` saves one (False, and due, when the write fails);
    `paused` is true while a write failed and has not yet succeeded; `retry(state_fn)` tries again when
    `retry_s` have passed since the last try. `clock` is time.monotonic (a test's own clock otherwise)."""

    def __init__(self, replay, checkpoints: Checkpoints, retry_s: float = 5.0, clock=time.monotonic):
        self.replay, self.checkpoints = replay, checkpoints
        self.retry_s, self.clock = retry_s, clock
        self.checkpoint_error: OSError | None = None
        self.last_try = -float('inf')

    @property
    def paused(self) -> bool:
        return self.replay.write_error is not None or self.checkpoint_error is not None

    @property
    def error(self) -> OSError | None:
        return self.replay.write_error or self.checkpoint_error

    def add(self, t, writer: int = 0, sequence: int = 0):
        """Add a transition to the replay (written, or kept in memory while writes fail)."""
        failed_before = self.replay.write_error is not None
        self.replay.add(t, writer, sequence)
        if self.replay.write_error is not None and not failed_before:
            self.last_try = self.clock()

    def checkpoint(self, state: dict) -> bool:
        """Save `state`; on an OSError keep it due (`paused`) and return False."""
        try:
            self.checkpoints.save(state)
        except OSError as err:
            self.checkpoint_error, self.last_try = err, self.clock()
            return False
        self.checkpoint_error = None
        return True

    def retry(self, state_fn) -> bool | None:
        """When paused and `retry_s` have passed: write the waiting transitions, then the checkpoint due
        (`state_fn()` gives its state). True when both are written (updates may resume), False when the disk
        still refuses, None when it is not yet time (or nothing is due)."""
        if not self.paused or self.clock() - self.last_try < self.retry_s:
            return None
        self.last_try = self.clock()
        if not self.replay.persist():
            return False
        if self.checkpoint_error is not None and not self.checkpoint(state_fn()):
            return False
        return True
