"""The LLM judge's client: one OpenAI-compatible endpoint, retried, cached, bounded in concurrency.

Shared by the ``llm`` judge (:mod:`harness_builtins.judges.pairwise_llm`) and the ``llm_score`` judge
(:mod:`harness_builtins.judges.scoring_llm`, which reward source ``llm_judge`` builds); each brings its own
prompt template and verdict parser. What this module owns:

- the endpoint options (``base_url``, ``model``, ``api_key_env`` …) both judges accept;
- requests at temperature 0, retried with exponential backoff on timeouts, connection errors,
  429 and 5xx (a server's ``Retry-After`` wins over the backoff), and re-asked when the verdict
  does not parse; when retries run out, one :class:`HarnessError` naming the endpoint;
- an append-only JSONL cache of verdicts keyed by a hash of (base_url, model, template, filled
  fields), flushed and fsynced per verdict, so a rerun or a resumed run never pays a call twice;
- counters (calls, cache hits, retries, parse failures) for the last batch.

The API key is read from the environment variable the options name; it is never written to the
cache, a log, a config or an error message.
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import string
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar

from pydantic import Field, field_validator, model_validator

from harness.api import HarnessError, Options, scrub

T = TypeVar("T")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RETRYABLE_STATUS = frozenset({408, 409, 429})
SHOWN_CHARS = 200  # how much of an unparseable verdict an error quotes


class VerdictError(ValueError):
    """The judge answered, but not in the form the template asks for."""


class JudgeEndpointOptions(Options):
    """Where the judge lives and how hard to try; every LLM judge's options extend these."""

    base_url: str = Field(..., min_length=1, description="OpenAI-compatible endpoint, e.g. 'https://api.openai.com/v1' or 'http://localhost:8000/v1'.")
    model: str = Field(..., min_length=1, description="Model name the endpoint serves, e.g. 'gpt-4o-mini'.")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the environment variable holding the API key (never the key itself); '' for an endpoint that needs no key.")
    timeout_s: float = Field(60.0, gt=0, description="Seconds one request may take before it counts as timed out (and is retried).")
    max_retries: int = Field(5, ge=0, description="Retries of one request after a timeout, connection error, 429 or 5xx.")
    backoff_s: float = Field(1.0, ge=0, description="Wait before the first retry; doubles with each further retry.")
    max_backoff_s: float = Field(60.0, ge=0, description="Longest single wait between retries (a server's Retry-After included).")
    parse_retries: int = Field(2, ge=0, description="Times a verdict that does not parse is asked for again before the run stops with an error.")
    concurrency: int = Field(4, ge=1, description="Requests in flight at once (threads).")
    max_tokens: int = Field(512, ge=1, description="Longest judge answer, in tokens (room for reasoning before the verdict line).")
    cache_dir: str = Field("", description="Verdict cache directory; '' means $HARNESS_CACHE_DIR/llm_judge (~/.cache/harness/llm_judge).")

    @model_validator(mode="after")
    def _env_is_a_name(self):
        # Raised without the value: a key pasted here must not be echoed into a terminal or log. A key of
        # letters, digits and _ (Groq's gsk_…) is a valid variable name, so its shape is what gives it away.
        if self.api_key_env and (not ENV_NAME.fullmatch(self.api_key_env) or scrub(self.api_key_env) != self.api_key_env):
            raise ValueError("api_key_env must be the NAME of an environment variable (letters, digits, _), "
                             "not the key itself; export the key, e.g. OPENAI_API_KEY=…, and name that variable")
        return self


