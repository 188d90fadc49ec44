"""A real notebook in a real kernel against a real Ollama: what a person actually gets.

One notebook is built with nbformat and executed once (module scope: the kernel start is
the slow part) with nbclient in an ipykernel running this interpreter, with OLLAMA_HOST
pointing at the real server.  The client sends each cell's id the way JupyterLab does
(``metadata.cellId`` of the execute_request; nbclient 0.11 itself sends none), records
every iopub message, interrupts the kernel (SIGINT, as the stop button does) in the middle
of one long answer, and re-runs one cell after the whole notebook ran.  The tests then
read the executed notebook, also after a round trip through the .ipynb file.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient

from .conftest import LONG, SHORT
from .support import HEY, REPO, contains_run, json_output, raw_generate

FACTS = '''\
def facts(**results):
    """Print what the results hold (and where the kernel runs) as one JSON object."""
    out = {
        name: {
            "text": r.text,
            "model": r.model,
            "context": r.context,
            "done_reason": r.done_reason,
            "stats": r.stats.as_dict(),
            "sent_context": r.request.get("context"),
        }
        for name, r in results.items()
    }
    out["kernel"] = {"python": sys.executable, "module": ollama_magic.__file__, "host": os.environ.get("OLLAMA_HOST")}
    print(json.dumps(out))
'''

#: (cell id, source, tags).  Ids are explicit so that the tests can name the cells.
CELLS: list[tuple[str, str, list[str]]] = [
    ("setup", f"import json, os, sys\nimport ollama_magic\n%load_ext ollama_magic\n\n{FACTS}", []),
    ("turn1", f"%%generate -m {SHORT} -o r1\nSay hi", []),
    ("turn2", f"%%generate -m {SHORT} -o r2\nAnd once more: hi", []),
    ("facts", "facts(r1=r1, r2=r2)", []),
    ("stream", f"%%generate -m {LONG} --num-predict 200 --thread counting -o r3\nCount", []),
    ("stream-facts", "facts(r3=r3)", []),
    ("missing", "%%generate -m nope\nHi", ["raises-exception"]),
    ("talk1", f"%%generate -m {LONG} --num-predict 5 --thread talk -o t1\nhi", []),
    ("interrupt", f"%%generate -m {LONG} --num-predict 8000 --thread talk\nhi", ["raises-exception"]),
    ("talk2", f"%%generate -m {LONG} --num-predict 5 --thread talk -o t2\nhi", []),
    ("talk-facts", "facts(t1=t1, t2=t2)", []),
    ("list", "%ollama list", []),
]

#: The interrupt cell is interrupted after this many live updates of its display: the first,
#: so that the answer has begun.  How many more come before the answer ends depends on the
#: server's pace and on how long each render takes, which the test does not control (tiny-long
#: writes thousands of tokens a second; a fresh kernel's first renders are slow), so waiting for
#: a third update let the answer end first in one CI run.  8,000 tokens leave seconds to spare.
INTERRUPT_AFTER_UPDATES = 1


class LabLikeClient(NotebookClient):
    """nbclient plus two things: it sends the cell id as JupyterLab does, and it records iopub.

    It also interrupts the kernel in the middle of the cell whose id is ``interrupt``.
    """

    def __init__(self, nb: Any, **kwargs: Any) -> None:
        super().__init__(nb, on_cell_execute=self._remember_cell, on_notebook_start=self._send_cell_ids, **kwargs)
        self.messages: list[tuple[str, dict[str, Any], float]] = []  # (cell id, message, time)
        self.interrupted_at: float | None = None
        self.interrupt_task: Any = None
        self._cell_id: str | None = None

    def _remember_cell(self, cell: Any, cell_index: int) -> None:
        self._cell_id = cell.get("id")

    def _send_cell_ids(self, notebook: Any) -> None:
        kc = self.kc
        assert kc is not None

        def execute(
            code: str,
            silent: bool = False,
            store_history: bool = True,
            user_expressions: dict[str, Any] | None = None,
            allow_stdin: bool | None = None,
            stop_on_error: bool = True,
        ) -> str:
            content = {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": user_expressions or {},
                "allow_stdin": bool(allow_stdin),
                "stop_on_error": stop_on_error,
            }
            metadata = {"cellId": self._cell_id} if self._cell_id else {}
            msg = kc.session.msg("execute_request", content, metadata=metadata)
            kc.shell_channel.send(msg)
            return str(msg["header"]["msg_id"])

        kc.execute = execute  # type: ignore[method-assign]

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        cell_id = cell.get("id")
        self.messages.append((cell_id, msg, time.monotonic()))
        if cell_id == "interrupt" and msg["msg_type"] == "update_display_data" and self.interrupted_at is None:
            updates = sum(
                1
                for c, m, _ in self.messages
                if c == cell_id
                and m["msg_type"] == "update_display_data"
                and not m["content"]["data"]["text/plain"].startswith("Waiting for ")
            )
            if updates >= INTERRUPT_AFTER_UPDATES:
                assert self.km is not None
                self.interrupted_at = time.monotonic()
                self.interrupt_task = asyncio.ensure_future(ensure_async(self.km.interrupt_kernel()))
        return super().process_message(msg, cell, cell_index)

    def of(self, cell_id: str, *types: str) -> list[dict[str, Any]]:
        return [m for c, m, _ in self.messages if c == cell_id and (not types or m["msg_type"] in types)]


@dataclass
class Executed:
    nb: Any  # the executed notebook (as the client left it)
    saved: Any  # the same notebook after nbformat.write + nbformat.read
    client: LabLikeClient
    facts_first: dict[str, Any]  # the "facts" cell's JSON from the first pass
    facts_rerun: dict[str, Any]  # ... after turn2 was run again
    interrupt_seconds: float | None = None  # from the interrupt to the cell's end

    def cell(self, cell_id: str, *, saved: bool = False) -> Any:
        nb = self.saved if saved else self.nb
        return next(c for c in nb.cells if c.get("id") == cell_id)


def build_notebook() -> Any:
    nb = nbformat.v4.new_notebook()  # nbformat 4.5: cells have ids
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell_id, source, tags in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        cell["id"] = cell_id
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def install_kernelspec(folder: Path) -> None:
    """A ``python3`` kernelspec that runs this very interpreter (found first via JUPYTER_PATH)."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3 (e2e)", "language": "python"}), encoding="utf-8"
    )


