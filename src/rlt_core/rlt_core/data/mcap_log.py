"""MCAP logs of raw ROS 2 topics, laid out as rosbag2 writes them, so `ros2 bag play` and Foxglove replay them.

Each topic is a channel with message encoding ``cdr`` (the serialized bytes as they crossed DDS) and a ``ros2msg``
schema named like ``sensor_msgs/msg/JointState`` whose text is the type's .msg definition followed by those of
every type it uses, each after a line of 80 ``=`` and a line ``MSG: pkg/msg/Name`` (rosbag2's message definition
encoding). Schemas, channels and messages go into compressed chunks; `flush()` closes the chunk in progress and
pushes it to the file. A writer killed mid-run leaves a
file without its summary and footer whose flushed chunks `read_messages` still reads (so do ``mcap recover`` and
readers that scan the file); only what came after the last flush is lost.

No ROS here: the .msg files are found by a function the caller passes (the node uses the ament index).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
              "int64", "uint64", "string", "wstring"}
DEFINITION_DELIMITER = "=" * 80


def _field_types(text: str, package: str) -> list[tuple[str, str]]:
    """(package, name) of every non-primitive field type in a .msg definition, in order."""
    types = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        base = re.split(r"[\[<]", line.split()[0], maxsplit=1)[0]
        if base in PRIMITIVES:
            continue
        parts = base.split("/")
        types.append((package, parts[0]) if len(parts) == 1 else (parts[0], parts[-1]))
    return types


def message_definition(type_name: str, find_msg_file: Callable[[str, str], Path]) -> str:
    """The complete ``ros2msg`` definition of `type_name` (``pkg/msg/Name``): its .msg text, then each type it
    uses, depth first, once. `find_msg_file(package, name)` returns the path of a type's .msg file."""
    package, _, name = type_name.split("/")
    parts, seen = [], set()

    def add(package: str, name: str, top: bool) -> None:
        if (package, name) in seen:
            return
        seen.add((package, name))
        text = Path(find_msg_file(package, name)).read_text()
        parts.append(text if top else f"{DEFINITION_DELIMITER}\nMSG: {package}/msg/{name}\n{text}")
        for dependency in _field_types(text, package):
            add(*dependency, top=False)

    add(package, name, top=True)
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"


class McapLog:
    """An MCAP file of raw CDR messages: `add_topic`, then `write` per message, `flush` now and then, `close`."""

    def __init__(self, path: str | os.PathLike, chunk_size: int = 1 << 20, compression: str = "zstd"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "xb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=CompressionType[compression.upper()])
        self._writer.start(profile="ros2", library="rlt recorder")
        self._schemas: dict[str, int] = {}
        self._sequence: dict[int, int] = {}
        self.messages = 0

    def add_topic(self, topic: str, type_name: str, definition: str, metadata: dict | None = None) -> int:
        """Register a topic of type `type_name` (its `message_definition`); returns the channel id."""
        if type_name not in self._schemas:
            self._schemas[type_name] = self._writer.register_schema(type_name, "ros2msg", definition.encode())
        channel = self._writer.register_channel(topic, "cdr", self._schemas[type_name], metadata or {})
        self._sequence[channel] = 0
        return channel

    def write(self, channel: int, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        self._sequence[channel] += 1
        self._writer.add_message(channel, log_time=int(log_time_ns), data=bytes(data),
                                 publish_time=int(log_time_ns if publish_time_ns is None else publish_time_ns),
                                 sequence=self._sequence[channel])
        self.messages += 1

    def flush(self) -> None:
        """Close the chunk in progress and push everything to the file (what a crash keeps)."""
        self._writer.flush()

    def close(self) -> None:
        """Write the summary (indexes, statistics) and the footer."""
        self._writer.finish()
        self._file.close()


def read_messages(path: str | os.PathLike) -> Iterator[tuple[Schema, Channel, Message]]:
    """Every message of an MCAP file in file order, with its schema and channel; a file cut short (its writer
    killed) yields the messages of its complete chunks and stops at the first incomplete record."""
    schemas, channels = {}, {}
    with open(path, "rb") as f:
        records = StreamReader(f).records
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except (McapError, EOFError, ValueError, struct.error):
                return  # the truncated tail
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                channels[record.id] = record
            elif isinstance(record, Message):
                channel = channels[record.channel_id]
                yield schemas.get(channel.schema_id), channel, record
