"""The event contract: the Envelope every message travels in, and the registry of the
event types a pipeline owns.

Every message on the wire is one JSON object, an :class:`Envelope`. What its ``payload``
may hold depends on its ``type``: each pipeline registers its event types, each with a
pydantic payload model and a schema version, in its own :class:`EventRegistry`, so two
pipelines can share a process without touching module globals. The registry decodes
and validates what arrives (:meth:`EventRegistry.decode`); an envelope built in code
from a payload model (:func:`new_event`, :meth:`Envelope.derive`) is valid by
construction and is not validated again.

A producer in any language may send a *minimal envelope* (``type`` + ``payload``);
ragbus fills ``id``, ``created_at``, ``version`` and ``correlation_id``.
"""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from ragbus.errors import InvalidEvent as InvalidEvent  # still importable from here
from ragbus.json_input import MalformedJSON, json_type_name, parse_json

#: Largest envelope (encoded JSON) a stage accepts, in bytes.
MAX_ENVELOPE_BYTES: Final = 1_000_000

#: The pattern of an event type name: it is a RabbitMQ routing key, so no ``*`` or ``#``.
EVENT_TYPE_PATTERN: Final = r"^[A-Za-z0-9_.:-]+$"

_TYPE_NAME: Final = re.compile(EVENT_TYPE_PATTERN)

M = TypeVar("M", bound=BaseModel)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def derived_event_id(
    causation_id: uuid.UUID, event_type: str, part: str | int | None = None
) -> uuid.UUID:
    """The deterministic id of the event of ``event_type`` produced from ``causation_id``.

    A redelivered input therefore yields an output with the same id, and consumers
    drop the duplicate.

    Parameters:
        causation_id: the id of the input event.
        event_type: the output's type.
        part: which of several outputs of one type this is, e.g. a token's sequence
            number: the name becomes ``f"{event_type}:{part}"`` (default: the only one).
    """
    return uuid.uuid5(causation_id, event_type if part is None else f"{event_type}:{part}")


class Envelope(BaseModel):
    """One event on the wire.

    The envelope's own fields are validated on construction; its ``payload`` is checked
    against its type's model by the :class:`EventRegistry` that decodes it (a payload
    model given in code is valid by construction).

    Parameters:
        type: the event type and routing key (required).
        payload: the body for ``type`` (required): a dict, or a payload model instance.
        id: unique event id (default: a new UUID4).
        version: payload schema version, from 1 (default 1; decoding fills in the
            registered version when a producer leaves it out).
        correlation_id: the originating event's id (default: ``id``).
        causation_id: the event this one was produced from (default: none).
        created_at: UTC creation time (default: now).
        deadline: absolute UTC time after which the work is useless (default: none).
        attempt: delivery attempt for the current stage, counted by ragbus (default 1).
        replays: how often an operator replayed this event from a DLQ (default 0).
        trace: W3C trace context (``traceparent``/``tracestate``), optional.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(min_length=1, max_length=100, pattern=EVENT_TYPE_PATTERN)
    version: int = Field(default=1, ge=1)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    created_at: datetime = Field(default_factory=utc_now)
    deadline: datetime | None = None
    attempt: int = Field(default=1, ge=1)
    replays: int = Field(default=0, ge=0)
    trace: dict[str, str] | None = None
    payload: dict[str, Any]

    # The payload as its model, once someone has it (decoding, or a model given in code),
    # so that reading it typed costs no second validation.
    _typed: BaseModel | None = PrivateAttr(default=None)
    # The wire form once encoded, with the fields it was made from: the result cache and
    # the bus share one encoding per hop. A copy (model_copy) has fields of its own, so
    # it encodes again.
    _encoded: tuple[dict[str, Any], bytes] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _dump_payload_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("payload"), BaseModel):
            data = {**data, "payload": data["payload"].model_dump(mode="json")}
        return data

    @model_validator(mode="after")
    def _fill(self) -> Envelope:
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.id)
        for name in ("created_at", "deadline"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=UTC))
        return self

    def __eq__(self, other: object) -> bool:
        # Two envelopes are equal when their fields are: whether someone has read the
        # payload typed yet (the private cache) does not matter.
        if not isinstance(other, Envelope):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # the payload is a dict

    @property
    def correlation(self) -> uuid.UUID:
        """``correlation_id``, always set after validation."""
        assert self.correlation_id is not None
        return self.correlation_id

    def payload_as(self, model: builtins.type[M]) -> M:
        """The payload as an instance of ``model``, validated once and kept.

        Raises ``pydantic.ValidationError`` when the payload does not fit ``model``.

        Parameters:
            model: the payload model, e.g. the one registered for ``type``.
        """
        typed = _private(self, "_typed")
        if type(typed) is model:
            return typed
        validated = model.model_validate(self.payload)
        self._typed = validated
        return validated

    def derive(
        self,
        event_type: str,
        payload: BaseModel | dict[str, Any],
        *,
        part: str | int | None = None,
        version: int = 1,
    ) -> Envelope:
        """A new event produced from this one: deterministic id, same correlation,
        deadline and trace, ``causation_id`` = this id, ``attempt`` reset to 1.

        Parameters:
            event_type: the new event's type.
            payload: its payload: a model instance (valid by construction), or a dict
                that is already valid for ``event_type`` (e.g. from a cache).
            part: distinguishes several events of one type produced from this one, e.g.
                a token's sequence number (default: none, the only one); see
                :func:`derived_event_id`.
            version: the payload's schema version (default 1).
        """
        derived = Envelope(
            id=derived_event_id(self.id, event_type, part),
            type=event_type,
            version=version,
            correlation_id=self.correlation,
            causation_id=self.id,
            deadline=self.deadline,
            trace=self.trace,
            payload=payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload,
        )
        if isinstance(payload, BaseModel):
            derived._typed = payload
        return derived

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether ``deadline`` has passed (``now`` defaults to the current UTC time)."""
        return self.deadline is not None and (now or utc_now()) >= self.deadline

    def encode(self) -> bytes:
        """The envelope as compact UTF-8 JSON, as it travels on the wire (encoded once:
        the envelope is frozen)."""
        encoded: tuple[dict[str, Any], bytes] | None = _private(self, "_encoded")
        if encoded is not None and encoded[0] is self.__dict__:
            return encoded[1]
        body = self.model_dump_json(exclude_none=True).encode()
        self._encoded = (self.__dict__, body)
        return body


