"""Conversations that outlive ``context``: threads keep their messages and continue through
``/api/chat`` when a server returns no context, when the model changes, or when asked to.

The fake server answers /api/chat as Ollama does (the text in ``message``, no context); a
final object without ``context`` is what a cloud model or a future Ollama sends.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ollama_magic import generate
from ollama_magic.engine.conversation import ConversationStore

from .conftest import FakeOllama, chunk, final, run
from .echo_server import serve


def no_context(fake: FakeOllama, text: str = "Hey now!", model: str = "tiny", **extra: Any) -> None:
    """Queue an answer whose final object carries no context (as a cloud model's)."""
    fake.stream(chunk(text, model), final(None, model, **extra))


def test_an_answer_without_context_makes_the_next_turn_continue_through_chat(
    ip: Any, fake: FakeOllama, tmp_path: Path, capsys: Any
) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    encoded = base64.b64encode(picture.read_bytes()).decode()
    no_context(fake, "Hello Ada.")
    no_context(fake, "A cat.")
    no_context(fake, "Ada.")
    run(ip, "%%generate -m tiny --system 'Be brief.'\nMy name is Ada.")
    assert fake.paths == ["/api/generate"]
    capsys.readouterr()
    run(ip, f"%%generate -m tiny --images {picture}\nWhat is this?")
    assert fake.paths[1] == "/api/chat"
    assert fake.requests[1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is this?", "images": [encoded]},
    ]
    assert "context" not in fake.requests[1] and "prompt" not in fake.requests[1]
    out = capsys.readouterr().out
    assert "A cat." in out
    assert "the thread continues from its messages: this server returned no context" in out
    run(ip, "%%generate -m tiny -o r\nWhat is my name?")
    assert fake.paths[2] == "/api/chat"
    sent = fake.requests[2]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert sent[3]["images"] == [encoded] and sent[4] == {"role": "assistant", "content": "A cat."}
    assert "continues from its messages" not in capsys.readouterr().out  # said once, not every turn
    r = ip.user_ns["r"]
    assert r.text == "Ada." and r.context is None and r.thread == "default"
    assert r.messages == [*sent, {"role": "assistant", "content": "Ada."}]


def test_chat_turns_carry_options_format_think_keep_alive_logprobs_and_retry(ip: Any, fake: FakeOllama) -> None:
    no_context(fake)
    run(ip, "%%generate -m tiny\nFirst")
    ip.user_ns["schema"] = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    no_context(fake, '{"n": "x"}')
    no_context(fake, '{"n": 2}')
    cell = "%%generate -m tiny -t 0.3 --format schema --retries 1 --think --keep-alive 5m --logprobs 2 -o r\nCount"
    assert run(ip, cell).success
    first, retry = fake.requests[1], fake.requests[2]
    assert fake.paths[1:] == ["/api/chat", "/api/chat"]
    assert first["options"] == {"temperature": 0.3} and first["format"] == ip.user_ns["schema"]
    assert (first["think"], first["keep_alive"], first["logprobs"], first["top_logprobs"]) == (True, "5m", True, 2)
    assert retry["messages"][:2] == first["messages"][:2]  # the retry starts from the same conversation
    assert "A previous answer was" in retry["messages"][-1]["content"]
    assert ip.user_ns["r"].data == {"n": 2}
    no_context(fake)
    run(ip, "%%generate -m tiny\nNext")
    answers = [m["content"] for m in fake.last["messages"] if m["role"] == "assistant"]
    assert answers == ["Hey now!", '{"n": 2}']  # only the accepted answer joined the thread


def test_rerunning_a_cell_in_messages_mode_branches_from_where_it_first_started(ip: Any, fake: FakeOllama) -> None:
    ip.run_line_magic("config", "GenerateMagics.conversation = 'messages'")
    for text in ("a1", "b1", "c1", "b2"):
        no_context(fake, text)
    run(ip, "%%generate -m tiny\nA", cell_id="cell-a")
    run(ip, "%%generate -m tiny\nB", cell_id="cell-b")
    run(ip, "%%generate -m tiny\nC", cell_id="cell-c")
    run(ip, "%%generate -m tiny\nB again", cell_id="cell-b")
    assert fake.paths == ["/api/chat"] * 4  # messages mode: every turn, the first too
    assert fake.requests[0]["messages"] == [{"role": "user", "content": "A"}]
    assert [m["content"] for m in fake.requests[3]["messages"]] == ["A", "a1", "B again"]
    no_context(fake, "d1")
    run(ip, "%%generate -m tiny\nD", cell_id="cell-d")  # a new cell continues the newest answer
    assert [m["content"] for m in fake.last["messages"]] == ["A", "a1", "B again", "b2", "D"]


def test_new_and_no_context_and_reset_work_in_messages_mode(ip: Any, fake: FakeOllama) -> None:
    for text in ("a", "b", "c", "d", "e"):
        no_context(fake, text)
    run(ip, "%%generate -m tiny --conversation messages\nA")
    run(ip, "%%generate -m tiny --conversation messages --new\nB")
    assert fake.requests[1]["messages"] == [{"role": "user", "content": "B"}]
    run(ip, "%%generate -m tiny --no-context\nC")
    assert fake.paths[2] == "/api/generate"
    run(ip, "%%generate -m tiny --conversation messages\nD")
    assert [m["content"] for m in fake.requests[3]["messages"]] == ["B", "b", "D"]  # C stored nothing
    run(ip, "%ollama reset")
    run(ip, "%%generate -m tiny --conversation messages\nE")
    assert fake.requests[4]["messages"] == [{"role": "user", "content": "E"}]


def test_another_model_continues_the_conversation_and_the_footer_says_so(
    ip: Any, fake: FakeOllama, capsys: Any
) -> None:
    fake.reply("I am tiny.", context=[1, 2], model="tiny")
    no_context(fake, "Still here.", model="other")
    run(ip, "%%generate -m tiny\nWho are you?")
    capsys.readouterr()
    run(ip, "%%generate -m other -o r\nAnd now?")
    assert fake.paths == ["/api/generate", "/api/chat"]
    assert fake.last["model"] == "other"
    assert fake.last["messages"] == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am tiny."},
        {"role": "user", "content": "And now?"},
    ]
    assert "other continued tiny's conversation" in capsys.readouterr().out
    assert ip.user_ns["r"].messages[-1] == {"role": "assistant", "content": "Still here."}


