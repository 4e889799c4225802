"""Replay buffer of chunk transitions, with intervention data mixed in and crash-safe persistence.

A transition is (x, executed chunk, reference chunk, rewards, x', reference chunk at x', done,
source, episode id). Chunks are stored in robot units, shape (C, A); `rewards` has one entry per
executed step (zero-padded to C; `n_steps` says how many were executed).

Transitions whose executed chunk came from a human (interventions) also go to a second buffer
that is never overwritten, and every batch draws `intervention_fraction` of its samples from it.
Prior data (`load_prior`: demonstrations turned into transitions by `rlt_train.demo_replay`) is
a third, read-only buffer; every batch draws `prior_fraction` of its samples from it.

On-disk format (`ReplayBuffer(path=DIR)`): `DIR/layout.json` describes one fixed-size record
as a numpy structured dtype (`numpy.dtype(descr)` rebuilds it); `DIR/transitions.bin` is the
records, appended and flushed as they are added (and fsync'ed every `fsync_every` records).
Each record carries the CRC-32 of its other bytes, and where it came from: the sender's `writer` id and
its `sequence` number there (0 and 0 in process); `last_sequence` keeps the highest stored per writer, so
that a sender's transitions are stored once, in order, also across restarts. A record cut short by a
crash is dropped when the file is reloaded, and one that fails its checksum or holds values no transition
can have is skipped and counted (`skipped_on_load`); nothing else is lost.
A write that fails (OSError: a full disk, ENOSPC) is cut back to the last whole record. With
`max_unsaved=0` (the default) `add` then raises it; with `max_unsaved > 0` the buffer stays usable: the
records not yet written wait in memory (`unsaved`, at most `max_unsaved`, the oldest dropped and counted
in `dropped_unsaved` beyond that), `write_error` holds the error, and `persist()` retries them, oldest
first (`add` writes nothing more until a `persist()` succeeds).
Read it without rlt: `np.fromfile('transitions.bin', np.dtype(json.load(open('layout.json'))['descr']))`.
"""

import json
import os
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlt_core.rl.checkpoint import atomic_write

SOURCE_VLA, SOURCE_ACTOR, SOURCE_HUMAN = 0, 1, 2
"""Sources of an executed chunk, as in rlt_interfaces/ActionChunk."""
SOURCE_DEMO = 3
"""A recorded demonstration's chunk (prior data; never sent to a robot)."""


@dataclass
class ChunkTransition:
    state: np.ndarray
    executed_chunk: np.ndarray
    reference_chunk: np.ndarray
    rewards: np.ndarray
    next_state: np.ndarray
    next_reference_chunk: np.ndarray
    done: bool
    source: int
    episode_id: int
    chunk_index: int = 0
    truncated: bool = False
    critical_phase: bool = True
    warmup: bool = False
    """Recorded in a warmup episode: it fills the buffer, and earns no learner updates (not stored)."""

    @property
    def intervention(self) -> bool:
        return self.source == SOURCE_HUMAN


def record_dtype(state_dim: int, chunk_len: int, action_dim: int) -> np.dtype:
    chunk = (chunk_len, action_dim)
    return np.dtype([
        ('crc32', '<u4'), ('writer', '<u8'), ('sequence', '<u8'),
        ('episode_id', '<i8'), ('chunk_index', '<i8'), ('source', 'u1'), ('done', '?'),
        ('truncated', '?'), ('critical_phase', '?'), ('n_steps', '<i4'),
        ('state', '<f4', (state_dim,)), ('executed_chunk', '<f4', chunk), ('reference_chunk', '<f4', chunk),
        ('rewards', '<f4', (chunk_len,)), ('next_state', '<f4', (state_dim,)),
        ('next_reference_chunk', '<f4', chunk),
    ])


def _crc32(rec) -> int:
    """CRC-32 of a record's bytes with its own checksum field zeroed."""
    rec = rec.copy()
    rec['crc32'] = 0
    return zlib.crc32(rec.tobytes())


class _Storage:
    """Preallocated tensors of one ring buffer."""

    def __init__(self, capacity, state_dim, chunk_len, action_dim):
        self.capacity, self.size, self.pos = capacity, 0, 0
        chunk = (capacity, chunk_len, action_dim)
        self.x = torch.zeros(capacity, state_dim)
        self.a = torch.zeros(chunk)
        self.ref = torch.zeros(chunk)
        self.r = torch.zeros(capacity, chunk_len)
        self.n = torch.zeros(capacity)
        self.x2 = torch.zeros(capacity, state_dim)
        self.ref2 = torch.zeros(chunk)
        self.done = torch.zeros(capacity)

    def add(self, rec):
        i = self.pos
        self.x[i] = torch.from_numpy(rec['state'])
        self.a[i] = torch.from_numpy(rec['executed_chunk'])
        self.ref[i] = torch.from_numpy(rec['reference_chunk'])
        self.r[i] = torch.from_numpy(rec['rewards'])
        self.n[i] = float(rec['n_steps'])
        self.x2[i] = torch.from_numpy(rec['next_state'])
        self.ref2[i] = torch.from_numpy(rec['next_reference_chunk'])
        self.done[i] = float(rec['done'])
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def take(self, idx):
        return {'x': self.x[idx], 'a': self.a[idx], 'ref': self.ref[idx], 'r': self.r[idx],
                'n': self.n[idx], 'x2': self.x2[idx], 'ref2': self.ref2[idx], 'done': self.done[idx]}


