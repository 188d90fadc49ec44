"""Each %%generate output records how its answer was made, in the output's metadata."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import ollama_magic

from .conftest import FakeOllama, RecordingPublisher, run


def recorded_metadata(nb: Any, fake: FakeOllama) -> list[Any]:
    """The metadata of every display message the shell publishes from now on (a server
    0.9.3 answers /api/version)."""
    fake.server.expect_request("/api/version").respond_with_json({"version": "0.9.3"})
    metadata: list[Any] = []
    publish = RecordingPublisher.publish

    def recording(self: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        metadata.append(kwargs.get("metadata", args[0] if args else None))
        publish(self, data, *args, **kwargs)

    nb.display_pub.publish = recording.__get__(nb.display_pub)
    return metadata


def test_the_final_output_carries_model_options_thread_version_and_time(nb: Any, fake: FakeOllama) -> None:
    metadata = recorded_metadata(nb, fake)
    fake.reply()
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    cell = "%%generate -m tiny -t 0.2 --system 'Be brief.' --thread lesson --host http://u:secret@{host}\nHi"
    assert run(nb, cell.format(host=fake.host)).success
    record = metadata[-1]["ollama_magic"]
    assert {k: record[k] for k in ("model", "requested_model", "thread", "server_version", "options", "system")} == {
        "model": "tiny",
        "requested_model": "tiny",
        "thread": "lesson",
        "server_version": "0.9.3",
        "options": {"temperature": 0.2},
        "system": "Be brief.",
    }
    assert record["ollama_magic_version"] == ollama_magic.__version__
    assert dt.datetime.fromisoformat(record["time"]) >= before
    assert "secret" not in json.dumps(metadata) and "host" not in record
    assert all(m in (None, {}) for m in metadata[:-1])  # the streaming updates carry none


def test_a_comparison_records_how_each_column_was_made(nb: Any, fake: FakeOllama) -> None:
    metadata = recorded_metadata(nb, fake)
    fake.reply(model="tiny")
    fake.reply(model="tiny-long")
    cell = "%%generate -m tiny -m tiny-long --seed 3 --thread lesson --host http://u:secret@{host}\nHi"
    assert run(nb, cell.format(host=fake.host)).success
    records = metadata[-1]["ollama_magic"]["comparison"]
    assert [(r["requested_model"], r["thread"], r["options"], r["server_version"]) for r in records] == [
        ("tiny", "lesson [tiny]", {"seed": 3}, "0.9.3"),
        ("tiny-long", "lesson [tiny-long]", {"seed": 3}, "0.9.3"),
    ]
    assert all(r["ollama_magic_version"] == ollama_magic.__version__ and r["complete"] for r in records)
    assert "secret" not in json.dumps(metadata)
    assert all(m in (None, {}) for m in metadata[:-1])  # the streaming updates carry none