def test_context_mode_says_the_conversation_starts_afresh_when_there_is_no_context(
    ip: Any, fake: FakeOllama, capsys: Any
) -> None:
    ip.run_line_magic("config", "GenerateMagics.conversation = 'context'")
    no_context(fake)
    no_context(fake)
    run(ip, "%%generate -m tiny\nMy name is Ada.")
    capsys.readouterr()
    run(ip, "%%generate -m tiny\nWhat is my name?")
    assert fake.paths == ["/api/generate", "/api/generate"] and "context" not in fake.last
    assert "new conversation: the last answer came with no context" in capsys.readouterr().out


def test_a_comparison_keeps_one_message_list_per_model(ip: Any) -> None:
    # The threaded echo server answers both models at once, each from its own request.
    with serve() as echo:
        ip.run_line_magic("config", f"GenerateMagics.host = {echo.host!r}")
        run(ip, "%%generate -m a -m b --conversation messages\nHi")
        run(ip, "%%generate -m a -m b --conversation messages -o r\nAgain")
        later = {body["model"]: body["messages"] for body in echo.bodies[2:]}
    for model in ("a", "b"):
        assert later[model] == [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "echo: Hi"},
            {"role": "user", "content": "Again"},
        ]
    assert ip.user_ns["r"]["a"].messages[-1] == {"role": "assistant", "content": "echo: Again"}
    assert ip.user_ns["r"]["a"].thread == "default [a]"


def test_a_failed_chat_turn_leaves_the_messages_as_they_were_and_thinking_is_kept(ip: Any, fake: FakeOllama) -> None:
    fake.stream(chunk("", thinking="Ada said her name."), chunk("Hello Ada."), final(None))
    run(ip, "%%generate -m tiny --think\nMy name is Ada.")
    fake.error(500, "the model crashed")
    assert not run(ip, "%%generate -m tiny\nWhat is my name?").success
    no_context(fake, "Ada.")
    run(ip, "%%generate -m tiny\nWhat is my name, again?")
    assert fake.last["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada.", "thinking": "Ada said her name."},
        {"role": "user", "content": "What is my name, again?"},
    ]


