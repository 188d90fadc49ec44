"""Notebook integrity: cells are run as written, and ``-o NAME`` is never stale.

- the ``%generate ... why?`` rewrite touches only a top-level ``%generate`` line, never a
  line of a ``%%generate`` prompt or of a string literal (in a kernel and in terminal IPython);
- after a failed or interrupted generation, ``-o NAME`` holds that partial result, with
  ``complete`` False and the reason on it, and the cell still fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ollama_magic.notebook.magics import keep_question_marks

from .conftest import FakeOllama, chunk, final, run


def test_a_generate_line_inside_a_generate_cell_is_part_of_the_prompt(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    body = "Answer these:\n%generate why?\nand\n%generate -m other how?"
    assert run(ip, f"%%generate -m tiny\n{body}").success
    assert fake.last["prompt"] == body
    assert len(fake.requests) == 1


def test_a_generate_line_inside_a_string_literal_is_left_alone(ip: Any, fake: FakeOllama) -> None:
    cell = "s = \"\"\"\n%generate why?\n\"\"\"\nt = '''x\n    %generate -m tiny how?'''"
    assert run(ip, cell).success
    assert ip.user_ns.pop("s") == "\n%generate why?\n"
    assert ip.user_ns.pop("t") == "x\n    %generate -m tiny how?"
    assert fake.requests == []


def test_top_level_lines_still_keep_their_question_mark(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    fake.reply()
    cell = (
        's = """\n%generate -m tiny no?\n"""\n'
        "%generate -m tiny Is it (really blue?\n"
        "if True:\n    %generate -m tiny why?"
    )
    assert run(ip, cell).success
    assert [r["prompt"] for r in fake.requests] == ["Is it (really blue?", "why?"]
    assert ip.user_ns.pop("s") == "\n%generate -m tiny no?\n"


def test_other_lines_are_kept_exactly() -> None:
    lines = ["x = f(1,\n", "%generate why?)\n", "y = 1 + \\\n", "%generate why?\n"]
    assert keep_question_marks(lines) == lines
    cell_magic = ["%%time\n", "%generate why?\n"]
    assert keep_question_marks(cell_magic) == cell_magic


def test_terminal_ipython_runs_the_line_and_keeps_the_string(fake: FakeOllama, tmp_path: Path) -> None:
    fake.reply("Because.")
    script = (
        "%load_ext ollama_magic\n"
        f"%config GenerateMagics.host = {fake.host!r}\n"
        "%generate -m tiny why?\n"
        's = """\n%generate why?\n"""\n'
        "print(repr(s))\n"
    )
    env = {**os.environ, "IPYTHONDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("OLLAMA_HOST", None)
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner", "--HistoryManager.enabled=False"],
        input=script,
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert [r["prompt"] for r in fake.requests] == ["why?"]
    assert "Because." in done.stdout
    assert "'\\n%generate why?\\n'" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# -- -o NAME after a failure ---------------------------------------------------------------


def test_out_after_a_failed_generation_holds_the_partial_answer(ip: Any, fake: FakeOllama) -> None:
    fake.reply("First answer.", context=[1])
    assert run(ip, "%%generate -m tiny -o rr\nFirst").success
    assert ip.user_ns["rr"].text == "First answer."
    fake.stream(chunk("Half"), chunk(" an answer"), {"error": "model runner crashed"})
    outcome = run(ip, "%%generate -m tiny -o rr\nSecond")
    assert not outcome.success  # the cell still fails, so Run All stops here
    rr = ip.user_ns.pop("rr")
    assert rr.text == "Half an answer"
    assert rr.complete is False
    assert rr.error == "Ollama reported an error: model runner crashed"
    assert "error='Ollama reported an error" in repr(rr)
    assert rr.thread == "default"


def test_out_after_a_failure_before_any_text_is_an_empty_incomplete_result(ip: Any, fake: FakeOllama) -> None:
    fake.reply("First answer.")
    assert run(ip, "%generate -m tiny -o rr First").success
    fake.error(404, "model 'nope' not found")
    assert not run(ip, "%generate -m nope -o rr Second").success
    rr = ip.user_ns.pop("rr")
    assert (rr.text, rr.complete, rr.model) == ("", False, "nope")
    assert "is not on the Ollama server" in rr.error
    assert not run(ip, "%generate -m tiny --host 127.0.0.1:9 -o rr Third").success  # nothing listens
    rr = ip.user_ns.pop("rr")
    assert (rr.text, rr.complete) == ("", False)
    assert rr.error.startswith("Could not reach Ollama at http://127.0.0.1:9")


def test_out_after_an_interrupt_holds_the_partial_answer(ip: Any, fake: FakeOllama, monkeypatch: Any) -> None:
    fake.reply("First answer.")
    assert run(ip, "%generate -m tiny -o rr First").success
    fake.stream(*(chunk(f"w{i} ") for i in range(200)), final([9]), delay=0.01)
    from ollama_magic.display import render

    calls = {"n": 0}
    original = render.TerminalView.chunk

    def chunk_then_interrupt(self: Any, piece: str, thought: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(self, piece, thought)

    monkeypatch.setattr(render.TerminalView, "chunk", chunk_then_interrupt)
    assert not run(ip, "%generate -m tiny -o rr Long").success
    rr = ip.user_ns.pop("rr")
    assert rr.text.startswith("w0 w1 w2") and rr.complete is False
    assert rr.error == "Interrupted: the answer so far is kept; the conversation is unchanged."


def test_every_example_takes_its_model_as_a_papermill_parameter() -> None:
    """One cell tagged ``parameters`` sets ``model``; the next code cell applies it before any answer."""
    import nbformat

    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.ipynb"))
    assert len(examples) >= 9
    for path in examples:
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        first = tagged[0]
        assert re.search(r'^model = ""', cells[first].source, re.MULTILINE), path.name
        assert not any("generate" in c.source for c in cells[:first]), path.name
        after = cells[first + 1].source
        assert 'os.environ["OLLAMA_MAGIC_MODEL"] = model' in after or "GeneratePanel(model=model)" in after, path.name
