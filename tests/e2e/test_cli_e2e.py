"""The command line against the real server, run as a person runs it: a subprocess.

``python -m ollama_magic.examples.generate_example`` and ``ollama-magic generate`` (here
through ``python -m ollama_magic.cli``, the console script's target).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from .conftest import LONG, SHORT
from .support import HEY, free_port

EXAMPLE = [sys.executable, "-m", "ollama_magic.examples.generate_example"]
CONSOLE = [sys.executable, "-m", "ollama_magic.cli", "generate"]


def cli(real_host: str, *args: str, command: list[str] = EXAMPLE, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "OLLAMA_MAGIC_MODEL"}
    environment.update(OLLAMA_HOST=real_host, **env)
    return subprocess.run([*command, *args], capture_output=True, text=True, env=environment, timeout=120, check=False)


def test_the_answer_goes_to_stdout_and_the_statistics_to_stderr(real_host: str) -> None:
    done = cli(real_host, "--prompt", "Explain AI ethics.", "--model", SHORT, "--stream", "--temperature", "0.7")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{HEY}\n"  # `> answer.txt` keeps only the answer
    (stats,) = done.stderr.strip().splitlines()
    assert stats.startswith(SHORT) and "9 tokens" in stats


def test_no_stream_and_the_console_command_give_the_same_answer(real_host: str) -> None:
    done = cli(real_host, "--prompt", "Why?", "--model", SHORT, "--no-stream", command=CONSOLE)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{HEY}\n"


def test_the_model_defaults_to_ollama_magic_model(real_host: str) -> None:
    done = cli(real_host, "--prompt", "Hi.", OLLAMA_MAGIC_MODEL=SHORT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{HEY}\n"
    assert done.stderr.startswith(SHORT)


def test_a_missing_model_falls_back_once_and_says_so(real_host: str) -> None:
    done = cli(real_host, "--prompt", "Hi.", "--model", "no-such-model", "--fallback-model", SHORT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{HEY}\n"
    assert done.stderr.splitlines()[0] == f"model no-such-model not found; answering with {SHORT}"


def test_the_default_fallback_is_the_servers_first_model(real_host: str) -> None:
    # The server's first model may be tiny-long, which never stops by itself: cap it.
    done = cli(real_host, "--prompt", "Hi.", "--model", "no-such-model", "--no-stream", "--num-predict", "20")
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("model no-such-model not found; answering with ")
    assert first.rsplit(" ", 1)[1].split(":")[0] in {SHORT, LONG} or done.stdout.strip()


def test_no_fallback_is_one_line_and_a_failure(real_host: str) -> None:
    done = cli(real_host, "--prompt", "Hi.", "--model", "no-such-model", "--no-fallback")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "error: Model 'no-such-model' is not on the Ollama server" in line


def test_an_unreachable_server_is_one_line(real_host: str) -> None:
    done = cli(f"127.0.0.1:{free_port()}", "--prompt", "Hi.", "--model", SHORT)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "Could not reach Ollama" in line and "Traceback" not in done.stderr


def test_bad_arguments_are_usage_errors(real_host: str) -> None:
    done = cli(real_host, "--model", SHORT)
    assert done.returncode == 2 and "--prompt" in done.stderr and "Traceback" not in done.stderr
    done = cli(real_host, "--prompt", "x", "--temperature", "hot")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_ctrl_c_exits_quietly_with_130(real_host: str) -> None:
    environment = {**os.environ, "OLLAMA_HOST": real_host}
    process = subprocess.Popen(
        [*EXAMPLE, "--prompt", "Go on.", "--model", LONG],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    first = process.stdout.read(8)  # the answer is streaming
    assert first
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out: Any
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err == ""  # no traceback, no message
    assert (first + out).startswith("Hey now!")
