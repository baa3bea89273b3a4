"""``ragbus optimize`` end to end, as a user runs it: compile the RAG program on the
example trainset with the offline LM and with an LM over HTTP, then serve the written
program (``RAGBUS_PROGRAM``); ``ragbus trainset`` from an export."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from ragbus.dspy_program import module_fingerprint
from ragbus.handlers.generate import GenerateHandler
from ragbus.lm import offline_lm
from tests.docs.seeds import dead_letters
from tests.e2e.test_dense_retrieval import ragbus
from tests.lm_server import FakeLMServer

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

TRAINSET = Path(__file__).resolve().parents[2] / "docs" / "examples" / "qa.jsonl"
SCORES = re.compile(r"score before: (\d\.\d{3})[\s\S]*?score after:  (\d\.\d{3}) \(compiled: (\d+)")


def lm_env(lm: FakeLMServer) -> dict[str, str]:
    return {
        "RAGBUS_LM_MODEL": "openai/test-model",
        "RAGBUS_LM_API_BASE": lm.api_base,
        "RAGBUS_LM_API_KEY": "sk-test",
    }


@pytest.mark.parametrize("optimizer", ["bootstrap", "mipro"])
def test_optimize_with_the_offline_lm_writes_a_program_workers_load(
    tmp_path: Path, optimizer: str
) -> None:
    program = tmp_path / "program.json"

    result = ragbus(
        "optimize", "--trainset", str(TRAINSET), "--out", str(program),
        "--optimizer", optimizer, cwd=tmp_path, env={},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "11 examples to train on, 5 held out" in result.stdout
    scores = SCORES.search(result.stdout)
    assert scores is not None, result.stdout
    before, after = float(scores[1]), float(scores[2])
    # extractive answers share some words with the written answers: a real, partial score
    assert 0.05 < before < 0.9
    assert after == before  # the offline LM quotes the passages whatever the demos say
    assert "the offline LM quotes the passages" in result.stderr
    assert stat.S_IMODE(program.stat().st_mode) == 0o600
    state = json.loads(program.read_text())
    assert len(state["predict"]["demos"]) == int(scores[3])
    if optimizer == "bootstrap":  # MIPROv2 may find that no demos score best
        assert int(scores[3]) > 0
    # a worker loads it: another program has another fingerprint, so no cached answer of
    # the plain program is served for it (an unchanged one keeps the plain one's)
    lm = offline_lm()
    plain, loaded = GenerateHandler(lm), GenerateHandler(lm, program=program)
    instructions = plain.module.predict.signature.instructions
    changed = bool(state["predict"]["demos"]) or (
        state["predict"]["signature"]["instructions"] != instructions
    )
    assert (loaded.fingerprint != plain.fingerprint) == changed

    asked = ragbus(
        "ask", "--json", "How long do cached results live?", cwd=tmp_path,
        env={"RAGBUS_PROGRAM": str(program)},
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert "3600" in json.loads(asked.stdout)["payload"]["answer"]


def test_optimize_with_an_lm_over_http_and_serve_the_program(
    tmp_path: Path, lm: FakeLMServer
) -> None:
    program = tmp_path / "program.json"
    env = lm_env(lm)

    result = ragbus(
        "optimize", "-t", str(TRAINSET), "-o", str(program), "--metric", "judge",
        cwd=tmp_path, env=env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    scores = SCORES.search(result.stdout)
    assert scores is not None, result.stdout
    demos = int(scores[3])
    assert demos > 0
    assert lm.calls > 5  # the program was answered and judged over HTTP
    asked = ragbus(
        "ask", "--json", "Which bus is the default?", cwd=tmp_path,
        env={**env, "RAGBUS_PROGRAM": str(program)},
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)["payload"]["answer"]
    # the stand-in says how many worked examples the prompt carried: the program's
    assert answer.endswith(f"(after {demos} examples)"), answer


def test_optimize_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\nnot json\n')

    for arguments, code, message in [
        (["-t", str(bad)], 3, "line 2: not JSON"),
        (["-t", str(tmp_path / "missing.jsonl")], 3, "trainset file does not exist"),
        (["-t", str(TRAINSET), "--metric", "bleu"], 2, "unknown metric 'bleu'"),
        (["-t", str(TRAINSET), "--optimizer", "grid"], 2, "unknown optimizer 'grid'"),
    ]:
        result = ragbus(
            "optimize", *arguments, "-o", str(tmp_path / "p.json"), cwd=tmp_path, env={}
        )
        assert result.returncode == code, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "p.json").exists()


def test_exports_become_a_trainset_that_optimize_takes(tmp_path: Path) -> None:
    export = tmp_path / "failed.jsonl"
    export.write_text("".join(json.dumps(letter) + "\n" for letter in dead_letters()))
    answer = {
        "type": "answer_generated",
        "payload": {"question": "Which bus is the default?", "answer": "The in-memory bus."},
    }
    (tmp_path / "answer.json").write_text(json.dumps(answer, indent=2))
    trainset = tmp_path / "qa.jsonl"

    made = ragbus(
        "trainset", str(export), str(tmp_path / "answer.json"), "--out", str(trainset),
        cwd=tmp_path, env={},
    )  # fmt: skip

    assert made.returncode == 0, made.stderr
    assert "2 questions: 1 with an answer to check, 1 to answer" in made.stderr
    lines = [json.loads(line) for line in trainset.read_text().splitlines()]
    assert [line["answer"] for line in lines] == [None, "The in-memory bus."]
    assert stat.S_IMODE(trainset.stat().st_mode) == 0o600
    lines[0]["answer"] = "It classifies the failure once."  # the team writes the answer
    trainset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = ragbus(
        "optimize", "-t", str(trainset), "-o", str(tmp_path / "p.json"), cwd=tmp_path, env={}
    )
    assert result.returncode == 0, result.stderr
    assert "1 examples to train on, 1 held out" in result.stdout


def test_module_fingerprint_changes_with_a_loaded_program(tmp_path: Path) -> None:
    handler = GenerateHandler(offline_lm())
    handler.module.predict.demos = [{"question": "q", "answer": "a", "context": ["c"]}]
    handler.module.save(str(tmp_path / "p.json"))

    loaded = GenerateHandler(offline_lm(), program=tmp_path / "p.json")

    assert module_fingerprint(loaded.module, loaded.lm) != GenerateHandler(offline_lm()).fingerprint
