"""A DSPy module as a stage, in one call.

::

    import dspy
    from ragbus import Pipeline, dspy_stage

    pipeline = Pipeline("summarizer")
    pipeline.event("text_received", TextReceived)      # payload: text
    pipeline.event("summary_ready", SummaryReady)      # payload: text, summary, keywords
    dspy_stage(
        pipeline,
        dspy.ChainOfThought("text -> summary, keywords: list[str]"),
        name="summarize",
        consumes="text_received",
        produces="summary_ready",
    )

For each event, the payload's fields become the module's inputs (same names, or as
``inputs`` maps them), the module runs through ``acall`` in the stage's LM scope (the LM
is set for this call only; DSPy keeps no history), and the prediction's fields become the
produced payload (same names, or as ``outputs`` maps them; fields the prediction lacks
are copied from the input payload when it has them), validated by the produced event's
model: typed outputs such as ``list[str]`` or a pydantic model are checked, and a
prediction that does not fit is a permanent failure of that event, with the reason.

With ``stream``, one output field streams while the LM writes it, as transient token
events of type ``tokens`` (registered with ``transient=True`` and
:class:`~ragbus.streaming.StreamToken` payloads) for clients that follow them.

The stage's fingerprint, part of its cache keys, covers the module's signatures,
instructions and demos (its predictors' state), the LM and its settings, and the field
mappings: a compiled program or another model never reuses a cached result.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dspy
from pydantic import BaseModel, ValidationError

from ragbus.dspy_program import call_streaming, can_stream, load_program, module_fingerprint
from ragbus.errors import ConfigurationError, PermanentError
from ragbus.events import Envelope, describe_validation_error
from ragbus.lm import lm_scope, reported_usage
from ragbus.pipeline import Pipeline, StageContext, StageSpec
from ragbus.streaming import Emit, TokenEmitter

#: Builds the module for one process (a fresh instance: modules keep state).
ModuleFactory = Callable[[], dspy.Module]


def input_names(module: dspy.Module) -> list[str]:
    """The names of the inputs ``module`` takes: its signature's input fields
    (``Predict``), else the named parameters of its ``aforward``/``forward`` (a module of
    your own), else its first predictor's input fields (``ChainOfThought`` and other
    modules that take ``**kwargs``)."""
    signature = getattr(module, "signature", None)
    if signature is not None and hasattr(signature, "input_fields"):
        return list(signature.input_fields)
    method = getattr(module, "aforward", None) or module.forward
    named = [
        parameter.name
        for parameter in inspect.signature(method).parameters.values()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    if named:
        return named
    for _, predictor in module.named_predictors():
        return list(predictor.signature.input_fields)
    return []


class DSPyStageHandler:
    """Runs a DSPy module on each event's payload; see :mod:`ragbus.dspy_stages`.

    Parameters:
        stage: the stage's name (for messages).
        module: the DSPy module.
        lm: the LM to call it with.
        input_model: the consumed event's payload model.
        output_model: the produced event's payload model.
        produces: the produced event type.
        inputs: module input name -> payload field name.
        outputs: produced payload field -> prediction field.
        stream: the prediction field to stream, if any (default none).
        token_type: the transient event type of the streamed pieces (with ``stream``).
        emit: publishes the pieces (default none: nothing streams).
        version: the produced event type's schema version (default 1).
    """

    def __init__(
        self,
        stage: str,
        module: dspy.Module,
        lm: dspy.BaseLM,
        *,
        input_model: type[BaseModel],
        output_model: type[BaseModel],
        produces: str,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        stream: str | None = None,
        token_type: str | None = None,
        emit: Emit | None = None,
        version: int = 1,
    ) -> None:
        self.stage = stage
        self.module = module
        self.lm = lm
        self.input_model = input_model
        self.output_model = output_model
        self.produces = produces
        self.inputs = dict(inputs)
        self.outputs = dict(outputs)
        self.version = version
        self.stream = stream if stream and emit is not None and can_stream(module, stream) else None
        self.token_type = token_type
        self.emit = emit
        self.fingerprint = module_fingerprint(
            module, lm, inputs=self.inputs, outputs=self.outputs, produces=produces
        )

    async def __call__(self, event: Envelope) -> list[Envelope]:
        """Run the module on ``event``'s payload; returns the produced event."""
        payload = event.payload_as(self.input_model)
        arguments = {name: getattr(payload, field) for name, field in self.inputs.items()}
        started = time.perf_counter()
        with lm_scope(self.lm), reported_usage():
            if self.stream is None or self.emit is None or self.token_type is None:
                prediction = await self.module.acall(**arguments)
            else:
                tokens = TokenEmitter(event, self.emit, self.token_type)
                prediction = await call_streaming(self.module, arguments, self.stream, tokens)
        values = self._values(payload, prediction)
        if "timings_ms" in self.output_model.model_fields and "timings_ms" not in values:
            values["timings_ms"] = {self.stage: round((time.perf_counter() - started) * 1000, 3)}
        try:
            produced = self.output_model.model_validate(values)
        except ValidationError as exc:
            problems = describe_validation_error(exc).removeprefix("invalid event: ")
            raise PermanentError(
                f"stage {self.stage}: the program's outputs do not fit "
                f"{self.output_model.__name__}: {problems}"
            ) from None
        return [event.derive(self.produces, produced, version=self.version)]

    def _values(self, payload: BaseModel, prediction: dspy.Prediction) -> dict[str, Any]:
        predicted = dict(prediction.items())
        values: dict[str, Any] = {}
        for field in self.output_model.model_fields:
            source = self.outputs.get(field, field)
            if source in predicted:
                values[field] = predicted[source]
            elif field in type(payload).model_fields:
                values[field] = getattr(payload, field)
        return values