@pytest.fixture(scope="module")
def executed(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Executed:
    folder = tmp_path_factory.mktemp("notebook")
    install_kernelspec(folder / "jupyter")
    nb = build_notebook()
    with pytest.MonkeyPatch.context() as mp:
        # The kernel inherits this environment: the server, and the kernelspec above.
        mp.setenv("OLLAMA_HOST", real_host)
        mp.setenv("JUPYTER_PATH", str(folder / "jupyter"))
        client = LabLikeClient(
            nb,
            kernel_name="python3",
            timeout=60,
            startup_timeout=60,
            resources={"metadata": {"path": str(REPO)}},
        )
        try:
            client.execute(cleanup_kc=False)
            facts_first = json_output(next(c for c in nb.cells if c.id == "facts").outputs)
            # The person runs cell "turn2" again, then "facts".
            for cell_id in ("turn2", "facts"):
                index = next(i for i, c in enumerate(nb.cells) if c.id == cell_id)
                client.execute_cell(nb.cells[index], index)
            facts_rerun = json_output(next(c for c in nb.cells if c.id == "facts").outputs)
        finally:
            client._cleanup_kernel()
    interrupt_seconds = None
    if client.interrupted_at is not None:
        idle = [t for c, m, t in client.messages if c == "interrupt" and m["msg_type"] == "status"]
        interrupt_seconds = idle[-1] - client.interrupted_at if idle else None
    path = folder / "executed.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    return Executed(nb, saved, client, facts_first, facts_rerun, interrupt_seconds)


def display_outputs(cell: Any) -> list[Any]:
    return [o for o in cell.outputs if o.output_type == "display_data"]


FOOTER = re.compile(
    r"(?P<model>[\w.:-]+) · (?P<tokens>\d+) tokens · (?P<tps>[\d.]+) tok/s · prompt (?P<prompt>\d+) tokens"
    r" · total [\d.]+ m?s · load [\d.]+ m?s(?: · (?P<reason>cut at --num-predict \d+))? · thread (?P<thread>\w+)"
)


# -- the executed notebook -----------------------------------------------------------


def test_the_kernel_is_this_interpreter_with_this_package_and_server(executed: Executed, real_host: str) -> None:
    kernel = executed.facts_first["kernel"]
    assert kernel["python"] == sys.executable
    assert Path(kernel["module"]).resolve() == (REPO / "ollama_magic" / "__init__.py").resolve()
    assert kernel["host"] == real_host


@pytest.mark.parametrize("saved", [False, True], ids=["executed", "saved-and-read-back"])
def test_the_answer_and_footer_are_in_the_cells_outputs(executed: Executed, saved: bool) -> None:
    cell = executed.cell("turn1", saved=saved)
    (output,) = cell.outputs  # one display, updated in place: its final state is what is kept
    assert output.output_type == "display_data"
    assert set(output.data) == {"text/html", "text/plain"}
    plain, html = output.data["text/plain"], output.data["text/html"]
    assert plain.startswith(HEY + "\n— ")
    assert f"<p>{HEY}</p>" in html
    footer = FOOTER.search(plain)
    assert footer is not None, plain
    r1 = executed.facts_first["r1"]
    assert footer["model"] == SHORT
    assert int(footer["tokens"]) == r1["stats"]["eval_count"]
    assert int(footer["prompt"]) == r1["stats"]["prompt_eval_count"]
    assert float(footer["tps"]) == pytest.approx(r1["stats"]["tokens_per_second"], abs=0.051)
    assert (footer["reason"], footer["thread"]) == (None, "default")  # "stop" needs no word
    assert '<div class="ollama-magic-footer" style=' in html and footer.group(0) in html


def test_the_saved_notebook_is_valid_and_keeps_every_output(executed: Executed) -> None:
    nbformat.validate(executed.saved)
    assert [c.id for c in executed.saved.cells] == [cell_id for cell_id, _, _ in CELLS]
    for before, after in zip(executed.nb.cells, executed.saved.cells, strict=True):
        assert after.outputs == before.outputs
    assert all(c.outputs for c in executed.saved.cells if c.id != "setup")


def test_the_second_cell_continued_the_first_as_the_server_saw_it(executed: Executed, real_host: str) -> None:
    r1, r2 = executed.facts_first["r1"], executed.facts_first["r2"]
    assert r1["text"] == r2["text"] == HEY
    assert r1["sent_context"] is None
    assert r2["sent_context"] == r1["context"]
    # The server evaluated the whole first exchange (r1's context) before the new prompt,
    # and the context it returned holds it.
    fresh = raw_generate(real_host, model=SHORT, prompt="And once more: hi")
    assert r2["stats"]["prompt_eval_count"] == len(r1["context"]) + fresh["prompt_eval_count"]
    assert contains_run(r2["context"], r1["context"])


def test_rerunning_a_cell_branches_from_where_it_first_started(executed: Executed) -> None:
    first, rerun = executed.facts_first, executed.facts_rerun
    # turn2 again continues r1 (where it started the first time), not its own answer r2.
    assert rerun["r2"]["sent_context"] == first["r1"]["context"]
    assert rerun["r2"]["context"] == first["r2"]["context"]
    assert rerun["r2"]["stats"]["prompt_eval_count"] == first["r2"]["stats"]["prompt_eval_count"]
    assert rerun["r1"] == first["r1"]


def test_a_missing_model_is_one_line_in_the_notebook(executed: Executed) -> None:
    cell = executed.cell("missing", saved=True)
    (error,) = cell.outputs
    assert error.output_type == "error"
    assert error.ename == "ModelNotFoundError"
    assert error.traceback == [f"ModelNotFoundError: {error.evalue}"]
    assert error.evalue.startswith("Model 'nope' is not on the Ollama server at http://")
    assert "ollama pull nope" in error.evalue


def test_ollama_list_in_the_kernel(executed: Executed) -> None:
    (output,) = executed.cell("list").outputs
    assert output.output_type == "stream"
    rows = {line.split()[0]: line.split() for line in output.text.splitlines()[1:]}
    assert rows[f"{SHORT}:latest"][3] == "llama"  # NAME SIZE(2 words) FAMILY ...
    assert f"{LONG}:latest" in rows


# -- streaming, seen from the frontend -------------------------------------------------


def test_the_answer_streams_into_one_display_updated_in_place(executed: Executed) -> None:
    messages = executed.client.of("stream", "display_data", "update_display_data")
    ids = {m["content"]["transient"]["display_id"] for m in messages}
    assert len(ids) == 1
    assert messages[0]["msg_type"] == "display_data"
    assert all(m["msg_type"] == "update_display_data" for m in messages[1:])
    texts = [m["content"]["data"]["text/plain"] for m in messages]
    texts = [t for t in texts if not t.startswith("Waiting for ")]  # shown if the model loads slowly
    *live, final = texts
    # At least one render while it streamed, before the final one.  How many more depends on
    # this server's pace (tiny-long writes 200 tokens in about 0.15 s) and on how long a fresh
    # kernel's first render takes, which no test controls; the pace itself (one render per
    # interval, slowed by slow renders and by the display budget) is tested with a scripted
    # clock in tests/test_display.py.
    assert live, texts
    assert all("tok/s" not in t for t in live)  # live renders have no footer
    assert [len(t) for t in live] == sorted({len(t) for t in live})  # each shows more
    assert all(t and ("Hey now! " * 30).startswith(t) for t in live)
    assert "· 200 tokens ·" in final and "· cut at --num-predict 200 · thread counting" in final
    r3 = json_output(executed.cell("stream-facts").outputs)["r3"]
    assert r3["stats"]["eval_count"] == 200 and r3["done_reason"] == "length"
    assert final.startswith(r3["text"])
    # The notebook keeps only the final state of the display.
    (kept,) = display_outputs(executed.cell("stream", saved=True))
    assert kept.data["text/plain"] == final


# -- Ctrl-C: the kernel is interrupted in the middle of an answer -------------------------


def test_interrupting_the_kernel_stops_the_answer_at_once(executed: Executed) -> None:
    assert executed.client.interrupted_at is not None, "the answer ended before it could be interrupted"
    # 8000 tokens take seconds on this server; stopping must not wait for them.
    assert executed.interrupt_seconds is not None and executed.interrupt_seconds < 5
    cell = executed.cell("interrupt", saved=True)
    kinds = [o.output_type for o in cell.outputs]
    assert kinds == ["display_data", "error"]
    shown, error = cell.outputs
    assert error.ename == "GenerationInterrupted"
    # One calm message: the error output (JupyterLab shows "ename: evalue" for an empty
    # traceback, so the traceback is the sentence itself), and nothing more in the answer.
    assert error.traceback == ["Interrupted: the answer so far is kept; the conversation is unchanged."]
    partial = shown.data["text/plain"]
    assert partial and ("Hey now! " * 1000).startswith(partial)  # what had arrived, nothing else
    assert len(partial) < 2000  # far from the end
    assert "tok/s" not in partial and "nterrupt" not in shown.data["text/html"]


def test_the_interrupted_turn_left_the_thread_as_it_was(executed: Executed, real_host: str) -> None:
    facts = json_output(executed.cell("talk-facts").outputs)
    t1, t2 = facts["t1"], facts["t2"]
    assert t2["sent_context"] == t1["context"]
    # Fake-free: the server's answer to "continue t1" is exactly what talk2 got.
    reference = raw_generate(real_host, model=LONG, prompt="hi", context=t1["context"], options={"num_predict": 5})
    assert t2["context"] == reference["context"]
    assert t2["stats"]["prompt_eval_count"] == reference["prompt_eval_count"]
