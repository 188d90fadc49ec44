"""Building the ``/api/generate`` and ``/api/chat`` request bodies from what the user asked for.

Pure functions, no I/O beyond reading image files: everything that can be checked
before sending is checked here, so invalid arguments never reach the server.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import InvalidRequestError

#: What ``think`` takes besides true/false (levels since Ollama 0.11, ``max`` since 0.21).
THINK_LEVELS = ("low", "medium", "high", "max")
MAX_TOP_LOGPROBS = 20

ImageInput = bytes | bytearray | memoryview | str | os.PathLike[str] | Any

#: The environment variable naming the default model (Binder's ``start``, a JupyterHub or CI
#: set it, so notebooks need not hard-code a model).
MODEL_ENV = "OLLAMA_MAGIC_MODEL"


def resolve_model(*choices: str | None) -> str:
    """The first model named in ``choices``, else ``OLLAMA_MAGIC_MODEL``, else ``""``.

    The variable is read at each call, like ``OLLAMA_HOST``, so a notebook (or a test)
    that sets it mid-session is obeyed at once.

    >>> os.environ[MODEL_ENV] = "qwen2.5:0.5b"
    >>> resolve_model("llama3.2", ""), resolve_model(None, "  "), resolve_model()
    ('llama3.2', 'qwen2.5:0.5b', 'qwen2.5:0.5b')
    >>> del os.environ[MODEL_ENV]
    >>> resolve_model(None)
    ''
    """
    for choice in choices:
        if choice and str(choice).strip():
            return str(choice).strip()
    return os.environ.get(MODEL_ENV, "").strip()


def merge_options(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge option dicts, later layers winning; ``None`` values are dropped.

    >>> merge_options({"temperature": 0.2, "seed": 1}, None, {"temperature": 0.9, "seed": None})
    {'temperature': 0.9, 'seed': 1}
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if not layer:
            continue
        if not isinstance(layer, Mapping):
            raise InvalidRequestError(f"options must be a JSON object (a dict), not {type(layer).__name__}")
        for key, value in layer.items():
            if value is not None:
                merged[key] = value
    return merged


#: The image formats Ollama decodes, by the bytes their files start with.  Anything else
#: (a text file, a PDF, an SVG, a HEIC photo) is refused before sending: Ollama would
#: fail on it with a terse error, or a model without vision would quietly ignore it.
IMAGE_FORMATS = "PNG, JPEG, GIF or WebP"


def image_kind(data: bytes) -> str | None:
    """The image format of ``data`` from its first bytes, or None when Ollama cannot read it.

    >>> image_kind(b"\\x89PNG\\r\\n\\x1a\\n..."), image_kind(b"GIF89a..."), image_kind(b"hello")
    ('PNG', 'GIF', None)
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def encode_image(image: ImageInput, position: int = 1) -> str:
    """Return ``image`` as the base64 text Ollama expects.

    Accepts raw bytes, a path to a file, or an object with a PIL-style ``save`` method
    (saved as PNG).  Bytes and files must be an image Ollama reads (:data:`IMAGE_FORMATS`,
    told by their first bytes, not by the file name); ``position`` (1-based) names the
    image in the message when it is not.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        what = f"Image {position} (bytes)"
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise InvalidRequestError(f"Image file not found: {str(image)!r}")
        data = path.read_bytes()
        what = f"Image file {str(image)!r}"
    elif hasattr(image, "save"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        what = f"Image {position}"
    else:
        raise InvalidRequestError(
            f"Cannot send a {type(image).__name__} as an image: give a file path, bytes, or a PIL image."
        )
    if not data:
        raise InvalidRequestError(f"{what} is empty (0 bytes).")
    if image_kind(data) is None:
        raise InvalidRequestError(
            f"{what} is not an image Ollama can read: it must be {IMAGE_FORMATS} (it starts with {data[:8]!r})."
        )
    return base64.b64encode(data).decode("ascii")


def check_finite(value: Any, where: str) -> None:
    """Refuse NaN and infinity anywhere in ``value`` (numbers, lists, dicts).

    JSON has no such numbers: sending one fails inside ``requests`` with a traceback,
    and a server that took it would do something undefined.

    >>> check_finite({"stop": ["x"], "temperature": 0.2}, "options")
    >>> check_finite({"temperature": float("nan")}, "options")
    Traceback (most recent call last):
    ...
    ollama_magic.engine.errors.InvalidRequestError: options.temperature is nan: give a finite number.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequestError(f"{where} is {value}: give a finite number.")
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, f"{where}[{index}]")


