"""The next %%generate continues the conversation; re-run cells branch; failures change nothing."""

from __future__ import annotations

from typing import Any

from ollama_magic.engine.conversation import ConversationStore

from .conftest import FakeOllama, chunk, run


def test_second_cell_sends_the_first_cells_context(ip: Any, fake: FakeOllama) -> None:
    fake.reply("One", context=[1, 2, 3])
    fake.reply("Two", context=[1, 2, 3, 4, 5])
    fake.reply("Three", context=[9])
    run(ip, "%%generate -m tiny\nFirst")
    run(ip, "%%generate -m tiny\nSecond")
    run(ip, "%%generate -m tiny\nThird")
    assert "context" not in fake.requests[0]
    assert fake.requests[1]["context"] == [1, 2, 3]
    assert fake.requests[2]["context"] == [1, 2, 3, 4, 5]


def test_threads_are_separate(ip: Any, fake: FakeOllama) -> None:
    fake.reply(context=[1])
    fake.reply(context=[2])
    fake.reply(context=[3])
    run(ip, "%%generate -m tiny --thread a\nA")
    run(ip, "%%generate -m tiny --thread b\nB")
    run(ip, "%%generate -m tiny --thread a\nA again")
    assert "context" not in fake.requests[1]
    assert fake.requests[2]["context"] == [1]


def test_rerunning_a_cell_branches_from_where_it_first_started(ip: Any, fake: FakeOllama) -> None:
    for ctx in ([1], [1, 2], [1, 2, 3], [1, 5]):
        fake.reply(context=ctx)
    run(ip, "%%generate -m tiny\nA", cell_id="cell-a")
    run(ip, "%%generate -m tiny\nB", cell_id="cell-b")
    run(ip, "%%generate -m tiny\nC", cell_id="cell-c")
    run(ip, "%%generate -m tiny\nB again", cell_id="cell-b")  # the user re-runs cell B
    assert fake.requests[3]["context"] == [1]  # where B first started, not C's [1, 2, 3]
    fake.reply(context=[7])
    run(ip, "%%generate -m tiny\nD", cell_id="cell-d")  # a new cell continues the newest answer
    assert fake.requests[4]["context"] == [1, 5]


def test_without_cell_ids_order_decides(ip: Any, fake: FakeOllama) -> None:
    fake.reply(context=[1])
    fake.reply(context=[2])
    fake.reply(context=[3])
    cell = "%%generate -m tiny\nSame text"
    run(ip, cell)
    run(ip, cell)
    run(ip, cell)
    assert fake.requests[2]["context"] == [2]


def test_several_generates_in_one_cell_chain(ip: Any, fake: FakeOllama) -> None:
    fake.reply(context=[1])
    fake.reply(context=[1, 2])
    fake.reply(context=[1, 2, 3])
    run(ip, "%generate -m tiny one\n%generate -m tiny two", cell_id="x")
    assert fake.requests[1]["context"] == [1]
    run(ip, "%generate -m tiny one again", cell_id="x")
    assert "context" not in fake.requests[2]


def test_new_starts_afresh_and_no_context_neither_sends_nor_stores(ip: Any, fake: FakeOllama) -> None:
    fake.reply(context=[1])
    fake.reply(context=[2])
    fake.reply(context=[3])
    fake.reply(context=[4])
    run(ip, "%%generate -m tiny\nA")
    run(ip, "%%generate -m tiny --new\nB")
    assert "context" not in fake.requests[1]
    run(ip, "%%generate -m tiny --no-context\nC")
    assert "context" not in fake.requests[2]
    run(ip, "%%generate -m tiny\nD")
    assert fake.requests[3]["context"] == [2]  # C stored nothing


def test_raw_sends_and_stores_no_context(ip: Any, fake: FakeOllama) -> None:
    fake.reply(context=[1])
    fake.stream(chunk("raw answer"), {"model": "tiny", "response": "", "done": True, "done_reason": "stop"})
    fake.reply(context=[3])
    run(ip, "%%generate -m tiny\nA")
    run(ip, "%%generate -m tiny --raw\n[INST] B [/INST]")
    assert "context" not in fake.requests[1]
    assert fake.requests[1]["raw"] is True
    run(ip, "%%generate -m tiny\nC")
    assert fake.requests[2]["context"] == [1]


def test_a_model_switch_starts_fresh_and_says_so_in_context_mode(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply(context=[1], model="tiny")
    fake.reply(context=[2], model="other")
    fake.reply(context=[3], model="other")
    ip.run_line_magic("config", "GenerateMagics.conversation = 'context'")
    run(ip, "%%generate -m tiny\nA")
    capsys.readouterr()
    run(ip, "%%generate -m other\nB")
    assert fake.paths[1] == "/api/generate" and "context" not in fake.requests[1]
    assert "new conversation: the context of tiny cannot continue with other" in capsys.readouterr().out
    run(ip, "%%generate -m other\nC")
    assert fake.requests[2]["context"] == [2]


def test_result_object_in_the_namespace(ip: Any, fake: FakeOllama) -> None:
    fake.stream(chunk("Hey"), chunk(" now!"), {**final_with(context=[5, 6])})
    run(ip, "%%generate -m tiny -o r\nHi")
    r = ip.user_ns["r"]
    assert r.text == "Hey now!"
    assert r.model == "tiny"
    assert r.context == [5, 6]
    assert r.done_reason == "stop"
    assert r.thinking is None
    assert r.data is None
    assert r.stats.eval_count == 4
    assert r.stats.tokens_per_second == 100.0
    assert r.thread == "default"
    assert repr(r) == "GenerationResult(model='tiny', tokens=4, 100.0 tok/s, done_reason='stop', text='Hey now!')"


def test_threads_and_reset_commands(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply(context=[1, 2, 3])
    fake.reply(context=[4])
    run(ip, "%%generate -m tiny --thread story\nOnce")
    capsys.readouterr()
    run(ip, "%ollama threads")
    out = capsys.readouterr().out
    assert "story" in out and "tiny" in out and "3" in out
    run(ip, "%ollama reset story")
    assert "Forgot thread(s): story" in capsys.readouterr().out
    run(ip, "%%generate -m tiny --thread story\nAgain")
    assert "context" not in fake.requests[1]


def final_with(**extra: Any) -> dict[str, Any]:
    from .conftest import final

    return final(**extra)


def test_store_unit_model_switch_without_context_continues_from_the_messages() -> None:
    store = ConversationStore()
    start = store.start("t", "a", None)
    store.commit("t", start, "a", None)
    switched = store.start("t", "b", None)
    assert switched.messages == [] and switched.note is not None and "b continued a's conversation" in switched.note