class TemplatedJudgeOptions(JudgeEndpointOptions):
    """Endpoint options and the judge's ``template``, whose placeholders must be exactly ``placeholders``."""

    placeholders: ClassVar[tuple[str, ...]] = ()
    template: str = Field(..., description="The judge's instructions, with the judge's placeholders.")

    @field_validator("template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        return check_template(template, cls.placeholders)


def check_template(template: str, required: Sequence[str]) -> str:
    """``template`` if its placeholders are exactly ``required`` (literal braces doubled); else ValueError."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"template is not a valid format string ({err}); write literal braces as {{{{ and }}}}") from None
    fields = {name for _, name, spec, conv in parsed if name is not None}
    expected = ", ".join("{" + r + "}" for r in required)
    unknown = sorted(fields - set(required))
    if unknown:
        shown = ", ".join("{" + f + "}" for f in unknown)
        raise ValueError(f"template has unknown placeholder(s) {shown}; allowed: {expected} (write literal braces as {{{{ and }}}})")
    missing = [r for r in required if r not in fields]
    if missing:
        raise ValueError(f"template lacks placeholder(s) {', '.join('{' + m + '}' for m in missing)}; it needs {expected}")
    if any(spec or conv for _, name, spec, conv in parsed if name is not None):
        raise ValueError(f"template placeholders take no format spec or conversion; use plain {expected}")
    return template


def final_line(text: str, pattern: re.Pattern[str], expected: str) -> re.Match[str]:
    """Match ``pattern`` against the last non-empty line of ``text``, or raise :class:`VerdictError`."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    match = pattern.fullmatch(lines[-1]) if lines else None
    if match is None:
        raise VerdictError(f"expected a final line {expected}")
    return match


def default_cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR/llm_judge`` (``~/.cache/harness/llm_judge`` by default)."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or "~/.cache/harness").expanduser() / "llm_judge"


# --------------------------------------------------------------------------- the cache
class VerdictCache:
    """Append-only JSONL of ``{"key", "model", "text"}``: one fsynced line per verdict, torn tail tolerated.

    Each line is written with one ``os.write`` on an ``O_APPEND`` descriptor, so runs sharing
    the file never interleave; a line cut short by a crash is skipped when the file is read.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._texts: dict[str, str] = {}
        self.skipped = 0
        self._needs_newline = False
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        self._needs_newline = bool(data) and not data.endswith(b"\n")
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("key"), str) and isinstance(record.get("text"), str):
                self._texts[record["key"]] = record["text"]
            else:  # torn by a crash, or not a verdict line (``"text": 5``): asked again, never parsed as one
                self.skipped += 1

    def get(self, key: str) -> str | None:
        return self._texts.get(key)

    def put(self, key: str, model: str, text: str) -> None:
        line = json.dumps({"key": key, "model": model, "text": text}, ensure_ascii=False) + "\n"
        with self._lock:
            payload = ("\n" if self._needs_newline else "") + line
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, payload.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._needs_newline = False
            self._texts[key] = text


# --------------------------------------------------------------------------- the client
class JudgeClient:
    """Asks one endpoint for verdicts: cached, retried, ``concurrency`` requests at a time."""

    def __init__(self, options: JudgeEndpointOptions, who: str) -> None:
        self.options = options
        self.who = who  # "judge 'llm_score'": how errors name the asker
        self._client = None
        self._cache: VerdictCache | None = None
        self._key = ""
        self._lock = threading.Lock()
        self._stats = _empty_stats()
        self._stop = threading.Event()  # set by the first hard failure of a batch: the other workers give up

    @property
    def endpoint(self) -> str:
        return f"{self.options.base_url} (model {self.options.model!r})"

    def open(self) -> None:
        """Read the key from the environment, build the client, load the cache (idempotent)."""
        if self._client is not None:
            return
        import openai

        self._key = self._read_key()
        self._client = openai.OpenAI(base_url=self.options.base_url, api_key=self._key or "no-key",
                                     timeout=self.options.timeout_s, max_retries=0)
        self._cache = VerdictCache(self.cache_path())

    def _read_key(self) -> str:
        name = self.options.api_key_env
        if not name:
            return ""
        key = os.environ.get(name, "")
        if not key:
            raise HarnessError(f"{self.who}: environment variable {name} is not set (api_key_env = {name!r}); "
                               f"export it with the API key for {self.options.base_url}.")
        return key

    def cache_path(self) -> Path:
        root = Path(self.options.cache_dir).expanduser() if self.options.cache_dir else default_cache_dir()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.options.model)[:60]
        return root / f"{slug}-{_digest([self.options.base_url, self.options.model])[:12]}.jsonl"

    def diagnostics(self) -> dict[str, float]:
        """Counters of the last :meth:`judge` batch, namespaced ``judge/…``."""
        return {f"judge/{k}": float(v) for k, v in self._stats.items()}

    def judge(self, template: str, items: Sequence[Mapping[str, str]], parse: Callable[[str], T]) -> list[T]:
        """One verdict per item (``template`` filled with its fields), from the cache or the endpoint."""
        self.open()
        self._stats = _empty_stats()
        keys = [self.cache_key(template, item) for item in items]
        texts = {k: text for k in keys if (text := self._cache.get(k)) is not None and _parses(parse, text)}
        todo = {k: item for k, item in zip(keys, items) if k not in texts}
        with self._lock:
            self._stats["cache_hits"] = len(items) - sum(1 for k in keys if k in todo)
        texts.update(self._ask_all(template, todo, parse))
        return [parse(texts[k]) for k in keys]

    def cache_key(self, template: str, fields: Mapping[str, str]) -> str:
        return _digest([self.options.base_url, self.options.model, template, dict(sorted(fields.items()))])

    def _ask_all(self, template: str, todo: Mapping[str, Mapping[str, str]], parse) -> dict[str, str]:
        if not todo:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(todo)), thread_name_prefix="judge")
        self._stop.clear()
        try:
            futures = {pool.submit(self._ask_or_stop, key, template.format(**fields), parse): key
                       for key, fields in todo.items()}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None and not isinstance(f.exception(), _Cancelled)]
            if failed:  # the first error stops the batch at once: no new prompts, no further retries or waits
                self._stop.set()
                raise failed[0].exception()
            return {key: future.result() for future, key in futures.items()}
        finally:
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _ask_or_stop(self, key: str, content: str, parse) -> str:
        """:meth:`_ask`, but a hard failure stops the batch before this worker can take another prompt."""
        if self._stop.is_set():
            raise _Cancelled()
        try:
            return self._ask(key, content, parse)
        except _Cancelled:
            raise
        except BaseException:
            self._stop.set()
            raise

    def _ask(self, key: str, content: str, parse) -> str:
        """A verdict text that parses: re-asked up to ``parse_retries`` times, then an error."""
        for attempt in range(self.options.parse_retries + 1):
            if attempt:
                self._count("retries")
            text = self._complete(content)
            try:
                parse(text)
            except VerdictError as err:
                self._count("parse_failures")
                problem = err
                continue
            self._cache.put(key, self.options.model, text)
            return text
        shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + f"… ({len(text)} chars)"
        raise HarnessError(
            f"{self.who}: the judge at {self.endpoint} gave no verdict in the required form after "
            f"{self.options.parse_retries + 1} answers ({problem}); its last answer was {self._redact(shown)!r}. "
            f"Check that the template asks for that final line and that the model follows it (or raise parse_retries)."
        )

    def _complete(self, content: str) -> str:
        """One chat completion, retried on timeouts, connection errors, 429 and 5xx."""
        import openai

        for attempt in range(self.options.max_retries + 1):
            if self._stop.is_set():
                raise _Cancelled()
            if attempt:
                self._count("retries")
            self._count("calls")
            try:
                response = self._client.chat.completions.create(
                    model=self.options.model, messages=[{"role": "user", "content": content}],
                    temperature=0, max_tokens=self.options.max_tokens)
            except (openai.APIConnectionError, openai.APIStatusError) as err:
                if not _retryable(err):
                    raise self._refused(err) from None
                last = err
                if attempt < self.options.max_retries and self._stop.wait(self._delay(attempt, err)):
                    raise _Cancelled() from None  # another request failed for good while this one waited
                continue
            except openai.APIError as err:  # e.g. a body that is not the protocol's
                raise self._refused(err) from None
            return self._message_text(response)
        raise self._exhausted(last)

    def _message_text(self, response: Any) -> str:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            shown = self._redact(str(response)[:SHOWN_CHARS])
            raise HarnessError(f"{self.who}: {self.endpoint} did not answer with a chat completion (got {shown!r}); "
                               f"check base_url: it must be an OpenAI-compatible API root, usually ending in /v1.")
        message = getattr(choices[0], "message", None) if choices else None
        return getattr(message, "content", None) or ""

    def _delay(self, attempt: int, err: Exception) -> float:
        wait_s = _retry_after(err)
        if wait_s is None:
            wait_s = self.options.backoff_s * 2 ** attempt
        return min(wait_s, self.options.max_backoff_s)

    def _exhausted(self, err: Exception) -> HarnessError:
        tries = self.options.max_retries + 1
        return HarnessError(
            f"{self.who}: the judge at {self.endpoint} failed {tries} time(s); last error: {self._describe(err)}. "
            f"Check that the server is up and base_url is right (OpenAI-compatible URLs usually end in /v1), "
            f"that it serves model {self.options.model!r}, and its rate limits; raise timeout_s or max_retries "
            f"if it is only slow."
        )

    def _refused(self, err: Exception) -> HarnessError:
        status = getattr(err, "status_code", None)
        fix = {401: f"check the API key in ${self.options.api_key_env or '(api_key_env)'}",
               403: f"check the API key in ${self.options.api_key_env or '(api_key_env)'} and its permissions",
               404: "check base_url (it usually ends in /v1) and the model name"}
        return HarnessError(f"{self.who}: the judge at {self.endpoint} refused the request: {self._describe(err)}; "
                            f"{fix.get(status, 'check base_url, model and the template')}.")

    def _describe(self, err: Exception) -> str:
        import openai

        if isinstance(err, openai.APITimeoutError):
            text = f"timed out after {self.options.timeout_s:g} s"
        elif isinstance(err, openai.APIStatusError):
            text = f"HTTP {err.status_code}: {err.message}"
        else:
            cause = err.__cause__ or err.__context__
            text = f"{type(err).__name__}: {err}" + (f" ({cause})" if cause else "")
        return self._redact(text[:SHOWN_CHARS * 2])

    def _redact(self, text: str) -> str:
        """The key itself, and anything else shaped like a key (:func:`harness.api.scrub`), masked."""
        return scrub(text.replace(self._key, "***") if self._key else text)

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1


class _Cancelled(Exception):
    """A request given up because another request of the batch already failed for good."""


def _empty_stats() -> dict[str, int]:
    return {"calls": 0, "cache_hits": 0, "retries": 0, "parse_failures": 0}


def _parses(parse: Callable[[str], Any], text: str) -> bool:
    try:
        parse(text)
    except VerdictError:
        return False
    return True


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _retryable(err: Exception) -> bool:
    status = getattr(err, "status_code", None)
    return status is None or status in RETRYABLE_STATUS or status >= 500


def _retry_after(err: Exception) -> float | None:
    """Seconds a server asked us to wait (``retry-after-ms`` or ``Retry-After``: seconds or an HTTP date)."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None
