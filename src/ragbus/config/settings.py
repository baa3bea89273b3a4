"""The one ``Settings`` object. Every field is read from ``RAGBUS_<NAME>`` or a ``.env`` file."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, PositiveFloat, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ragbus.config.kinds import BusKind as BusKind  # still importable from here
from ragbus.config.kinds import RetrieverKind as RetrieverKind
from ragbus.runtime.redelivery import DELAY_TIERS, DELIVERY_LIMIT, MAX_ATTEMPTS

#: The LM used when none is configured: extractive, offline, shipped with ragbus.
OFFLINE_MODEL = "offline/extractive"
#: Default bound of the in-process result cache, in bytes.
CACHE_MAX_BYTES = 64 * 1024 * 1024
#: Default largest corpus document, in bytes.
CORPUS_MAX_FILE_BYTES = 32 * 1024 * 1024
#: Default largest number of documents in a corpus folder.
CORPUS_MAX_FILES = 10_000
#: Default number of RabbitMQ nodes that hold a copy of each queue: three survive the
#: loss of any one node.
QUORUM_GROUP_SIZE = 3


def default_dlq_path() -> Path:
    """Where the memory bus keeps dead letters unless ``RAGBUS_DLQ_PATH`` says otherwise:
    ``dlq.sqlite3`` in the user's data directory (``$XDG_DATA_HOME/ragbus``, by default
    ``~/.local/share/ragbus``, on Linux), the same wherever a command runs."""
    return Path(platformdirs.user_data_dir("ragbus", appauthor=False)) / "dlq.sqlite3"


def check_url(url: str, *, schemes: Collection[str], example: str) -> None:
    """Raise ``ValueError`` unless every comma-separated part of ``url`` is a URL with
    one of ``schemes``, a host and a valid port. The message never repeats the URL: it
    may hold a password, and a URL that does not parse cannot be masked.

    Parameters:
        url: one URL, or several separated by commas (the nodes of a cluster).
        schemes: the schemes allowed.
        example: a well-formed URL to show instead.
    """
    for part in url.split(","):
        try:
            parsed = urlsplit(part.strip())
            parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parsed = None
        if (
            parsed is None
            or parsed.scheme not in schemes
            or not parsed.hostname
            or any(c.isspace() for c in part.strip())
        ):
            raise ValueError(
                f"not a valid {' or '.join(f'{s}://' for s in sorted(schemes))} URL "
                f"(the value is not shown: it may hold a password); expected e.g. {example}"
            )


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Settings(BaseSettings):
    """All of ragbus's configuration. See the README's Configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="RAGBUS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A validation error would repeat the raw value (a URL with its password)
        # in its text, and so in any traceback: never show inputs.
        hide_input_in_errors=True,
    )

    app: str = Field(
        default="rag",
        description="the pipeline commands serve: a built-in name (rag, analyzer) or "
        "module:attribute",
    )
    bus: BusKind = Field(default=BusKind.MEMORY, description="memory or rabbitmq")
    amqp_url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="RabbitMQ URL (bus=rabbitmq), or the URLs of a cluster's nodes separated "
        "by commas (connect to the first that accepts, move to another when it is lost); a "
        "secret: shown only masked",
    )
    exchange: str = Field(default="ragbus.events", description="RabbitMQ topic exchange")
    quorum_initial_group_size: int = Field(
        default=QUORUM_GROUP_SIZE,
        ge=1,
        description="how many RabbitMQ nodes hold a copy of each queue "
        "(x-quorum-initial-group-size; the broker uses every node when the cluster has "
        "fewer); every process of a deployment must use the same",
    )
    queue_prefix: str = Field(default="ragbus", description="prefix of every stage queue name")
    connect_timeout_s: float = Field(
        default=60.0,
        ge=0,
        description="how long a worker, the gateway or a Client keeps trying to reach the "
        "broker when it starts (with backoff, one log line per attempt) before it exits; "
        "one-shot commands (ask, publish, dlq) try each node once",
    )

    corpus: Path | None = Field(
        default=None,
        description="folder of .md/.txt/.jsonl documents, or an index built by `ragbus index`; "
        "default: the bundled ragbus guide",
    )
    corpus_max_file_bytes: int = Field(
        default=CORPUS_MAX_FILE_BYTES,
        ge=1,
        description="largest corpus document read (bytes); a larger one is an error naming it",
    )
    corpus_max_files: int = Field(
        default=CORPUS_MAX_FILES,
        ge=1,
        description="most documents read from a corpus folder; more is an error",
    )
    top_k: int = Field(default=4, ge=1, le=50, description="passages retrieved per question")
    retriever: RetrieverKind = Field(
        default=RetrieverKind.BM25,
        description="how the retrieve stage searches: bm25 (terms, offline), dense "
        "(embeddings; needs embed_model and an index built with it) or hybrid (both, "
        "ranks fused)",
    )
    embed_model: str | None = Field(
        default=None,
        description="LiteLLM embedding model (e.g. openai/text-embedding-3-small); when "
        "set, `ragbus index` stores passage embeddings and dense/hybrid search uses it",
    )
    embed_api_base: str | None = Field(default=None, description="embedding server URL")
    embed_api_key: SecretStr | None = Field(default=None, description="embedding API key")
    embed_batch_size: int = Field(
        default=64, ge=1, le=2048, description="texts sent in one embedding call at most"
    )

    program: Path | None = Field(
        default=None,
        description="a saved or compiled DSPy program (JSON from module.save) that the "
        "RAG generate stage loads instead of its default program",
    )
    lm_model: str = Field(default=OFFLINE_MODEL, description="LiteLLM model string")
    lm_api_base: str | None = Field(default=None, description="LM server URL")
    lm_api_key: SecretStr | None = Field(default=None, description="LM API key")
    lm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    lm_max_tokens: int = Field(default=1024, ge=1)
    lm_latency_ms: float = Field(
        default=0.0, ge=0.0, description="simulated delay of the offline LM, to model a real one"
    )

    lm_fallback_model: str | None = Field(
        default=None,
        description="LiteLLM model string of an LM the generate stage answers with while "
        "the LM's breaker is open (same API base and key); unset: the stage pauses",
    )
    lm_timeout_s: PositiveFloat | None = Field(
        default=None,
        description="time limit of one HTTP request to the LM, given to the LM client "
        "(dspy.LM's timeout); unset: the client's own default",
    )
    lm_max_connections: int | None = Field(
        default=None,
        ge=1,
        description="HTTP connections open to the LM at most, per LM (the LM client's "
        "connection pool; a call waits for a free one); unset: the client's own default "
        "(100 per LM)",
    )
    lm_rpm: int | None = Field(
        default=None,
        ge=1,
        description="LM calls per minute at most (the API quota), in any 60 s; shared by "
        "every worker through RAGBUS_CACHE_URL (Redis), else per process; unset: none",
    )
    lm_tpm: int | None = Field(
        default=None,
        ge=1,
        description="LM tokens per minute at most, as the LM reports its usage; shared "
        "like lm_rpm; unset: none",
    )
    lm_concurrency_adaptive: bool = Field(
        default=True,
        description="adapt the LM calls in flight per process to the LM's latency and "
        "refusals (429, timeouts); within each stage's concurrency",
    )
    lm_concurrency_start: int = Field(
        default=16, ge=1, description="adaptive LM concurrency: the limit to start from"
    )
    lm_concurrency_min: int = Field(
        default=1, ge=1, description="adaptive LM concurrency: the lowest limit"
    )
    lm_concurrency_max: int = Field(
        default=256, ge=1, description="adaptive LM concurrency: the highest limit"
    )

    concurrency: int = Field(default=16, ge=1, le=10_000, description="in-flight events per stage")
    queue_max_length: int = Field(
        default=1000,
        ge=1,
        description="bound of each stage queue, both buses (RabbitMQ: x-max-length, a new "
        "RAGBUS_QUEUE_PREFIX to change it on existing queues); a full queue refuses publishes",
    )
    queue_full_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="how long a publisher refused by a full queue waits and tries again "
        "(at most until the event's deadline) before QueueFullError (gateway: 429)",
    )
    stage_timeout_s: float = Field(default=60.0, gt=0, description="time limit of one handler call")
    stage_timeouts_s: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="time limits of some stages' handler calls by stage name, as JSON, e.g. "
        '{"retrieve": 5, "generate": 90}; the others take stage_timeout_s',
    )
    max_attempts: int = Field(
        default=MAX_ATTEMPTS, ge=1, description="deliveries of an event before the DLQ"
    )
    delivery_limit: int = Field(
        default=DELIVERY_LIMIT,
        ge=1,
        description="deliveries of a message whose handler crashes before the DLQ "
        "(RabbitMQ: the stage queues' x-delivery-limit; same value on every worker)",
    )
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="drain time on stop")
    dlq_path: Path = Field(
        default_factory=default_dlq_path,
        description="memory bus: SQLite file of dead letters; default dlq.sqlite3 in the "
        "user's data directory (~/.local/share/ragbus on Linux)",
    )
    redelivery_delays_s: tuple[PositiveFloat, ...] = Field(
        default=DELAY_TIERS,
        min_length=1,
        description="delay before redelivery n+1 of a failed event, by attempt (the last "
        "repeats); RabbitMQ: each is rounded up to one of the bus's delay tiers",
    )

    retry_attempts: int = Field(default=3, ge=1, description="in-process calls per delivery")
    retry_initial_s: float = Field(default=0.1, gt=0, description="first in-process backoff")
    retry_max_s: float = Field(default=2.0, gt=0, description="longest in-process backoff")

    breaker_failure_rate: float = Field(
        default=50.0, gt=0, le=100, description="% failures to open"
    )
    breaker_slow_call_rate: float = Field(default=100.0, gt=0, le=100, description="% slow to open")
    breaker_slow_call_s: float = Field(default=30.0, gt=0, description="a call this long is slow")
    breaker_window: Literal["count", "time"] = Field(default="count", description="window kind")
    breaker_window_size: int = Field(default=20, ge=1, description="calls or seconds in window")
    breaker_minimum_calls: int = Field(default=10, ge=1, description="calls before judging")
    breaker_open_s: float = Field(default=1.0, gt=0, description="open time before probing")
    breaker_half_open_calls: int = Field(default=3, ge=1, description="probes while half-open")

    cache_enabled: bool = Field(default=True, description="cache results and coalesce inputs")
    cache_url: SecretStr | None = Field(
        default=None, description="redis://... to share the cache; a secret: shown only masked"
    )
    cache_namespace: str = Field(
        default="ragbus", description="prefix of every cache key (several deployments, one Redis)"
    )
    cache_ttl_s: int = Field(default=3600, ge=1, description="time to live of cached results")
    cache_max_bytes: int = Field(
        default=CACHE_MAX_BYTES,
        ge=1024,
        description="in-process cache (no cache_url): memory it may hold, in bytes; the least "
        "recently used results go first",
    )
    coalesce_lease_s: float = Field(
        default=3.0,
        ge=0.3,
        le=60.0,
        description="shared cache: how long the lease of a worker computing a result "
        "outlives it if it dies (renewed every third of this while it works)",
    )
    dedup: bool = Field(default=True, description="drop redelivered events already processed")

    worker_id: str = Field(default_factory=_default_worker_id, description="name in dead letters")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="worker and gateway log lines: text, or one JSON object per line; "
        "either way a line about an event carries its correlation id, event id, stage, "
        "attempt and worker id",
    )
    heartbeat_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="seconds between a worker's heartbeats (what `ragbus status` shows); "
        "0 sends none",
    )
    worker_processes: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="`ragbus worker`: worker processes it supervises on this host "
        "(unset: one per core; 1: the command is the worker itself)",
    )

    stream_tokens: bool = Field(
        default=False,
        description="generate workers publish answer_token events (transient) while they "
        "generate, for streaming clients such as the gateway",
    )
    stream_chunk_ms: float = Field(
        default=10.0,
        ge=0,
        le=1000,
        description="streamed tokens written within this many ms travel as one token event "
        "(the first goes out at once); 0: one event per LM delta",
    )

    api_token: SecretStr | None = Field(
        default=None,
        description="gateway: when set, every API route requires `Authorization: Bearer <token>`",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="gateway: origins allowed by CORS, comma-separated or a JSON list "
        "(`*` for any); default none",
    )
    gateway_host: str = Field(default="127.0.0.1", description="gateway: interface to bind")
    gateway_port: int = Field(default=8000, ge=0, le=65535, description="gateway: TCP port")
    gateway_workers: int = Field(
        default=1,
        ge=1,
        le=256,
        description="gateway: processes serving the port (RabbitMQ bus only beyond 1)",
    )
    gateway_reuse_port: bool = Field(
        default=False,
        description="gateway: bind with SO_REUSEPORT, so that several gateway processes "
        "share the port and the kernel spreads connections over them (`serve --workers` "
        "sets it for its processes)",
    )
    gateway_max_body_bytes: int = Field(
        default=65_536, ge=1024, description="gateway: largest request body or WebSocket message"
    )
    gateway_timeout_s: float = Field(
        default=60.0, gt=0, description="gateway: default wait for an answer (also its deadline)"
    )
    gateway_max_timeout_s: float = Field(
        default=300.0, gt=0, description="gateway: longest wait a request may ask for"
    )
    gateway_history_turns: int = Field(
        default=6, ge=0, le=20, description="gateway: turns of a chat session passed as history"
    )
    gateway_sessions: int = Field(
        default=1000, ge=1, description="gateway: chat sessions kept (least recently used go)"
    )

    # The gateway's trust and limits (docs/security.md).
    gateway_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="gateway: host names the Host header may name (DNS-rebinding defence), "
        "comma-separated or a JSON list; `.example.com` allows its subdomains, `*` any",
    )
    gateway_event_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="gateway: event types POST /v1/events accepts besides the pipeline's "
        "entry events (`query_received`); default none",
    )
    gateway_allow_unauthenticated: bool = Field(
        default=False,
        description="gateway: let `ragbus serve` bind a non-loopback address without "
        "RAGBUS_API_TOKEN",
    )
    gateway_max_asks: int = Field(
        default=256, ge=1, description="gateway: POST /v1/ask requests answered at once (429)"
    )
    gateway_max_streams: int = Field(
        default=256, ge=1, description="gateway: SSE streams open at once (429)"
    )
    gateway_max_websockets: int = Field(
        default=256, ge=1, description="gateway: WebSocket connections open at once (429)"
    )
    gateway_max_per_client: int = Field(
        default=32,
        ge=1,
        description="gateway: asks, streams and WebSockets one client (token, or address "
        "without one) may have open at once, of each kind (429)",
    )
    gateway_rate_limit: str = Field(
        default="20/second;600/minute",
        description="gateway: requests and chat questions per client (token, or address "
        "without one), in the `limits` notation; empty for none",
    )
    gateway_rate_limit_storage: SecretStr = Field(
        default=SecretStr("async+memory://"),
        description="gateway: where rate-limit counters live: `async+memory://` (this "
        "process) or `async+redis://host:6379/0` (shared by gateways); a secret",
    )

    @field_validator("gateway_rate_limit")
    @classmethod
    def _parse_rate_limit(cls, value: str) -> str:
        """Refuse a rate limit the ``limits`` library cannot read, at start-up."""
        # the default is known good: importing `limits` costs every command ~15 ms
        if value.strip() and value != cls.model_fields["gateway_rate_limit"].default:
            from limits import parse_many

            parse_many(value)  # its ValueError names the string
        return value.strip()

    @field_validator("amqp_url")
    @classmethod
    def _check_amqp_url(cls, value: SecretStr) -> SecretStr:
        check_url(
            value.get_secret_value(),
            schemes=("amqp", "amqps"),
            example="amqp://user:***@host:5672/vhost",
        )
        return value

    @field_validator("cache_url")
    @classmethod
    def _check_cache_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_url(
                value.get_secret_value(),
                schemes=("redis", "rediss"),
                example="redis://:***@host:6379/0",
            )
        return value

    @field_validator("cors_origins", "gateway_allowed_hosts", "gateway_event_types", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept ``a,b`` as well as a JSON list (``["a", "b"]``) from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and ``.env``, with ``overrides`` on top (None ignored)."""
    values = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**values)  # type: ignore[arg-type]


def with_changes(settings: Settings, **changes: object) -> Settings:
    """``settings`` with ``changes`` applied and validated as values from the environment
    are (``model_copy`` would skip validation: ``"memory"`` would stay a plain string).
    The environment is not read again.

    Parameters:
        settings: the settings to start from.
        **changes: fields to change, e.g. ``bus="memory"``.
    """
    return type(settings).model_validate({**settings.model_dump(), **changes})