def test_each_stays_outside_threads(ip: Any, fake: FakeOllama) -> None:
    ip.user_ns["names"] = ["a", "b"]
    result = run(ip, "%%generate -m tiny --each names --conversation messages\nHi {item}")
    assert not result.success and "--each items never touch conversation threads" in str(result.error_in_exec)
    ip.run_line_magic("config", "GenerateMagics.conversation = 'messages'")
    fake.reply()
    fake.reply()
    assert run(ip, "%%generate -m tiny --each names\nHi {item}").success
    assert fake.paths == ["/api/generate", "/api/generate"]  # a batch is not a conversation
    assert ip.magics_manager.registry["GenerateMagics"].conversations.threads == {}


def test_a_cached_chat_turn_moves_the_thread_on_as_when_it_was_generated(
    ip: Any, fake: FakeOllama, tmp_path: Path
) -> None:
    fake.server.expect_request("/api/tags").respond_with_json({"models": []})
    cache = tmp_path / "answers.sqlite"
    for _ in range(2):
        no_context(fake, "Hello.")
        no_context(fake, "Again.")
    for _ in range(2):  # the second run replays both turns from the cache
        run(ip, "%ollama reset")
        run(ip, f"%%generate -m tiny --cache {cache}\nHi")
        run(ip, f"%%generate -m tiny --cache {cache} -o r\nMore")
    assert fake.paths == ["/api/generate", "/api/chat"]
    assert ip.user_ns["r"].cached
    assert [m["content"] for m in ip.user_ns["r"].messages] == ["Hi", "Hello.", "More", "Again."]


def test_options_chat_cannot_carry_are_refused_in_one_line_and_nothing_is_sent(
    ip: Any, fake: FakeOllama, capsys: Any
) -> None:
    for flag in ("--raw", "--template '{{ .Prompt }}'", "--suffix end"):
        result = run(ip, f"%%generate -m tiny --conversation messages {flag}\nHi")
        assert not result.success
        err = capsys.readouterr()
        message = str(result.error_in_exec)
        assert flag.split()[0] in message and "conversation 'messages'" in message, message
        assert "Traceback" not in err.out + err.err
    assert fake.requests == []
    # auto: a thread that must continue from its messages refuses --template the same way
    no_context(fake)
    run(ip, "%%generate -m tiny\nFirst")
    result = run(ip, "%%generate -m tiny --template '{{ .Prompt }}'\nSecond")
    assert not result.success and "--template cannot be sent" in str(result.error_in_exec)
    assert len(fake.requests) == 1


def test_generate_with_messages_from_python(fake: FakeOllama) -> None:
    no_context(fake, "Ada.")
    history = [{"role": "user", "content": "I am Ada."}, {"role": "assistant", "content": "Hi Ada."}]
    result = generate("Who am I?", "tiny", messages=history, system="Be brief.", host=fake.host)
    assert fake.paths == ["/api/chat"]
    assert fake.last["messages"][0] == {"role": "system", "content": "Be brief."}
    assert result.text == "Ada." and result.messages[-1] == {"role": "assistant", "content": "Ada."}
    assert history == [{"role": "user", "content": "I am Ada."}, {"role": "assistant", "content": "Hi Ada."}]


def test_store_unit_turns_are_shared_by_branches() -> None:
    store = ConversationStore()

    class Result:
        def __init__(self, text: str, prompt: str) -> None:
            self.text, self.model, self.thinking, self.stats = text, "tiny", None, None
            self.request = {"model": "tiny", "prompt": prompt}

    first = store.start("t", "tiny", "a", mode="messages")
    store.commit("t", first, "tiny", None, result=Result("one", "1"))
    store.new_execution()
    second = store.start("t", "tiny", "b", mode="messages")
    store.commit("t", second, "tiny", None, result=Result("two", "2"))
    head = store.thread("t").head
    assert [t.answer for t in head.history()] == ["one", "two"]
    assert head.last is not None and head.last.previous is store.thread("t").cell_starts["b"].last


# -- %ollama history / save / load ---------------------------------------------------------


