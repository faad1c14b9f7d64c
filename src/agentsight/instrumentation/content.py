"""Message content in the GenAI semantic conventions' shape, from each client's native request and response.

The conventions' messages are ``{"role", "parts": [...]}`` (output messages add ``finish_reason``); a part is
``text``, ``tool_call``, ``tool_call_response``, ``reasoning``, ``uri``, ``blob``, ``file``, or a generic part
of another type with the client's own fields. System instructions given apart from the chat history (the
Responses API's ``instructions``, Anthropic's ``system``) are a list of parts of their own; those in the history
(a ``system`` message) stay in it. Tool definitions are ``{"type": "function", "name", "description",
"parameters"}``, or ``{"type", "name"}`` for a provider's built-in tool.

A client describes its request as a :class:`Prompt`: its native shape (one of the ``*_CHAT`` / ``*_MESSAGES``
/ ``*_RESPONSES`` names below) and the call's arguments. Nothing is converted unless content is captured.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from agentsight.spans.jsonsafe import to_json_safe

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

OPENAI_CHAT = "openai.chat"
"""OpenAI chat completions (and OpenAI-compatible clients such as Groq's): ``messages``, ``tools``."""
OPENAI_RESPONSES = "openai.responses"
"""The OpenAI Responses API: ``instructions``, ``input`` (text or items), ``tools``; output items."""
ANTHROPIC_MESSAGES = "anthropic.messages"
"""Anthropic messages: ``system``, ``messages`` of content blocks, ``tools`` with ``input_schema``."""
MISTRAL_CHAT = "mistral.chat"
"""Mistral chat: OpenAI-like ``messages`` (content text or chunks) and ``tools``."""
OLLAMA_CHAT = "ollama.chat"
"""Ollama chat: ``messages`` (with ``images``), ``tools`` (definitions or Python functions)."""
COHERE_CHAT = "cohere.chat"
"""Cohere v2 chat: OpenAI-like ``messages`` (content text or blocks, ``tool_calls``) and ``tools``."""
GEMINI_CONTENT = "gemini.generate_content"
"""Gemini ``generate_content``: ``contents`` (texts, parts or contents), ``config.system_instruction`` and
``config.tools`` (function declarations, built-in tools, Python functions); candidates' contents as output."""
BEDROCK_CONVERSE = "bedrock.converse"
"""Bedrock Converse (and Converse-shaped ``InvokeModel`` bodies): ``messages`` and ``system`` of content blocks,
``toolConfig.tools`` of ``toolSpec``."""


class Capture(enum.Flag):
    """Where message content goes: nowhere, on the span (attributes), in the event, or both."""

    NONE = 0
    SPAN = enum.auto()
    EVENT = enum.auto()


# The official packages' values (``true`` is the older spelling of SPAN_ONLY); anything else is NO_CONTENT.
_MODES = {
    "true": Capture.SPAN,
    "span_only": Capture.SPAN,
    "event_only": Capture.EVENT,
    "span_and_event": Capture.SPAN | Capture.EVENT,
}


def capture_mode() -> Capture:
    """The mode ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for (any case; unset is none)."""
    return _MODES.get(os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower(), Capture.NONE)


class Prompt(NamedTuple):
    """A model call's request in its client's native shape: converted only when content is captured."""

    shape: str
    arguments: Mapping[str, Any]


class RequestContent(NamedTuple):
    """A request's content in the conventions' shape (each list empty when the request has none)."""

    messages: list[dict[str, Any]]
    system_instructions: list[dict[str, Any]]
    tool_definitions: list[dict[str, Any]]


def field(value: Any, name: str) -> Any:
    """A field of a response object or of a mapping (``None`` when missing, or when ``value`` is)."""
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def request_content(prompt: Any) -> RequestContent:
    """The content of a request: a :class:`Prompt`, else (from a client that gives its messages only) a text,
    a list of messages (OpenAI-like, Gemini contents, Bedrock Converse), or a mapping of such ``messages``."""
    if isinstance(prompt, str):
        return RequestContent([_message("user", [_text(prompt)])], [], [])
    if not isinstance(prompt, Prompt):
        prompt = Prompt(OPENAI_CHAT, prompt if isinstance(prompt, Mapping) else {"messages": prompt})
    arguments = prompt.arguments
    if prompt.shape == GEMINI_CONTENT:
        config = arguments.get("config")
        return RequestContent(_gemini_messages(arguments.get("contents")),
                              _gemini_instructions(field(config, "system_instruction")),
                              _gemini_tools(field(config, "tools")))
    if prompt.shape == BEDROCK_CONVERSE:
        specs = [field(tool, "toolSpec") for tool in _items(field(arguments.get("toolConfig"), "tools"))]
        return RequestContent(_messages(arguments.get("messages")), _parts(arguments.get("system")),
                              [definition for spec in specs if spec is not None
                               and (definition := _tool_definition(spec))])
    tools = [definition for tool in _items(arguments.get("tools")) if (definition := _tool_definition(tool))]
    if prompt.shape == OPENAI_RESPONSES:
        instructions = arguments.get("instructions")
        given = arguments.get("input")
        messages = ([_message("user", [_text(given)])] if isinstance(given, str)
                    else [_item_message(item) for item in _items(given)])
        return RequestContent(messages, [_text(instructions)] if isinstance(instructions, str) else [], tools)
    system = arguments.get("system") if prompt.shape == ANTHROPIC_MESSAGES else None
    return RequestContent(_messages(arguments.get("messages")), _parts(system), tools)


def output_messages(shape: str | None, native: Any, finish_reasons: Sequence[str]) -> list[dict[str, Any]]:
    """The output messages of a response in ``shape``: a list of messages (chat shapes: one per choice, in
    the order of ``finish_reasons``; Gemini's: one per candidate), or the Responses API's output items (one
    message)."""
    if shape == OPENAI_RESPONSES:
        messages = [_message("assistant", [part for item in _items(native) for part in _item_message(item)["parts"]])]
    else:
        messages = _messages(native, keep_empty=True)
    for index, message in enumerate(messages):
        if shape == GEMINI_CONTENT:  # a stream's text comes in a part per chunk
            message["parts"] = _joined(message["parts"])
        reason = _finish_reason(finish_reasons[min(index, len(finish_reasons) - 1)] if finish_reasons else None)
        if reason == "stop" and any(part["type"] == "tool_call" for part in message["parts"]):
            reason = "tool_call"  # the Responses API and Gemini say they stopped after calling a tool
        message["finish_reason"] = reason
    return messages


def streamed_tool_call(call: Any, arguments: str) -> dict[str, Any]:
    """A chat stream's tool call, as it started (OpenAI-like: ``id``, ``function.name``), with the ``arguments``
    its pieces added up to, in the OpenAI chat shape."""
    return {"id": field(call, "id"), "type": "function",
            "function": {"name": field(field(call, "function"), "name"), "arguments": arguments}}


def dumps(value: Any) -> str:
    """JSON text of content, as span attributes carry it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# Native finish reasons (in lower case) -> the conventions' values (stop, length, content_filter, tool_call,
# error); others are kept, in lower case.
_FINISH_REASONS = {
    "tool_calls": "tool_call", "function_call": "tool_call", "tool_use": "tool_call",
    "end_turn": "stop", "stop_sequence": "stop", "completed": "stop", "complete": "stop",
    "max_tokens": "length", "model_length": "length", "incomplete": "length",
    "refusal": "content_filter", "safety": "content_filter", "failed": "error",
}
_ROLES = {"model": "assistant", "chatbot": "assistant"}  # Gemini's and Cohere's names for the assistant
_TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
_BEDROCK_MEDIA = ("image", "document", "video")
_MEDIA_TYPES = {"image_url": "image", "input_image": "image", "image": "image", "document": "document",
                "document_url": "document", "file": "document", "input_file": "document", "input_audio": "audio"}


def _finish_reason(reason: Any) -> str:
    """A response's finish reason in the conventions' words (``error`` when the response gave none)."""
    if not isinstance(reason, str) or not reason:
        return "error"
    return _FINISH_REASONS.get(reason.lower(), reason.lower())


def _items(value: Any) -> Sequence[Any]:
    """``value`` when it is a list or tuple (never another iterable: the client still has to read it)."""
    return value if isinstance(value, (list, tuple)) else ()


def _fields(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _message(role: Any, parts: list[dict[str, Any]], name: Any = None) -> dict[str, Any]:
    role = _ROLES.get(role, role) if isinstance(role, str) else "user"
    return _fields(role=role, parts=parts,
                   name=name if isinstance(name, str) else None)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _plain(value: Any) -> Any:
    """``value`` as JSON-like data: a pydantic model's fields that are set (as the clients send them), bytes as
    base64 text and the like."""
    dump = getattr(value, "model_dump", None)
    return to_json_safe(dump(exclude_none=True) if callable(dump) and not isinstance(value, type) else value)


def _joined(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``parts`` with each run of text parts made one."""
    joined: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text" and joined and joined[-1]["type"] == "text":
            joined[-1] = _text(joined[-1]["content"] + part["content"])
        else:
            joined.append(part)
    return joined


def _arguments(arguments: Any) -> Any:
    """A tool call's arguments: the JSON object that text spells, else as given."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return _plain(arguments)


def _messages(messages: Any, keep_empty: bool = False) -> list[dict[str, Any]]:
    """Chat messages (OpenAI, Mistral, Ollama, Anthropic's content blocks, Gemini's parts, Bedrock's content
    blocks; a text is a user's message) in the conventions' shape."""
    converted = []
    for message in _items(messages):
        if isinstance(message, str):
            converted.append(_message("user", [_text(message)]))
            continue
        role = field(message, "role")
        if role == "tool":
            response = field(message, "content")
            parts = [_fields(type="tool_call_response", id=field(message, "tool_call_id"),
                             response=response if isinstance(response, str) else _plain(response))]
        else:
            given = field(message, "content")
            parts = _parts(field(message, "parts") if given is None else given)
            parts += [_media(image, "image") for image in _items(field(message, "images"))]
            parts += [_tool_call(call) for call in _items(field(message, "tool_calls"))]
        if keep_empty:  # an output message: the model's, whatever it holds
            converted.append(_message(role or "assistant", parts, field(message, "name")))
        elif parts:
            converted.append(_message(role, parts, field(message, "name")))
    return converted


def _parts(content: Any) -> list[dict[str, Any]]:
    """Message content (text, or a list of blocks / chunks / parts) as parts."""
    if isinstance(content, str):
        return [_text(content)]
    return [part for block in _items(content) if (part := _part(block)) is not None]


def _part(block: Any) -> dict[str, Any] | None:
    if isinstance(block, str):
        return _text(block)
    kind = field(block, "type")
    text = field(block, "text")
    if kind is None and field(block, "thought") is True and isinstance(text, str):  # a Gemini thought
        return {"type": "reasoning", "content": text}
    if kind in _TEXT_TYPES or (kind is None and isinstance(text, str)):
        return _text(text) if isinstance(text, str) else None
    if kind == "refusal":
        return _text(str(field(block, "refusal")))
    if kind in ("thinking", "reasoning"):
        thinking = field(block, "thinking")
        texts = [thinking] if isinstance(thinking, str) else [field(chunk, "text") for chunk in _items(thinking)]
        return {"type": "reasoning", "content": "".join(text for text in texts if isinstance(text, str))}
    if kind == "tool_use":
        return _fields(type="tool_call", id=field(block, "id"), name=field(block, "name"),
                       arguments=_arguments(field(block, "input")))
    if kind == "tool_result":
        result = field(block, "content")
        return _fields(type="tool_call_response", id=field(block, "tool_use_id"),
                       response=result if isinstance(result, str) else _parts(result))
    if kind in _MEDIA_TYPES:
        return _media(block, _MEDIA_TYPES[kind])
    if kind is None:  # Gemini's parts and Bedrock's blocks say what they are by the one field they have
        return _untyped_part(block)
    return {**_plain(block), "type": kind} if isinstance(kind, str) else None


def _untyped_part(block: Any) -> dict[str, Any] | None:
    """A Gemini part (``function_call``, ``function_response``, ``inline_data``, ``file_data``) or Bedrock block
    (``toolUse``, ``toolResult``, ``reasoningContent``, ``image`` / ``document`` / ``video``)."""
    call = field(block, "function_call") or field(block, "toolUse")
    if call is not None:
        return _fields(type="tool_call", id=field(call, "id") or field(call, "toolUseId"), name=field(call, "name"),
                       arguments=_arguments(field(call, "args") or field(call, "input")))
    result = field(block, "function_response") or field(block, "toolResult")
    if result is not None:
        response = field(result, "response") or field(result, "content")
        return _fields(type="tool_call_response", id=field(result, "id") or field(result, "toolUseId"),
                       response=_parts(response) if isinstance(response, list) else _plain(response))
    if (reasoning := field(field(block, "reasoningContent"), "reasoningText")) is not None:
        return {"type": "reasoning", "content": field(reasoning, "text") or ""}
    if (data := field(block, "inline_data")) is not None:
        return _fields(type="blob", modality=_modality(field(data, "mime_type")), mime_type=field(data, "mime_type"),
                       content=_plain(field(data, "data")))
    if (data := field(block, "file_data")) is not None:
        return _fields(type="uri", modality=_modality(field(data, "mime_type")), mime_type=field(data, "mime_type"),
                       uri=field(data, "file_uri"))
    return next((_bedrock_media(field(block, kind), kind) for kind in _BEDROCK_MEDIA if field(block, kind)), None)


def _bedrock_media(block: Any, modality: str) -> dict[str, Any]:
    """A Bedrock ``image`` / ``document`` / ``video`` block: its bytes as a blob, or its S3 location as a URI."""
    source = field(block, "source")
    location = field(field(source, "s3Location"), "uri")
    if isinstance(location, str):
        return {"type": "uri", "modality": modality, "uri": location}
    return {"type": "blob", "modality": modality, "content": _plain(field(source, "bytes"))}


def _modality(mime_type: Any) -> str:
    """The modality a MIME type names: ``image``, ``audio``, ``video``, else ``document``."""
    kind = mime_type.split("/")[0] if isinstance(mime_type, str) else ""
    return kind if kind in ("image", "audio", "video") else "document"


def _media(block: Any, modality: str) -> dict[str, Any]:
    """An image, document or audio as a ``uri``, ``blob`` or ``file`` part, whichever way it is given."""
    if isinstance(block, (str, bytes)):  # Ollama's images: base64 text or bytes (or a path)
        return {"type": "blob", "modality": modality, "content": _plain(block)}
    source = field(block, "source") or field(block, "input_audio") or field(block, "file") or block
    location = (field(block, "image_url") or field(block, "document_url") or field(source, "file_url")
                or field(source, "url") or field(source, "file_data"))
    url = location if isinstance(location, str) else field(location, "url")
    if isinstance(url, str) and url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        return _fields(type="blob", modality=modality, mime_type=header.split(";")[0] or None, content=data)
    if isinstance(url, str):
        return {"type": "uri", "modality": modality, "uri": url}
    file_id = field(source, "file_id")
    if isinstance(file_id, str):
        return {"type": "file", "modality": modality, "file_id": file_id}
    data = field(source, "data")
    mime_type = field(source, "media_type")
    return _fields(type="blob", modality=modality, mime_type=mime_type if isinstance(mime_type, str) else None,
                   content=data if isinstance(data, str) else _plain(data))


def _tool_call(call: Any) -> dict[str, Any]:
    """A tool call of a chat message (OpenAI, Mistral, Ollama: its ``function`` has name and arguments)."""
    function = field(call, "function")
    return _fields(type="tool_call", id=field(call, "id"), name=field(function, "name"),
                   arguments=_arguments(field(function, "arguments")))


def _item_message(item: Any) -> dict[str, Any]:
    """A Responses API input or output item as a message."""
    kind = field(item, "type")
    if kind == "function_call":
        return _message("assistant", [_fields(type="tool_call", id=field(item, "call_id"), name=field(item, "name"),
                                              arguments=_arguments(field(item, "arguments")))])
    if kind == "function_call_output":
        output = field(item, "output")
        return _message("tool", [_fields(type="tool_call_response", id=field(item, "call_id"),
                                         response=output if isinstance(output, str) else _parts(output))])
    if kind == "reasoning":
        summary = "".join(text for part in _items(field(item, "summary"))
                          if isinstance(text := field(part, "text"), str))
        return _message("assistant", [{"type": "reasoning", "content": summary}])
    role = field(item, "role")
    if role is None and kind not in (None, "message"):  # a built-in tool's call or result
        return _message("assistant", [{**_plain(item), "type": kind}])
    return _message(role, _parts(field(item, "content")))


def _tool_definition(tool: Any) -> dict[str, Any] | None:
    """A tool as the model is told of it: a function (OpenAI, Mistral, Ollama, Responses, Anthropic custom
    tools), or a provider's built-in tool by type and name."""
    if callable(tool) and not isinstance(tool, Mapping):  # Ollama takes Python functions as tools
        doc = (tool.__doc__ or "").strip()
        return _fields(type="function", name=getattr(tool, "__name__", None), description=doc.split("\n")[0] or None)
    kind = field(tool, "type")
    spec = field(tool, "function") or tool
    name = field(spec, "name")
    if kind in (None, "function", "custom"):
        schema = (field(spec, "parameters") or field(spec, "input_schema") or field(spec, "parameters_json_schema")
                  or field(field(spec, "inputSchema"), "json"))
        return _fields(type="function", name=name, description=field(spec, "description"),
                       parameters=None if schema is None else _plain(schema))
    return _fields(type=kind, name=name if isinstance(name, str) else kind) if isinstance(kind, str) else None


def _gemini_messages(contents: Any) -> list[dict[str, Any]]:
    """Gemini ``contents``: a text, a part, a content, or a list of them, where each run of texts and parts is one
    user's message (as the client sends them)."""
    messages: list[dict[str, Any]] = []
    loose: list[Any] = []
    for item in _items(contents) if isinstance(contents, (list, tuple)) else [contents]:
        if field(item, "parts") is None and field(item, "role") is None:
            loose.append(item)
            continue
        if loose:
            messages.append(_message("user", _parts(loose)))
            loose = []
        messages += _messages([item])
    if loose and (parts := _parts(loose)):
        messages.append(_message("user", parts))
    return messages


def _gemini_instructions(instruction: Any) -> list[dict[str, Any]]:
    """Gemini's ``system_instruction``: a text, a part, a content, or a list of texts and parts."""
    if instruction is None:
        return []
    parts = field(instruction, "parts")
    return _parts(parts if parts is not None else instruction if isinstance(instruction, (str, list, tuple))
                  else [instruction])


def _gemini_tools(tools: Any) -> list[dict[str, Any]]:
    """Gemini's tools: each ``Tool``'s function declarations, and its built-in tools by name (``google_search``,
    ``code_execution``...); Python functions as functions."""
    definitions: list[dict[str, Any]] = []
    for tool in _items(tools):
        python_function = callable(tool) and not isinstance(tool, Mapping)
        declared = {"function_declarations": [tool]} if python_function else _plain(tool)
        for kind, value in declared.items() if isinstance(declared, Mapping) else ():
            if kind in ("function_declarations", "functionDeclarations"):
                definitions += [definition for function in _items(value) if (definition := _tool_definition(function))]
            else:
                definitions.append({"type": kind, "name": kind})
    return definitions