def check_options(options: Mapping[str, Any]) -> None:
    """What can be known wrong about model options before sending them.

    >>> check_options({"num_predict": -1}), check_options({"num_predict": -2})
    (None, None)
    """
    check_finite(dict(options), "options")
    num_predict = options.get("num_predict")
    if isinstance(num_predict, int) and not isinstance(num_predict, bool) and num_predict < -2:
        raise InvalidRequestError(
            f"num_predict {num_predict} means nothing to Ollama: give the most tokens to generate, "
            "or -1 for no limit, -2 to fill the context."
        )


def check_timeout(timeout: Any) -> None:
    """A timeout is None (wait for ever), or positive finite seconds, or a (connect, read) pair of them."""
    for part in timeout if isinstance(timeout, tuple) else (timeout,):
        if part is None:
            continue
        if isinstance(part, bool) or not isinstance(part, (int, float)) or not math.isfinite(part) or part <= 0:
            raise InvalidRequestError(
                f"timeout must be a positive number of seconds, not {part!r} "
                "(None waits for ever; a long wait is a large number, e.g. 3600)."
            )


def build_generate_payload(
    *,
    model: str,
    prompt: str,
    suffix: str | None = None,
    images: Iterable[ImageInput] | None = None,
    format: str | Mapping[str, Any] | None = None,  # noqa: A002 - Ollama's field name
    options: Mapping[str, Any] | None = None,
    system: str | None = None,
    template: str | None = None,
    stream: bool = True,
    raw: bool = False,
    keep_alive: str | int | float | None = None,
    context: list[int] | None = None,
    think: bool | str | None = None,
    truncate: bool | None = None,
    shift: bool | None = None,
    logprobs: bool = False,
    top_logprobs: int | None = None,
) -> dict[str, Any]:
    """The JSON body for ``POST /api/generate``; only fields that were set are included.

    Raises :class:`InvalidRequestError` for combinations Ollama would reject, so the user
    gets a clear local message instead of a terse server error.
    """
    if not model or not str(model).strip():
        raise InvalidRequestError(
            "No model given: pass -m MODEL, or set a default with %config GenerateMagics.model = 'NAME' "
            f"or the {MODEL_ENV} environment variable."
        )
    if raw and (system is not None or template is not None):
        raise InvalidRequestError(
            "--raw sends the prompt without any template, so it cannot be combined with --system or --template."
        )
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise InvalidRequestError(f"think must be true, false or one of {', '.join(THINK_LEVELS)}, not {think!r}")
    if top_logprobs is not None and (
        isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= MAX_TOP_LOGPROBS
    ):
        raise InvalidRequestError(
            f"top_logprobs must be a whole number from 0 to {MAX_TOP_LOGPROBS}, not {top_logprobs!r}"
        )
    payload: dict[str, Any] = {"model": model, "prompt": prompt, "stream": bool(stream)}
    if suffix is not None:
        payload["suffix"] = suffix
    if images:
        payload["images"] = [encode_image(image, number) for number, image in enumerate(images, 1)]
    if format is not None:
        if isinstance(format, str) and format != "json":
            raise InvalidRequestError(f"format must be 'json' or a JSON schema, not {format!r}")
        payload["format"] = format if isinstance(format, str) else dict(format)
    if options:
        check_options(options)
        payload["options"] = dict(options)
    if system is not None:
        payload["system"] = system
    if template is not None:
        payload["template"] = template
    if raw:
        payload["raw"] = True
    if keep_alive is not None:
        payload["keep_alive"] = normalize_keep_alive(keep_alive)
    if context and not raw:
        payload["context"] = list(context)
    if think is not None:
        payload["think"] = think
    if truncate is not None:
        payload["truncate"] = bool(truncate)
    if shift is not None:
        payload["shift"] = bool(shift)
    if logprobs or top_logprobs is not None:
        # Alternatives only come with logprobs on, so asking for them turns it on.
        payload["logprobs"] = True
        if top_logprobs is not None:
            payload["top_logprobs"] = top_logprobs
    return payload