def _private(model: BaseModel, name: str) -> Any:
    """The private attribute ``name`` of ``model`` (None when unset), read from its dict:
    as an attribute, pydantic serves it through ``BaseModel.__getattr__``, some 30 times
    slower (about 1.3 us), and the encoded form and the typed payload are read on every
    hop."""
    private = model.__pydantic_private__
    return None if private is None else private.get(name)


def new_event(
    event_type: str,
    payload: BaseModel | dict[str, Any],
    *,
    deadline: datetime | None = None,
    version: int = 1,
) -> Envelope:
    """A fresh originating event (its own correlation id).

    Parameters:
        event_type: the event type.
        payload: a payload model instance, or a dict already valid for ``event_type``
            (to validate one from outside, use :meth:`EventRegistry.validate`).
        deadline: absolute UTC deadline (default: none).
        version: the payload's schema version (default 1).
    """
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    event = Envelope(type=event_type, payload=body, deadline=deadline, version=version)
    if isinstance(payload, BaseModel):
        event._typed = payload
    return event


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type of a pipeline.

    Parameters:
        name: the type's name, also its routing key (letters, digits, ``_.:-``).
        model: the pydantic model of its payload.
        version: the payload's current schema version (default 1). Events of a newer
            version than a consumer knows are refused as invalid.
        transient: interim progress (tokens): not persisted, not confirmed as routed,
            dropped when nobody listens, never retried or dead-lettered (default False).
        description: what the event means, for schemas and AsyncAPI (default: the
            model's docstring).
        examples: example payloads, for documentation and load tests (default none).
    """

    name: str
    model: type[BaseModel]
    version: int = 1
    transient: bool = False
    description: str = ""
    examples: tuple[Mapping[str, Any], ...] = ()


class EventRegistry:
    """The event types of one pipeline: names, payload models and versions.

    Parameters:
        specs: event types to start with (default none).
    """

    def __init__(self, specs: Iterable[EventSpec] = ()) -> None:
        self._specs: dict[str, EventSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: EventSpec) -> EventSpec:
        """Register ``spec``; registering the same type again with another model or
        version is a ``ValueError`` (one name, one meaning)."""
        if not _valid_type_name(spec.name):
            raise ValueError(
                f"invalid event type name {spec.name!r}: use letters, digits and _.:- only"
            )
        if spec.version < 1:
            raise ValueError(f"event type {spec.name!r}: version must be at least 1")
        known = self._specs.get(spec.name)
        if known is not None and (known.model, known.version) != (spec.model, spec.version):
            raise ValueError(
                f"event type {spec.name!r} is already registered with "
                f"{known.model.__qualname__} v{known.version}"
            )
        self._specs[spec.name] = spec
        return spec

    def register(
        self,
        name: str,
        model: type[BaseModel],
        *,
        version: int = 1,
        transient: bool = False,
        description: str = "",
        examples: Iterable[Mapping[str, Any]] = (),
    ) -> EventSpec:
        """Register the event type ``name`` with its payload ``model``; see
        :class:`EventSpec` for the parameters."""
        return self.add(
            EventSpec(
                name=name,
                model=model,
                version=version,
                transient=transient,
                description=description or (model.__doc__ or "").strip().split("\n\n")[0],
                examples=tuple(examples),
            )
        )

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[EventSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def names(self) -> tuple[str, ...]:
        """The registered type names, in registration order."""
        return tuple(self._specs)

    def spec(self, name: str) -> EventSpec:
        """The spec of ``name``; :class:`InvalidEvent` naming the known types if unknown."""
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise InvalidEvent(f"unknown event type {name!r} (known: {known})")
        return spec

    def model_type(self, model: type[BaseModel]) -> str:
        """The one event type whose payload model is ``model``; ``KeyError`` when there
        is none or several (name the type then)."""
        names = [spec.name for spec in self._specs.values() if spec.model is model]
        if len(names) != 1:
            raise KeyError(
                f"{model.__qualname__} is the payload of "
                f"{'no event type' if not names else 'several event types: ' + ', '.join(names)}"
            )
        return names[0]

    def decode(self, body: bytes | str, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
        """Parse and validate one wire message; :class:`InvalidEvent` with a clear reason.

        Parameters:
            body: the raw message body (JSON).
            max_bytes: largest accepted body (default :data:`MAX_ENVELOPE_BYTES`).
        """
        size = len(body.encode() if isinstance(body, str) else body)
        if size > max_bytes:
            raise InvalidEvent(f"event is too large: {size} bytes (limit {max_bytes})")
        try:
            data = parse_json(body)
        except MalformedJSON as exc:
            raise InvalidEvent(f"malformed JSON: {exc}") from None
        return self.validate(data)

    def validate(self, data: Any) -> Envelope:
        """An envelope from a parsed JSON value, its payload validated against its type;
        :class:`InvalidEvent` with a clear reason otherwise.

        Parameters:
            data: the decoded JSON (an object with at least ``type`` and ``payload``).
        """
        if not isinstance(data, dict):
            raise InvalidEvent(f"an event must be a JSON object, got {json_type_name(data)}")
        name = data.get("type")
        if not isinstance(name, str):
            raise InvalidEvent("invalid event: type: a string is required")
        spec = self.spec(name)
        version = data.get("version", spec.version)
        if isinstance(version, int) and not isinstance(version, bool) and version > spec.version:
            raise InvalidEvent(
                f"{name} version {version} is newer than this pipeline knows ({spec.version})"
            )
        raw_payload = data.get("payload")
        try:
            typed = spec.model.model_validate(raw_payload)
        except ValidationError as exc:
            raise InvalidEvent(describe_validation_error(exc, prefix=("payload",))) from None
        fields = {**data, "version": version, "payload": typed.model_dump(mode="json")}
        try:
            envelope = Envelope.model_validate(fields)
        except ValidationError as exc:
            raise InvalidEvent(describe_validation_error(exc)) from None
        envelope._typed = typed
        return envelope

    def new(
        self, name: str, payload: BaseModel | Mapping[str, Any], *, deadline: datetime | None = None
    ) -> Envelope:
        """A fresh originating event of type ``name``, its payload validated (a dict) or
        checked to be the registered model (an instance); :class:`InvalidEvent`
        otherwise.

        Parameters:
            name: a registered event type.
            payload: the payload, as its model or as a dict.
            deadline: absolute UTC deadline (default: none).
        """
        spec = self.spec(name)
        if isinstance(payload, BaseModel):
            if not isinstance(payload, spec.model):
                raise InvalidEvent(
                    f"{name} takes a {spec.model.__qualname__} payload, "
                    f"not {type(payload).__qualname__}"
                )
            typed: BaseModel = payload
        else:
            try:
                typed = spec.model.model_validate(payload)
            except ValidationError as exc:
                raise InvalidEvent(describe_validation_error(exc, prefix=("payload",))) from None
        return new_event(name, typed, deadline=deadline, version=spec.version)

    def schemas(self, name: str | None = None) -> dict[str, Any]:
        """JSON Schema of the envelope and of each payload (or of one type's payload).

        Raises :class:`InvalidEvent` for an unknown ``name``."""
        specs = [self.spec(name)] if name else sorted(self._specs.values(), key=lambda s: s.name)
        return {
            "envelope": Envelope.model_json_schema(),
            "payloads": {spec.name: spec.model.model_json_schema() for spec in specs},
        }


def _valid_type_name(name: str) -> bool:
    return len(name) <= 100 and _TYPE_NAME.match(name) is not None


def describe_validation_error(exc: ValidationError, *, prefix: tuple[str, ...] = ()) -> str:
    """One line naming each invalid field and why.

    Parameters:
        exc: the validation error.
        prefix: location parts put before each field's location, e.g. ``("payload",)``
            (default none).
    """
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in (*prefix, *error["loc"])) or "event"
        problems.append(f"{where}: {error['msg']}")
    return "invalid event: " + "; ".join(problems)