def test_history_shows_who_said_what_with_tokens(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply("Hello Ada.\nNice to meet you.", context=[1])
    no_context(fake, "Ada.", model="other")
    run(ip, "%%generate -m tiny --system 'Be brief.'\nMy name is Ada.\nI teach.")
    run(ip, "%%generate -m other\nWhat is my name?")
    capsys.readouterr()
    run(ip, "%ollama history")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TURN", "WHO", "FIRST", "LINE", "TOKENS"]
    assert lines[1].split()[:2] == ["system", "Be"]
    assert lines[2].split() == ["1", "user", "My", "name", "is", "Ada.", "12"]
    assert lines[3].split() == ["tiny", "Hello", "Ada.", "4"]
    assert lines[4].split()[:2] == ["2", "user"] and lines[5].split()[:2] == ["other", "Ada."]
    run(ip, "%ollama history nope")
    assert "There is no thread 'nope'" in capsys.readouterr().out


def test_history_never_lets_an_answer_drive_the_terminal(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply("\x1b]8;;http://evil\x07click\x1b[2J", context=[1])
    run(ip, "%%generate -m tiny\nHi")
    capsys.readouterr()
    run(ip, "%ollama history")
    assert "\x1b" not in capsys.readouterr().out


def test_save_then_load_in_a_fresh_session_continues_with_the_saved_messages(
    ip: Any, fake: FakeOllama, tmp_path: Path, capsys: Any
) -> None:
    ip.run_line_magic("config", "GenerateMagics.headers = {'Authorization': 'Bearer s3cret-token'}")
    no_context(fake, "Hello Ada.")
    no_context(fake, "You teach.")
    run(ip, "%%generate -m tiny -t 0.2 --thread lesson\nMy name is Ada.", cell_id="c1")
    run(ip, "%%generate -m tiny --thread lesson\nWhat do I do?", cell_id="c2")
    path = tmp_path / "lesson.json"
    run(ip, f"%ollama save lesson {path}")
    assert f"Saved thread 'lesson' (2 turn(s)) to {path}." in capsys.readouterr().out
    text = path.read_text()
    assert "s3cret" not in text and "Authorization" not in text and fake.host not in text
    saved = json.loads(text)
    assert saved["turns"][0]["settings"] == {"options": {"temperature": 0.2}}
    assert saved["cells"]["c2"]["turn"] == 0  # cell c2 started after turn 0
    # A new session (the extension reloaded: every thread forgotten), then load.
    ip.run_line_magic("reload_ext", "ollama_magic")
    ip.run_line_magic("config", f"GenerateMagics.host = {fake.host!r}")
    run(ip, f"%ollama load {path}")
    assert "Loaded thread 'lesson': 2 turn(s)" in capsys.readouterr().out
    no_context(fake, "Ada.")
    run(ip, "%%generate -m tiny --thread lesson\nWho am I?")
    assert [m["content"] for m in fake.last["messages"]] == [
        "My name is Ada.",
        "Hello Ada.",
        "What do I do?",
        "You teach.",
        "Who am I?",
    ]
    no_context(fake, "again")
    run(ip, "%%generate -m tiny --thread lesson\nWhat do I do now?", cell_id="c2")  # re-run: its branch point
    assert [m["content"] for m in fake.last["messages"]] == ["My name is Ada.", "Hello Ada.", "What do I do now?"]


def test_load_into_another_name_and_a_context_thread_keeps_its_context(
    ip: Any, fake: FakeOllama, tmp_path: Path
) -> None:
    fake.reply(context=[7, 8, 9])
    run(ip, "%%generate -m tiny\nHi")
    path = tmp_path / "t.json"
    run(ip, f"%ollama save {path}")
    run(ip, f"%ollama load {path} copy")
    fake.reply(context=[10])
    run(ip, "%%generate -m tiny --thread copy\nMore")
    assert fake.last["context"] == [7, 8, 9] and fake.paths[-1] == "/api/generate"


def test_load_refuses_a_file_that_is_not_ours_in_one_line(ip: Any, fake: FakeOllama, tmp_path: Path) -> None:
    cases = {
        "notes.json": '{"turns": []}',
        "text.json": "hello",
        "forged.json": json.dumps(
            {"kind": "ollama_magic conversation", "version": 1, "thread": "t", "head": {"turn": 5}, "turns": []}
        ),
        "future.json": json.dumps({"kind": "ollama_magic conversation", "version": 99}),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = run(ip, f"%ollama load {tmp_path / name}")
        message = str(result.error_in_exec)
        assert not result.success and "\n" not in message
        assert "is not a conversation saved by %ollama save" in message and "nothing was loaded" in message
    assert "There is no file" in str(run(ip, f"%ollama load {tmp_path / 'missing.json'}").error_in_exec)
    assert "no thread 'x' to save" in str(run(ip, f"%ollama save x {tmp_path / 'x.json'}").error_in_exec)
    assert ip.magics_manager.registry["GenerateMagics"].conversations.threads == {}


# -- the panel -----------------------------------------------------------------------------


def test_the_panel_continues_a_thread_without_context_from_its_messages(nb: Any, fake: FakeOllama) -> None:
    from ollama_magic.widgets.panel import GeneratePanel

    no_context(fake, "Hello Ada.")
    run(nb, "%%generate -m tiny\nMy name is Ada.")
    magics = nb.magics_manager.registry["GenerateMagics"]
    panel = GeneratePanel(host=fake.host, conversations=magics.conversations, models=["tiny"])
    panel.prompt.value = "What is my name?"
    no_context(fake, "Ada.")
    panel.start()
    panel.wait(10)
    assert fake.paths[-1] == "/api/chat"
    assert [m["content"] for m in fake.last["messages"]] == ["My name is Ada.", "Hello Ada.", "What is my name?"]
    assert "continues from its messages" in panel.output.value
    assert panel.result is not None and panel.result.messages is not None
    assert panel.result.messages[-1] == {"role": "assistant", "content": "Ada."}
    no_context(fake, "You asked.")
    run(nb, "%%generate -m tiny\nWhat did I ask?")  # the cell goes on from the panel's answer
    assert [m["content"] for m in fake.last["messages"]][-3:] == ["What is my name?", "Ada.", "What did I ask?"]


def test_the_panel_follows_the_conversation_setting(fake: FakeOllama) -> None:
    from ollama_magic.widgets.panel import GeneratePanel

    panel = GeneratePanel(host=fake.host, models=["tiny"], conversation="messages")
    panel.prompt.value = "Hi"
    fake.reply(context=[1])
    panel.start()
    panel.wait(10)
    assert fake.paths == ["/api/chat"]
    assert fake.last["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_chat_turns_output_metadata_says_how_it_was_made_without_the_texts(nb: Any, fake: FakeOllama) -> None:
    from .test_provenance import recorded_metadata

    metadata = recorded_metadata(nb, fake)
    no_context(fake)
    no_context(fake)
    run(nb, "%%generate -m tiny --system 'Be brief.'\nMy secret plan")
    assert run(nb, "%%generate -m tiny -t 0.2\nAnd then?").success
    record = metadata[-1]["ollama_magic"]
    assert (record["endpoint"], record["messages"], record["system"]) == ("/api/chat", 3, "Be brief.")
    assert record["options"] == {"temperature": 0.2}
    assert "My secret plan" not in json.dumps(record)


def test_generate_continues_a_previous_result_by_the_conversation_setting(fake: FakeOllama) -> None:
    fake.reply("Hi Ada.", context=[1, 2])
    first = generate("I am Ada.", "tiny", host=fake.host)
    assert first.messages == [{"role": "user", "content": "I am Ada."}, {"role": "assistant", "content": "Hi Ada."}]
    for _ in range(3):
        fake.reply(context=[3])
    generate("Who am I?", "tiny", context=first.context, messages=first.messages, host=fake.host)
    assert fake.paths[-1] == "/api/generate" and fake.last["context"] == [1, 2]  # auto: the context first
    generate(
        "Who am I?", "tiny", context=first.context, messages=first.messages, conversation="messages", host=fake.host
    )
    assert fake.paths[-1] == "/api/chat" and fake.last["messages"][:2] == first.messages
    generate("Who am I?", "tiny", messages=first.messages, conversation="context", host=fake.host)
    assert fake.paths[-1] == "/api/generate" and "context" not in fake.last  # no context: a new conversation
    with pytest.raises(ValueError, match="conversation must be one of 'auto', 'context', 'messages', not 'tokens'"):
        generate("Who am I?", "tiny", conversation="tokens", host=fake.host)
    assert len(fake.requests) == 4  # the refused call sent nothing


def test_a_chat_turn_without_streaming_shows_the_whole_answer(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    no_context(fake)
    run(ip, "%%generate -m tiny\nHi")
    fake.stream(chunk("All "), chunk("at once."), final(None))
    capsys.readouterr()
    assert run(ip, "%%generate -m tiny --no-stream -o r\nAgain").success
    assert fake.paths[-1] == "/api/chat" and fake.last["stream"] is False
    assert ip.user_ns["r"].text == "All at once." and "All at once." in capsys.readouterr().out