#: What ``/api/chat`` cannot carry, as the magic's options name them (and generate()'s keywords).
CHAT_CANNOT_CARRY = {"raw": "--raw", "template": "--template", "suffix": "--suffix"}
MESSAGE_ROLES = ("system", "user", "assistant", "tool")


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """A conversation's messages, checked: a list of ``{role, content}`` dicts (images are base64 text).

    >>> check_messages([{"role": "user", "content": "hi"}])
    [{'role': 'user', 'content': 'hi'}]
    """
    if not isinstance(messages, (list, tuple)):
        raise InvalidRequestError(f"messages must be a list of dicts, not {type(messages).__name__}")
    out = []
    for index, message in enumerate(messages):
        if (
            not isinstance(message, Mapping)
            or message.get("role") not in MESSAGE_ROLES
            or not isinstance(message.get("content", ""), str)
            or not all(isinstance(i, str) for i in message.get("images") or ())
        ):
            raise InvalidRequestError(
                f"messages[{index}] must be a dict with a role (system, user, assistant or tool) and text content."
            )
        out.append(dict(message))
    return out


def build_chat_payload(
    *,
    messages: Iterable[Mapping[str, Any]],
    prompt: str,
    suffix: str | None = None,
    template: str | None = None,
    raw: bool = False,
    context: list[int] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The JSON body for ``POST /api/chat``: ``messages``, then the prompt as the user's message.

    The same fields as :func:`build_generate_payload` (checked by it), except those
    ``/api/chat`` has no place for (:data:`CHAT_CANNOT_CARRY`), which are refused in one
    line.  ``system`` becomes the first message (replacing one the messages had).
    """
    refused = [
        flag for name, flag in CHAT_CANNOT_CARRY.items() if {"raw": raw, "template": template, "suffix": suffix}[name]
    ]
    if refused:
        raise InvalidRequestError(
            f"{' and '.join(refused)} cannot be sent in a conversation continued from its messages (/api/chat has "
            "no such field): drop it, or start afresh with --new --conversation context."
        )
    if context:
        raise InvalidRequestError("Give a conversation's context or its messages, not both.")
    history = check_messages(list(messages))
    body = build_generate_payload(prompt=prompt, **fields)
    system = body.pop("system", None)
    if system is not None:
        history = [m for m in history if m["role"] != "system"]
        history.insert(0, {"role": "system", "content": system})
    user: dict[str, Any] = {"role": "user", "content": body.pop("prompt")}
    if "images" in body:
        user["images"] = body.pop("images")
    payload: dict[str, Any] = {"model": body.pop("model"), "messages": [*history, user]}
    payload.update(body)
    return payload


def normalize_keep_alive(value: str | int | float) -> str | int | float:
    """Numbers (also numeric strings) are seconds for Ollama; durations like ``5m`` pass as text.

    NaN and infinity (``1e400``) are refused: JSON cannot carry them.

    >>> normalize_keep_alive("0"), normalize_keep_alive("-1"), normalize_keep_alive("10m"), normalize_keep_alive(30)
    (0, -1, '10m', 30)
    """
    if isinstance(value, (int, float)):
        check_finite(value, "keep_alive")
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        check_finite(number, f"keep_alive {text!r}")
        return number

    if not re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", text):
        raise InvalidRequestError(
            f"keep_alive {text!r} is not a duration: use seconds (e.g. 300, 0, -1) or Go durations like '5m', '1h30m'."
        )
    return text