def dspy_stage(
    pipeline: Pipeline,
    module: dspy.Module | ModuleFactory,
    *,
    name: str,
    consumes: str,
    produces: str,
    inputs: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | None = None,
    stream: str | None = None,
    tokens: str | None = None,
    program: Path | str | None = None,
    lm: Callable[[StageContext], dspy.BaseLM] | None = None,
    dependency: str = "lm",
    timeout_s: float | None = None,
    concurrency: int | None = None,
    max_attempts: int | None = None,
    cacheable: bool = True,
) -> StageSpec:
    """Add a stage to ``pipeline`` that runs a DSPy module; returns its declaration.

    Parameters:
        pipeline: the pipeline (its event types registered first).
        module: the DSPy module, or a function returning a new one (each process that
            serves the stage gets its own copy either way).
        name: the stage's name.
        consumes: the event type whose payload feeds the module.
        produces: the event type the prediction becomes.
        inputs: module input name -> payload field (default: the same names).
        outputs: produced payload field -> prediction field (default: the same names;
            fields the prediction lacks come from the input payload when it has them).
        stream: a prediction field to stream while the LM writes it (default none).
        tokens: the transient event type of the streamed pieces; required with
            ``stream`` (register it with ``transient=True`` and ``StreamToken``).
        program: a saved or compiled program (``module.save``) to load into the module
            (default: none, the module as written).
        lm: builds the stage's LM from its context (default: the LM the settings name,
            ``RAGBUS_LM_MODEL``).
        dependency: the dependency whose breaker and flow control the stage shares
            (default ``lm``).
        timeout_s, concurrency, max_attempts: the stage's limits (default: the
            settings').
        cacheable: cache results and coalesce identical inputs (default True: a DSPy
            stage is a function of its input, its program and its LM).
    """
    input_model = pipeline.spec_of(consumes).model
    output_model = pipeline.spec_of(produces).model
    version = pipeline.spec_of(produces).version
    if stream is not None and tokens is None:
        raise ValueError(f"stage {name!r}: stream={stream!r} needs tokens=<transient event type>")
    program_path = Path(program) if program is not None else None

    def make_module() -> dspy.Module:
        # a given instance is copied: each process (and each host in one) gets its own
        fresh: dspy.Module = module.deepcopy() if isinstance(module, dspy.Module) else module()
        if program_path is not None:
            load_program(fresh, program_path)
        return fresh

    def mapping_for(built: dspy.Module) -> dict[str, str]:
        wanted = {name_: (inputs or {}).get(name_, name_) for name_ in input_names(built)}
        missing = [f for f in wanted.values() if f not in input_model.model_fields]
        if missing:
            raise ConfigurationError(
                f"stage {name!r}: the module's inputs {missing} are not fields of "
                f"{input_model.__name__}; map them with inputs={{module_input: payload_field}}"
            )
        return wanted

    if isinstance(module, dspy.Module):
        mapping_for(module)  # a mismatch is found when the pipeline is declared

    def build(context: StageContext) -> DSPyStageHandler:
        built = make_module()
        return DSPyStageHandler(
            name,
            built,
            lm(context) if lm is not None else context.lm(),
            input_model=input_model,
            output_model=output_model,
            produces=produces,
            inputs=mapping_for(built),
            outputs=outputs or {},
            stream=stream,
            token_type=tokens,
            emit=context.emit,
            version=version,
        )

    return pipeline.add_stage(
        StageSpec(
            name=name,
            consumes=(consumes,),
            produces=(produces,),
            build=build,
            dependency=dependency,
            timeout_s=timeout_s,
            concurrency=concurrency,
            max_attempts=max_attempts,
            cacheable=cacheable,
            streams=tokens if stream is not None else None,
            description=f"runs the DSPy module {type(module).__qualname__}"
            if isinstance(module, dspy.Module)
            else "runs a DSPy module",
        )
    )
