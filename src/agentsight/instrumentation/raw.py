"""Raw HTTP responses of Stainless-generated clients (OpenAI, Anthropic, Groq): ``with_raw_response`` and
``with_streaming_response``, plain or ``stream=True``, sync or async.

Their body is read after the call returns, in one of several ways: ``parse()`` (the response model, or for
``stream=True`` the client's stream of events), ``read()`` / ``text()`` / ``json()``, or ``iter_bytes()`` /
``iter_text()`` / ``iter_lines()``. :func:`observe_raw` hands the response back wrapped, so that however it
is read the model call is described by what was read and ends exactly once: when the body has been read,
when the response is closed (as leaving ``with_streaming_response``'s ``with`` block does), or when it is
collected unread. A body read as text or bytes is decoded here (JSON, or server-sent events of JSON) into
:class:`Fields`, which the clients' describers read as they read the clients' own response models.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import wrapt

from agentsight.instrumentation.genai import ModelCall

logger = logging.getLogger("agentsight.instrumentation")

Describe = Callable[[ModelCall, Any], None]
"""Records a whole response (a response model, or its JSON as :class:`Fields`) on the call."""
Observe = Callable[[Any, ModelCall], Any]
"""Wraps a stream of events (the client's, or decoded ones) so that reading it reports to the call and ends it."""


class Fields(dict):  # type: ignore[type-arg]
    """A JSON object whose keys also read as attributes, a missing one as ``None`` (as a response model's
    optional fields do), so one describer reads both a parsed response and a raw one's JSON."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # keep copy, pickle and other protocol look-ups honest
            raise AttributeError(name)
        return self.get(name)


def observe_raw(response: Any, call: ModelCall, streaming: bool, describe: Describe, observe: Observe) -> Any:
    """What the caller gets for a raw ``response`` of ``call``, which it describes and ends (now, or when read).

    ``streaming``: the request asked for server-sent events (``stream=True``).
    """
    http = response.http_response
    body = _Body(call, http, streaming, describe, observe)
    if not streaming and http.is_closed:  # ``with_raw_response``: the client has read the body already
        body.finish(http.content)
        return response
    if inspect.iscoroutinefunction(type(response).parse):
        return AsyncStreamedResponse(response, body)
    if hasattr(response, "iter_lines"):
        return StreamedResponse(response, body)
    return RawResponse(response, body)


class _Body:
    """The call of one raw response, described by whichever way its body is read first, and ended once."""

    def __init__(self, call: ModelCall, http: Any, streaming: bool, describe: Describe, observe: Observe) -> None:
        self.call = call
        self.streaming = streaming
        self.stream: Any = None  # what ``parse()`` of a streamed response gave: it ends the call itself
        self._http = http
        self._describe = describe
        self._observe = observe
        self._done = False
        self._lock = threading.Lock()

    def _claim(self) -> bool:
        with self._lock:
            done, self._done = self._done, True
        return not done

    def stream_of(self, parsed: Any) -> Any:
        """``parse()`` of a streamed response: the client's stream, observed (the same wrapper each time)."""
        if self.stream is not None and parsed is self.stream.__wrapped__:
            return self.stream
        if self.stream is not None or not self._claim():  # another type, or the body was read some other way
            return parsed
        self.stream = self._observe(parsed, self.call)
        return self.stream

    @contextmanager
    def reading(self, pieces: list[Any] | None = None, separator: Any = "") -> Iterator[None]:
        """Read the body inside this block: ``pieces`` (joined with ``separator``) as they are collected, else
        the whole body the response holds afterwards. A read cut short ends the call without a response."""
        try:
            yield
        except Exception as error:
            if self._claim():
                self.call.fail(error)
            raise
        except BaseException:  # closed early (``break``), cancelled
            self.finish(None)
            raise
        self.finish(separator.join(pieces) if pieces is not None else self._http.content)

    def read_through(self, pieces: Iterator[Any], separator: Any) -> Iterator[Any]:
        """Pass ``pieces`` of the body on, and describe the call by them once they are all read."""
        seen: list[Any] = []
        with self.reading(seen, separator):
            for piece in pieces:
                seen.append(piece)
                yield piece

    async def aread_through(self, pieces: AsyncIterator[Any], separator: Any) -> AsyncIterator[Any]:
        """:meth:`read_through` for an async response."""
        seen: list[Any] = []
        with self.reading(seen, separator):
            async for piece in pieces:
                seen.append(piece)
                yield piece

    def finish(self, body: bytes | str | None) -> None:
        """Describe the call by the ``body`` read (``None``: none was) and end it, the first time only."""
        if not self._claim():
            return
        try:
            if body is not None:
                self._record(body.decode() if isinstance(body, bytes) else body)
        except Exception:  # our bookkeeping must never break the app's reading
            logger.exception("AgentSight could not describe a raw response")
        self.call.end()

    def _record(self, text: str) -> None:
        if not self.streaming:
            self._describe(self.call, json.loads(text, object_hook=Fields))
            return
        events = [json.loads(data, object_hook=Fields) for data in _event_data(text) if data != "[DONE]"]
        for _ in self._observe(iter(events), self.call):
            pass


def _event_data(text: str) -> Iterator[str]:
    """The data of each server-sent event in ``text`` (its ``data:`` lines, joined)."""
    data: list[str] = []
    for line in (*text.splitlines(), ""):
        if not line and data:
            yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class RawResponse(wrapt.ObjectProxy):  # type: ignore[misc]
    """A raw response whose body is only read by ``parse()`` (openai's ``LegacyAPIResponse`` of a stream)."""

    def __init__(self, response: Any, body: _Body) -> None:
        super().__init__(response)
        self._self_body = body

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        """The client's ``parse()``, observed."""
        body = self._self_body
        if body.streaming:
            return body.stream_of(self.__wrapped__.parse(*args, **kwargs))
        with body.reading():
            return self.__wrapped__.parse(*args, **kwargs)

    def __del__(self) -> None:
        try:
            if self._self_body.stream is None:  # else the stream it gave ends the call, read or collected
                self._self_body.finish(None)
        except Exception:  # noqa: S110 - a finalizer must not raise; the span is only left unended
            pass


class StreamedResponse(RawResponse):
    """A sync ``APIResponse`` (``with_streaming_response``; ``with_raw_response`` of a stream in anthropic >= 1)."""

    def read(self) -> Any:
        """The client's ``read()``, observed."""
        with self._self_body.reading():
            return self.__wrapped__.read()

    def text(self) -> Any:
        """The client's ``text()``, observed."""
        with self._self_body.reading():
            return self.__wrapped__.text()

    def json(self) -> Any:
        """The client's ``json()``, observed."""
        with self._self_body.reading():
            return self.__wrapped__.json()

    def iter_bytes(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        """The client's ``iter_bytes()``, observed."""
        return self._self_body.read_through(self.__wrapped__.iter_bytes(*args, **kwargs), b"")

    def iter_text(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        """The client's ``iter_text()``, observed."""
        return self._self_body.read_through(self.__wrapped__.iter_text(*args, **kwargs), "")

    def iter_lines(self) -> Iterator[str]:
        """The client's ``iter_lines()``, observed."""
        return self._self_body.read_through(self.__wrapped__.iter_lines(), "\n")

    def close(self) -> None:
        """Close the response; the call ends (with what was read, if anything)."""
        try:
            self.__wrapped__.close()
        finally:
            if self._self_body.stream is not None:
                self._self_body.stream.close()
            self._self_body.finish(None)


class AsyncStreamedResponse(RawResponse):
    """An ``AsyncAPIResponse``: :class:`StreamedResponse` whose reads are awaited."""

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        """The client's ``parse()``, observed."""
        body = self._self_body
        if body.streaming:
            return body.stream_of(await self.__wrapped__.parse(*args, **kwargs))
        with body.reading():
            return await self.__wrapped__.parse(*args, **kwargs)

    async def read(self) -> Any:
        """The client's ``read()``, observed."""
        with self._self_body.reading():
            return await self.__wrapped__.read()

    async def text(self) -> Any:
        """The client's ``text()``, observed."""
        with self._self_body.reading():
            return await self.__wrapped__.text()

    async def json(self) -> Any:
        """The client's ``json()``, observed."""
        with self._self_body.reading():
            return await self.__wrapped__.json()

    def iter_bytes(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        """The client's ``iter_bytes()``, observed."""
        return self._self_body.aread_through(self.__wrapped__.iter_bytes(*args, **kwargs), b"")

    def iter_text(self, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        """The client's ``iter_text()``, observed."""
        return self._self_body.aread_through(self.__wrapped__.iter_text(*args, **kwargs), "")

    def iter_lines(self) -> AsyncIterator[str]:
        """The client's ``iter_lines()``, observed."""
        return self._self_body.aread_through(self.__wrapped__.iter_lines(), "\n")

    async def close(self) -> None:
        """Close the response; the call ends (with what was read, if anything)."""
        try:
            await self.__wrapped__.close()
        finally:
            if self._self_body.stream is not None:
                await self._self_body.stream.close()
            self._self_body.finish(None)
