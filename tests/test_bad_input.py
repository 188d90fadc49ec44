"""Bad input: one clear line, no traceback, and not a single request sent.

Numbers JSON cannot carry (NaN, infinity), a ``num_predict`` Ollama gives no meaning,
a file that is not an image: each is refused before anything leaves the kernel, from
the magic (a UsageError) and from Python (InvalidRequestError).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from ollama_magic import generate
from ollama_magic.engine.errors import InvalidRequestError
from ollama_magic.engine.request import image_kind

from .conftest import FakeOllama, run


def png() -> bytes:
    """A valid 1x1 PNG."""

    def part(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + part(b"IHDR", ihdr)
        + part(b"IDAT", zlib.compress(b"\x00\x00\xff\x00"))
        + part(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00"


def one_line(ip: Any, capsys: Any, cell: str) -> str:
    result = run(ip, cell)
    assert not result.success
    seen = capsys.readouterr()
    text = (seen.out + seen.err).strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    return text


BAD_NUMBERS = [
    ("-t nan", "-t/--temperature must be a finite number, not nan"),
    ("-t inf", "-t/--temperature must be a finite number, not inf"),
    ("--top-p=-inf", "--top-p must be a finite number, not -inf"),
    ("--options '{\"temperature\": NaN}'", "options.temperature is nan: give a finite number"),
    ('--options \'{"top_k": 5, "mirostat_tau": Infinity}\'', "options.mirostat_tau is inf"),
    ('--options \'{"stop": ["a", -Infinity]}\'', "options.stop[1] is -inf"),
    ("--keep-alive 1e400", "keep_alive '1e400' is inf: give a finite number"),
    ("--keep-alive nan", "keep_alive 'nan' is nan"),
    ("--keep-alive=-inf", "keep_alive '-inf' is -inf"),
    ("--timeout nan", "--timeout must be a positive number of seconds, not nan"),
    ("--timeout inf", "--timeout must be a positive number of seconds, not inf"),
    ("--timeout -1", "--timeout must be a positive number of seconds, not -1"),
    ("--num-predict -3", "--num-predict must be the most tokens to generate, or -1 for no limit, -2 to fill"),
    ("--options '{\"num_predict\": -10}'", "num_predict -10 means nothing to Ollama"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_NUMBERS)
def test_bad_numbers_are_one_line_and_send_nothing(
    ip: Any, fake: FakeOllama, capsys: Any, flags: str, message: str
) -> None:
    line = one_line(ip, capsys, f"%%generate -m tiny {flags}\nHi")
    assert line.startswith("UsageError: "), line
    assert message in line, line
    assert fake.requests == []


def test_bad_numbers_in_the_configuration_send_nothing(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    run(ip, "%config GenerateMagics.options = {'temperature': float('nan')}")
    assert "options.temperature is nan" in one_line(ip, capsys, "%%generate -m tiny\nHi")
    run(ip, "%config GenerateMagics.options = {}")
    run(ip, "%config GenerateMagics.timeout = float('inf')")
    assert "--timeout must be a positive number of seconds, not inf" in one_line(ip, capsys, "%%generate -m tiny\nHi")
    assert fake.requests == []


def test_the_limits_ollama_does_define_are_sent(ip: Any, fake: FakeOllama) -> None:
    for value in (-2, -1, 0, 5):
        fake.reply()
        assert run(ip, f"%%generate -m tiny --num-predict {value} --timeout 30 --keep-alive 1e3\nHi").success
        assert fake.last["options"] == {"num_predict": value}
        assert fake.last["keep_alive"] == 1000.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"options": {"temperature": float("nan")}}, "options.temperature is nan"),
        ({"options": {"num_predict": -3}}, "num_predict -3 means nothing to Ollama"),
        ({"keep_alive": float("inf")}, "keep_alive is inf"),
        ({"keep_alive": "1e400"}, "keep_alive '1e400' is inf"),
        ({"timeout": float("nan")}, "timeout must be a positive number of seconds, not nan"),
        ({"timeout": float("inf")}, "timeout must be a positive number of seconds, not inf"),
        ({"timeout": (5, float("nan"))}, "not nan"),
        ({"images": [b"hello, I am text"]}, "Image 1 (bytes) is not an image Ollama can read"),
    ],
)
def test_python_api_refuses_the_same_and_sends_nothing(fake: FakeOllama, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate("Hi", "tiny", host=fake.host, **kwargs)
    assert fake.requests == []


def test_a_text_file_given_as_image_is_refused_by_name(ip: Any, fake: FakeOllama, capsys: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Shopping: eggs, milk.\n")
    line = one_line(ip, capsys, f"%%generate -m tiny --images {notes}\nDescribe")
    assert line.startswith(f"UsageError: Image file '{notes}' is not an image Ollama can read: ")
    assert "PNG, JPEG, GIF or WebP" in line and "b'Shopping'" in line
    # A picture's name does not make it one: the bytes decide.
    fake_png = tmp_path / "photo.png"
    fake_png.write_bytes(b"%PDF-1.7 not a picture")
    assert "is not an image Ollama can read" in one_line(ip, capsys, f"%%generate -m tiny --images {fake_png}\nHi")
    ip.user_ns["img"] = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
    line = one_line(ip, capsys, f"%%generate -m tiny --images {tmp_path / 'none.png'} img\nHi")
    assert "Image file not found" in line
    line = one_line(ip, capsys, "%%generate -m tiny --images img\nHi")
    assert "Image 1 (bytes) is not an image Ollama can read" in line
    assert fake.requests == []


def test_every_image_format_ollama_reads_is_sent(ip: Any, fake: FakeOllama, tmp_path: Path) -> None:
    files = []
    for name, data in (("a.png", png()), ("b.jpg", JPEG), ("c.gif", GIF), ("d.webp", WEBP)):
        (tmp_path / name).write_bytes(data)
        files.append(str(tmp_path / name))
    fake.reply()
    assert run(ip, f"%%generate -m tiny --images {' '.join(files)}\nDescribe").success
    assert [base64.b64decode(i) for i in fake.last["images"]] == [png(), JPEG, GIF, WEBP]
    assert [image_kind(base64.b64decode(i)) for i in fake.last["images"]] == ["PNG", "JPEG", "GIF", "WebP"]


def test_nothing_sent_is_a_number_json_cannot_carry(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(ip, "%%generate -m tiny -t 0.5 --top-p 1 --keep-alive 5m --timeout 1e9\nHi").success
    json.dumps(fake.last, allow_nan=False)  # what was sent is strict JSON
