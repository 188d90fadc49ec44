"""The panel against the real Ollama: turns continue, Stop ends a long answer at once, and
the server really stopped (the next answer is not queued behind the stopped one)."""

from __future__ import annotations

import time
from typing import Any

from ollama_magic.widgets.panel import STOPPED, GeneratePanel

from .conftest import LONG, SHORT


def wait_for(condition: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_panel_continues_and_stops_against_the_real_server(real_host: str) -> None:
    panel = GeneratePanel(host=real_host, model=SHORT, update_interval=0.0)
    assert SHORT in {name.split(":")[0] for name in panel.model.options}
    panel.prompt.value = "hi"
    panel.start()
    panel.wait(120)
    assert "Hey now!" in panel.output.value
    first = panel.result
    assert first is not None and first.context
    panel.start()
    panel.wait(120)
    assert panel.result is not None and panel.result.request["context"] == first.context
    assert "Hey now!" in panel.history.value  # the first turn is still in view

    panel.model.value = LONG
    panel.num_predict.value = 20000  # minutes of text if it were not stopped
    panel.new_conversation()
    panel.start()
    assert wait_for(lambda: "Hey now! Hey now!" in panel.output.value)
    panel.stop()
    panel.wait(10)
    assert panel._worker is not None and not panel._worker.is_alive()
    assert STOPPED in panel.output.value
    assert panel.result is not None and panel.result.complete is False
    assert len(panel.result.text) < 20000 * 4

    # The server stopped generating: a short answer now comes without waiting behind it.
    panel.model.value = SHORT
    panel.num_predict.value = -1
    panel.start()
    panel.wait(60)
    assert panel.result is not None and panel.result.complete and "Hey now!" in panel.result.text