class ReplayBuffer:
    def __init__(self, state_dim: int, chunk_len: int, action_dim: int, capacity: int = 200_000,
                 intervention_capacity: int = 50_000, intervention_fraction: float = 0.25,
                 path=None, fsync_every: int = 1, prior_fraction: float = 0.25, max_unsaved: int = 0):
        if not (0.0 <= intervention_fraction <= 1.0 and 0.0 <= prior_fraction <= 1.0
                and intervention_fraction + prior_fraction <= 1.0):
            raise ValueError('intervention_fraction and prior_fraction must be in [0, 1], with a sum <= 1')
        self.state_dim, self.chunk_len, self.action_dim = state_dim, chunk_len, action_dim
        self.dtype = record_dtype(state_dim, chunk_len, action_dim)
        self.online = _Storage(capacity, state_dim, chunk_len, action_dim)
        self.interventions = _Storage(intervention_capacity, state_dim, chunk_len, action_dim)
        self.intervention_fraction = intervention_fraction
        self.prior = None
        self.prior_fraction = prior_fraction
        self.num_added = 0
        self.last_sequence: dict[int, int] = {}
        """The highest `sequence` added per `writer` (writer 0 is not tracked)."""
        self.fsync_every = fsync_every
        self.unsaved = deque(maxlen=max_unsaved)  # records added but not yet written (a write failed)
        self.dropped_unsaved = 0
        self.skipped_on_load = 0
        """Records read back from disk that failed `record_problem` (corrupt files): skipped, not learned from."""
        self.write_error: OSError | None = None
        self._file = None
        self._on_disk = 0  # whole records in the file
        if path is not None:
            self._open(Path(path))

    # --- persistence ---

    def layout(self) -> dict:
        return {'format': 'rlt-replay-2', 'descr': self.dtype.descr, 'itemsize': self.dtype.itemsize,
                'state_dim': self.state_dim, 'chunk_len': self.chunk_len, 'action_dim': self.action_dim}

    def _check_layout(self, path: Path):
        saved = json.loads((path / 'layout.json').read_text())
        if saved.get('format') != self.layout()['format']:
            raise ValueError(f'{path} holds transitions in format {saved.get("format")!r}, this rlt reads '
                             f'{self.layout()["format"]!r}: use another folder for this run')
        if saved['itemsize'] != self.dtype.itemsize or np.dtype([tuple(f) for f in saved['descr']]) != self.dtype:
            raise ValueError(f'{path} holds transitions of another layout '
                             f'(state_dim={saved["state_dim"]}, chunk_len={saved["chunk_len"]}, '
                             f'action_dim={saved["action_dim"]}); this buffer has state_dim={self.state_dim}, '
                             f'chunk_len={self.chunk_len}, action_dim={self.action_dim}')

    def _open(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        layout_file, data_file = path / 'layout.json', path / 'transitions.bin'
        if layout_file.exists():
            self._check_layout(path)
        else:
            atomic_write(layout_file, json.dumps(self.layout(), indent=1).encode())
        if data_file.exists():
            whole = data_file.stat().st_size // self.dtype.itemsize * self.dtype.itemsize
            if whole != data_file.stat().st_size:  # a record cut short by a crash
                os.truncate(data_file, whole)
            for rec in self._valid(np.fromfile(data_file, dtype=self.dtype), data_file):
                self._insert(rec)
            self._on_disk = whole // self.dtype.itemsize
        self._file = open(data_file, 'ab', buffering=0)  # noqa: SIM115 - kept open for appends

    def load_prior(self, path) -> int:
        """Load a replay folder (same format) as read-only prior data; returns its transition count."""
        path = Path(path)
        if not (path / 'layout.json').exists() or not (path / 'transitions.bin').exists():
            raise FileNotFoundError(f'{path} is not a replay folder (layout.json and transitions.bin)')
        self._check_layout(path)
        records = self._valid(np.fromfile(path / 'transitions.bin', dtype=self.dtype), path)
        if len(records) == 0:
            raise ValueError(f'{path} holds no transitions')
        self.prior = _Storage(len(records), self.state_dim, self.chunk_len, self.action_dim)
        for rec in records:
            self.prior.add(rec)
        return len(records)

    def persist(self) -> bool:
        """Write the records waiting in `unsaved`; False (and `write_error` set) when the write fails."""
        if self._file is None or not self.unsaved:
            self.write_error = None
            return True
        try:
            self._write(list(self.unsaved))
        except OSError as err:
            self.write_error = err
            return False
        self.unsaved.clear()
        self.write_error = None
        return True

    def _write(self, records):
        """Append whole records, or raise OSError with the file cut back to the records it held."""
        fd = self._file.fileno()
        try:
            data = memoryview(b''.join(rec.tobytes() for rec in records))
            while data:
                data = data[os.write(fd, data):]
            first, last = self._on_disk, self._on_disk + len(records) - 1  # record k is fsync'ed when k % f == 0
            if (first - 1) // self.fsync_every != last // self.fsync_every:
                os.fsync(fd)
        except OSError:
            try:  # a record cut short would shift every later one
                os.ftruncate(fd, self._on_disk * self.dtype.itemsize)
            except OSError:
                pass  # the next try truncates again; a reload drops a cut record anyway
            raise
        self._on_disk += len(records)

    def close(self):
        """Write what waits (if the disk lets it), fsync and close; returns nothing, `unsaved` says what is lost."""
        if self._file is not None:
            if self.persist():
                try:
                    os.fsync(self._file.fileno())
                except OSError as err:
                    self.write_error = err
            self._file.close()
            self._file = None

    # --- adding and sampling ---

    def to_record(self, t: ChunkTransition, writer: int = 0, sequence: int = 0) -> np.ndarray:
        rec = np.zeros((), dtype=self.dtype)
        rec['writer'], rec['sequence'] = writer, sequence
        n = len(t.rewards)
        if not 0 < n <= self.chunk_len:
            raise ValueError(f'{n} rewards for chunk_len {self.chunk_len}')
        rec['episode_id'], rec['chunk_index'], rec['source'] = t.episode_id, t.chunk_index, t.source
        rec['done'], rec['truncated'], rec['critical_phase'] = t.done, t.truncated, t.critical_phase
        rec['n_steps'] = n
        rec['state'], rec['next_state'] = t.state, t.next_state
        rec['executed_chunk'], rec['next_reference_chunk'] = t.executed_chunk, t.next_reference_chunk
        # Intervention: the human's chunk is executed, stored, and replaces the reference.
        rec['reference_chunk'] = t.executed_chunk if t.intervention else t.reference_chunk
        rec['rewards'][:n] = t.rewards
        rec['crc32'] = _crc32(rec)
        problem = self.record_problem(rec)
        if problem:
            raise ValueError(f'transition {problem}')
        return rec

    def record_problem(self, rec) -> str | None:
        """Why a record must not be learned from (a wrong checksum, non-finite values, an impossible step count or
        source), or None."""
        if _crc32(rec) != int(rec['crc32']):
            return 'fails its CRC-32 checksum'
        for name in ('state', 'next_state', 'executed_chunk', 'reference_chunk', 'next_reference_chunk',
                     'rewards'):
            if not np.all(np.isfinite(rec[name])):
                return f'{name} has NaN or infinite values'
        sources = (SOURCE_VLA, SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_DEMO)
        if not 0 < int(rec['n_steps']) <= self.chunk_len or int(rec['source']) not in sources:
            return f'n_steps {int(rec["n_steps"])} or source {int(rec["source"])} out of range'
        return None

    def _valid(self, records, path) -> list:
        """The records read back from `path` that pass `record_problem`; the others are counted and skipped."""
        good = [rec for rec in records if self.record_problem(rec) is None]
        self.skipped_on_load += len(records) - len(good)
        if len(good) < len(records):
            print(f'replay {path}: {len(records) - len(good)} corrupt records skipped', flush=True)
        return good

    def add(self, t: ChunkTransition, writer: int = 0, sequence: int = 0):
        """Add a transition (ValueError if it is not finite or of another shape), sequence number `sequence` of
        sender `writer`; with a `path`, write it (OSError when that fails, or with `max_unsaved`, keep it in
        `unsaved` while writes fail: see `persist`)."""
        rec = self.to_record(t, writer, sequence)
        if self._file is not None and not self.unsaved.maxlen:
            self._write([rec])
        elif self._file is not None:
            if len(self.unsaved) == self.unsaved.maxlen:
                self.dropped_unsaved += 1  # the deque drops the oldest
            self.unsaved.append(rec)
            if self.write_error is None:
                self.persist()
        self._insert(rec)

    def _insert(self, rec):
        writer = int(rec['writer'])
        if writer:
            self.last_sequence[writer] = max(self.last_sequence.get(writer, 0), int(rec['sequence']))
        self.online.add(rec)
        if rec['source'] == SOURCE_HUMAN:
            self.interventions.add(rec)
        self.num_added += 1

    def __len__(self):
        return self.online.size

    def sample(self, batch_size: int, generator=None) -> dict:
        """A batch of tensors x, a, ref, r, n, x2, ref2, done (chunks in robot units).

        `intervention_fraction` of it comes from the interventions and `prior_fraction` from the prior
        data when they hold any; the rest from all online transitions (all prior data when none yet).
        """
        n_int = round(batch_size * self.intervention_fraction) if self.interventions.size else 0
        n_prior = round(batch_size * self.prior_fraction) if self.prior is not None else 0
        if self.online.size == 0:
            if self.prior is None:
                raise ValueError('replay buffer is empty')
            n_prior = batch_size
        parts = []
        for storage, n in ((self.online, batch_size - n_int - n_prior), (self.interventions, n_int),
                           (self.prior, n_prior)):
            if n:
                parts.append(storage.take(torch.randint(storage.size, (n,), generator=generator)))
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
