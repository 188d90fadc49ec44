"""``--to-cell`` and ``%ollama explain`` in a real kernel against the real Ollama.

The kernel is driven through jupyter_client as a frontend drives it, so what is checked
is what JupyterLab receives: the ``set_next_input`` payload of the execute reply (the new
cell below, not run) and the outputs on iopub.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from .conftest import SHORT
from .support import HEY
from .test_notebook_e2e import install_kernelspec


class Kernel:
    """A real ipykernel: run code, get the execute reply and what was shown."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, code: str, timeout: float = 120) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        msg_id = self.client.execute(code)
        outputs: list[dict[str, Any]] = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"the kernel did not finish {code!r}")
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind in ("stream", "display_data", "update_display_data", "execute_result", "error"):
                outputs.append({"type": kind, **msg["content"]})
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        while True:  # replies to earlier requests (kernel_info at start) may come first
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], outputs


@contextlib.contextmanager
def open_kernel(host: str, model: str, folder: Path) -> Iterator[Kernel]:
    """A real ipykernel (as JupyterLab starts one) with the extension loaded and ``model`` the default."""
    install_kernelspec(folder / "jupyter")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OLLAMA_HOST", host)
        mp.setenv("JUPYTER_PATH", str(folder / "jupyter"))
        manager, client = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        k = Kernel(client)
        reply, _ = k.run(f"%load_ext ollama_magic\n%config GenerateMagics.model = '{model}'")
        assert reply["status"] == "ok"
        yield k
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    with open_kernel(real_host, SHORT, tmp_path_factory.mktemp("learner")) as k:
        yield k


def shown_text(outputs: list[dict[str, Any]]) -> str:
    texts = [o["data"].get("text/plain", "") for o in outputs if "data" in o]
    return (texts[-1] if texts else "") + "".join(o.get("text", "") for o in outputs if o["type"] == "stream")


def test_to_cell_puts_the_answer_in_a_new_cell_below_and_runs_nothing(kernel: Kernel) -> None:
    reply, outputs = kernel.run("%%generate --to-cell --no-context\nhi")
    assert reply["status"] == "ok"
    assert reply["payload"] == [{"source": "set_next_input", "text": HEY, "replace": False}]
    assert HEY in shown_text(outputs)  # the answer is still shown
    # The payload is only text for the frontend to put in a cell; without --to-cell, none.
    reply, _ = kernel.run("%%generate --no-context\nhi")
    assert reply["payload"] == []


def test_explain_without_an_error_says_so(kernel: Kernel) -> None:
    # (this module's kernel has not failed yet when this test runs first; pytest keeps file order)
    reply, outputs = kernel.run("%ollama explain")
    assert reply["status"] == "ok"
    assert shown_text(outputs) == (
        "There is no error to explain: no cell has failed in this kernel since ollama_magic was loaded.\n"
    )


def test_explain_sends_the_last_error_to_the_model_in_its_own_thread(kernel: Kernel) -> None:
    reply, _ = kernel.run("%%generate -o before\nhi")
    assert reply["status"] == "ok"
    reply, _ = kernel.run("numbers = [1, 2, 3]\nnumbers[7]")
    assert reply["status"] == "error" and reply["ename"] == "IndexError"
    reply, outputs = kernel.run("%ollama explain")
    assert reply["status"] == "ok"
    shown = shown_text(outputs)
    assert shown.startswith(HEY) and "thread explain" in shown
    reply, outputs = kernel.run("%ollama threads")
    table = shown_text(outputs)
    assert any(line.split()[:2] == ["explain", SHORT] for line in table.splitlines()), table
    # The default thread was left alone: it still continues the answer before the error.
    reply, _ = kernel.run("%%generate -o after\nhi\n")
    assert reply["status"] == "ok"
    reply, outputs = kernel.run("print(after.request['context'] == before.context)")
    assert shown_text(outputs).strip() == "True"


def test_each_answer_records_how_it_was_made_in_its_output_metadata(kernel: Kernel, real_host: str) -> None:
    import requests

    from .support import url

    version = requests.get(f"{url(real_host)}/api/version", timeout=10).json()["version"]
    reply, outputs = kernel.run("%%generate -t 0 --num-predict 20 --thread provenance\nhi")
    assert reply["status"] == "ok"
    final = [o for o in outputs if o["type"] in ("display_data", "update_display_data")][-1]
    record = final["metadata"]["ollama_magic"]
    assert record["model"] == SHORT and record["thread"] == "provenance" and record["server_version"] == version
    assert record["options"] == {"temperature": 0.0, "num_predict": 20}
    assert record["done_reason"] == "stop" and record["complete"] is True
