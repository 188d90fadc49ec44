"""What a long conversation thread costs in memory: ``python benchmarks/conversation_memory.py [--quick]``.

Every thread keeps its turns as text (conversation.py) beside the ``context`` token ids, so
that it can continue through ``/api/chat``.  This script commits N turns of typical size
(a 200-character prompt, a 1,000-character answer; a re-run notebook cell per turn, as in
class) into a real :class:`~ollama_magic.engine.conversation.ConversationStore` and prints, from
``tracemalloc``:

* the text itself (UTF-8 bytes of prompts and answers): the baseline;
* the turns (messages) the thread holds, in bytes and per turn, in ``messages`` mode
  (no context) — what this feature adds;
* the same thread in ``context`` mode, where the server returns the token ids (~4
  characters per token, as for real models; the server caps them at its context window,
  ``NUM_CTX`` = 4,096 tokens here) and each cell's branch point keeps its own context
  (at most ``CONTEXT_TURNS`` turns: that cost grows with turns x window);
* building the next request's messages (ms) and the size of its JSON body.

Figures are printed, not judged (no target: memory is what it is); exit 0 unless it crashed.
``--quick`` (200 turns) is for CI, so the script cannot rot; the full run is 2,000 turns.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("ollama_magic") is None:  # not installed: use this checkout
    sys.path.insert(0, str(HERE.parent))

from ollama_magic.engine.conversation import ConversationStore, messages_of  # noqa: E402
from ollama_magic.engine.result import GenerationResult, Stats  # noqa: E402

PROMPT_CHARS = 200
ANSWER_CHARS = 1000
CHARS_PER_TOKEN = 4
NUM_CTX = 4096
CONTEXT_TURNS = 500


def _result(number: int, messages: bool, context_tokens: int) -> GenerationResult:
    """A completed answer as generate() returns it (distinct text per turn, as in life)."""
    prompt = (f"Question {number}: " + "why does the tide turn? " * 10)[:PROMPT_CHARS]
    answer = (f"Answer {number}: " + "the moon pulls the water toward it. " * 30)[:ANSWER_CHARS]
    request: dict = {"model": "llama3.2", "options": {"temperature": 0.2}}
    if messages:
        request["messages"] = [{"role": "user", "content": prompt}]
    else:
        request["prompt"] = prompt
    return GenerationResult(
        text=answer,
        model="llama3.2",
        context=None if messages else list(range(context_tokens)),
        stats=Stats(prompt_eval_count=PROMPT_CHARS // CHARS_PER_TOKEN, eval_count=ANSWER_CHARS // CHARS_PER_TOKEN),
        request=request,
    )


def build(turns: int, mode: str) -> tuple[ConversationStore, int, float]:
    """A thread of ``turns`` turns, one cell each; returns the store, the bytes it keeps, and
    the seconds its starts and commits took.

    Each answer is made inside the traced region and dropped after its commit (the
    notebook's ``-o`` variable is not the thread's), so what remains is what the thread keeps.
    """
    per_turn = (PROMPT_CHARS + ANSWER_CHARS) // CHARS_PER_TOKEN
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    seconds = 0.0
    store = ConversationStore()
    for number in range(turns):
        result = _result(number, mode == "messages", min((number + 1) * per_turn, NUM_CTX))
        started = time.perf_counter()
        store.new_execution()
        start = store.start("lesson", "llama3.2", f"cell-{number}", mode=mode)
        store.commit("lesson", start, result.model, result.context, result=result)
        seconds += time.perf_counter() - started
        del result
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return store, used, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 turns instead of 2,000 (for CI)")
    args = parser.parse_args(argv)
    turns = 200 if args.quick else 2000
    text = sum(len(_result(n, True, 0).request["messages"][0]["content"].encode()) + ANSWER_CHARS for n in range(turns))

    store, messages_bytes, _ = build(turns, "messages")
    head = store.thread("lesson").head
    started = time.perf_counter()
    messages = messages_of(head.history())
    build_ms = (time.perf_counter() - started) * 1000
    body = len(json.dumps({"model": "llama3.2", "messages": messages}).encode())
    del store, head, messages
    context_turns = min(turns, CONTEXT_TURNS)
    _, context_bytes, _ = build(context_turns, "context")

    mb = 1024 * 1024
    print(f"# A thread of {turns} turns ({PROMPT_CHARS}-character prompt, {ANSWER_CHARS}-character answer each)\n")
    print("| what | memory | per turn |")
    print("| --- | ---: | ---: |")
    print(f"| the text itself (baseline) | {text / mb:.2f} MB | {text / turns:.0f} B |")
    print(
        f"| thread in messages mode (turns as text) | {messages_bytes / mb:.2f} MB | {messages_bytes / turns:.0f} B |"
    )
    print(
        f"| thread of {context_turns} turns in context mode (turns + token ids of each cell's branch point, "
        f"window {NUM_CTX}) | {context_bytes / mb:.2f} MB | {context_bytes / context_turns:.0f} B |"
    )
    print()
    print(f"- building the next request's {2 * turns + 1}-message list: {build_ms:.2f} ms")
    print(f"- its JSON body: {body / mb:.2f} MB ({body / turns:.0f} B per turn)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
