"""The code_exec scorer: code extraction from chat/base-model outputs, HumanEval's canonical
solutions (all must pass), hostile completions (all contained and scored as failures)."""

from __future__ import annotations

import gzip
import json
import socket
from pathlib import Path

import pytest

from proctor.core import Record, Sample
from proctor.errors import ConfigError, DataError
from proctor.sandbox import isolation
from proctor.scoring import get_scorer
from proctor.scoring.code_exec import CodeExecScorer
from proctor.scoring.code_extract import build_program, extract_code, fenced_blocks, longest_parsing_prefix

HUMANEVAL = Path("/work/shared/datasets/humaneval/data/HumanEval.jsonl.gz")

PROMPT = 'from typing import List\n\n\ndef add_all(xs: List[int]) -> int:\n    """Sum of xs.\n    >>> add_all([1, 2])\n    3\n    """\n'
TESTS = "\n\ndef check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0, 'empty list'\n"
BODY = "    return sum(xs)\n"
FULL = "def add_all(xs: List[int]) -> int:\n    return sum(xs)\n"
FULL_IMPORTS = "from typing import List\n\n\ndef add_all(xs: List[int]) -> int:\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"


def sample(**fields: str) -> Sample:
    return Sample(id="t/0", question=PROMPT, target=TESTS, fields={"entry_point": "add_all", **fields})


def record(output: str | None) -> Record:
    return Record(item_id="t/0", prompt=PROMPT, output=output, loglikelihoods=None)


# ---------------------------------------------------------------- extraction
# (output, expected: a substring the extracted code must contain, or None for no code), and
# whether the program built from it must pass the tests.
CASES: list[tuple[str, str, str | None, bool]] = [
    ("base body", BODY, "return sum(xs)", True),
    ("base body then eot", BODY + "<|endoftext|>\ndef junk(:\n", "return sum(xs)", True),
    ("base body then new def", BODY + "\n\ndef other():\n    return 1\n", "return sum(xs)", True),
    ("base body then prose", BODY + "\n\nThis function sums the list.\n", "return sum(xs)", True),
    ("base body then test code", BODY + "\n\nif __name__ == '__main__':\n    print(add_all([1]))\n", "return sum(xs)", True),
    ("base body with </s>", BODY + "</s>", "return sum(xs)", True),
    ("base body multi-line", "    total = 0\n    for x in xs:\n        total += x\n    return total\n", "total += x", True),
    ("fenced python", f"```python\n{FULL}```", "def add_all", True),
    ("fenced py tag", f"```py\n{FULL}```", "def add_all", True),
    ("fenced no tag", f"```\n{FULL}```", "def add_all", True),
    ("fenced Python3 tag", f"```Python3\n{FULL}```", "def add_all", True),
    ("fenced unclosed", f"Sure!\n```python\n{FULL}", "def add_all", True),
    ("fenced unclosed + eot", f"```python\n{FULL}<|im_end|>", "def add_all", True),
    ("prose before and after", f"Here is the solution:\n\n```python\n{FULL}```\n\nIt uses `sum`.", "def add_all", True),
    ("full with imports", f"```python\n{FULL_IMPORTS}```", "total += x", True),
    ("several blocks, usage last", f"```python\n{FULL}```\nUsage:\n```python\nprint(add_all([1, 2]))\n```", "def add_all", True),
    ("several blocks, shell first", f"Install:\n```bash\npip install nothing\n```\n```python\n{FULL}```", "def add_all", True),
    ("several blocks, longest wins", f"```python\nx = 1\n```\n```python\n{FULL_IMPORTS}```", "total += x", True),
    ("fenced body only", f"```python\n{BODY}```", "return sum(xs)", True),
    ("fenced indented full", "```python\n    def add_all(xs):\n        return sum(xs)\n```", "def add_all", True),
    ("fence with trailing junk in block", f"```python\n{FULL}\nThis is explained below\n```", "def add_all", True),
    ("tilde fence", f"~~~python\n{FULL}~~~", "def add_all", True),
    ("no fence, prose then def", f"Sure, here it is.\n\n{FULL}\nThis works because sum adds.", "def add_all", True),
    ("no fence, import first", f"I think this works:\nfrom typing import List\n{FULL}", "from typing import List", True),
    ("no fence, 'from' in prose", f"from the problem we know:\n\n{FULL}", "def add_all", True),
    ("chat full + im_end + junk", f"{FULL}<|im_end|><|im_start|>user\nthanks", "def add_all", True),
    ("eot_id", f"```python\n{FULL}```<|eot_id|>", "def add_all", True),
    ("helper function", "```python\ndef _helper(x):\n    return x\n\ndef add_all(xs):\n    return sum(_helper(x) for x in xs)\n```", "_helper", True),
    ("crlf line endings", f"```python\r\n{FULL.replace(chr(10), chr(13) + chr(10))}```", "def add_all", True),
    ("wrong answer still extracted", "```python\ndef add_all(xs):\n    return 0\n```", "return 0", False),
    ("garbage", "I am not sure how to solve this problem.", None, False),
    ("empty", "", None, False),
    ("only eot", "<|endoftext|>", None, False),
    ("prose with 'import' word", "import is a keyword, but I cannot answer.", None, False),
    ("unparseable fence only", "```python\n!!!! ???\n```", None, False),
]


@pytest.mark.parametrize(("name", "output", "expect", "passes"), CASES, ids=[c[0] for c in CASES])
def test_extract_code(name: str, output: str, expect: str | None, passes: bool) -> None:
    found = extract_code(output, PROMPT, "add_all")
    if expect is None:
        assert found is None
        return
    assert found is not None and expect in found.code
    assert "<|" not in found.code and "</s>" not in found.code
    compile(build_program(PROMPT, found.code, TESTS, "add_all"), "prog", "exec")


def test_extraction_case_count() -> None:
    assert len(CASES) >= 30


def test_longest_parsing_prefix_and_fences() -> None:
    assert longest_parsing_prefix("x = 1\ny = 2\nthis sums the list.\nz = 3\n") == "x = 1\ny = 2\n"
    assert longest_parsing_prefix("not code at all") == ""
    assert fenced_blocks("a\n```py\nx\n```\nb\n```\ny") == ["x\n", "y"]


def test_full_function_replaces_the_stub_and_keeps_prompt_helpers() -> None:
    program = build_program(PROMPT, FULL, TESTS, "add_all", sentinel="S")
    assert program.startswith(PROMPT.rstrip("\n")) and program.rstrip().endswith("print('S', flush=True)")
    assert "check(add_all)" in program


@pytest.mark.parametrize(("name", "output", "expect", "passes"), [c for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]])
def test_extracted_code_scores(name: str, output: str, expect: str, passes: bool) -> None:
    score = CodeExecScorer(timeout_s=10.0).score(sample(), record(output))
    assert score.rule == ("passed" if passes else "failed"), score.explanation
    assert score.value == (1.0 if passes else 0.0)


# ---------------------------------------------------------------- the scorer
def test_registered_with_params() -> None:
    scorer = get_scorer("code_exec", {"timeout_s": 5, "entry_point_field": "fn"})
    assert isinstance(scorer, CodeExecScorer) and scorer.processes
    assert scorer.version != get_scorer("code_exec").version
    with pytest.raises(ConfigError):
        get_scorer("code_exec", {"timeout": 5})


def test_field_names_are_params() -> None:
    s = Sample(id="x", question="", target="", fields={"p": PROMPT, "t": TESTS, "fn": "add_all"})
    scorer = CodeExecScorer(prompt_field="p", test_field="t", entry_point_field="fn")
    assert scorer.score(s, record(BODY)).rule == "passed"
    with pytest.raises(DataError):
        CodeExecScorer(entry_point_field="missing").score(sample(), record(BODY))


def test_statuses() -> None:
    scorer = CodeExecScorer(timeout_s=2.0)
    failed = scorer.score(sample(), record("    return 0\n"))
    assert (failed.value, failed.rule) == (0.0, "failed") and "AssertionError" in failed.explanation
    msg = scorer.score(sample(), record("    return sum(xs) if xs else 1\n"))
    assert "empty list" in msg.explanation
    none = scorer.score(sample(), record("no idea"))
    assert (none.value, none.answer, none.rule) == (0.0, None, "extraction_failed")
    none = scorer.score(sample(), record(None))
    assert none.rule == "extraction_failed"
    syntax = scorer.score(sample(), record("def add_all(xs):\n    return sum(xs)\n  return 1\n"))
    assert syntax.rule in ("syntax_error", "passed")  # the prefix that parses is kept
    bad_indent = scorer.score(sample(), record("  return sum(xs)\n    x = 1\n"))
    assert bad_indent.rule in ("syntax_error", "failed", "passed", "extraction_failed")
    timeout = scorer.score(sample(), record("    while True:\n        pass\n"))
    assert (timeout.value, timeout.rule) == (0.0, "timeout")


# Hostile completions: each must be scored 0 (not passed), the run must go on, and the
# machine must be unharmed. Most return the right answer after misbehaving, so a pass would
# mean the misbehaviour was not contained or not noticed.
HOSTILE = {
    "fork bomb": "    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
    "shell fork bomb": "    import os\n    os.system(':(){ :|:& };:')\n    while True:\n        pass\n",
    "sys.exit(0) before the tests": "    return sum(xs)\nimport sys\nsys.exit(0)\n",
    "os._exit(0) in the function": "    import os\n    os._exit(0)\n",
    "SystemExit(0) in the function": "    raise SystemExit(0)\n",
    "infinite loop": "    while True:\n        pass\n",
    "10 GB allocation": "    x = bytearray(10 * 1024**3)\n    return sum(xs)\n",
    "printing gigabytes": "    import sys\n    while True:\n        sys.stdout.write('x' * 1000000)\n",
    "closing stdout": "    import os\n    os.close(1)\n    return sum(xs)\n",
    "killing itself": "    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "deep recursion": "    def f(n):\n        return f(n + 1)\n    return f(0)\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_completion_is_scored_failed(name: str) -> None:
    score = CodeExecScorer(timeout_s=3.0).score(sample(), record(HOSTILE[name]))
    assert score.value == 0.0 and score.rule in ("failed", "timeout"), (score.rule, score.explanation)
    # The machine still runs programs.
    assert CodeExecScorer().score(sample(), record(BODY)).rule == "passed"


def test_rm_rf_home_and_writes_outside_are_contained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    iso = isolation()
    if not iso.filesystem_readonly:
        pytest.skip(f"no read-only filesystem in the sandbox here ({iso.mode}: {iso.reason})")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    canary = tmp_path / "canary.txt"
    canary.write_text("alive")
    outside = tmp_path / "written.txt"
    body = (
        "    import os\n"
        "    assert os.path.expanduser('~') == os.getcwd()\n"  # `~` is the sandbox's own directory
        "    os.system('rm -rf ~')\n"
        f"    os.system('rm -rf {canary}')\n"
        f"    open({str(outside)!r}, 'w').write('x')\n"
        "    return sum(xs)\n"
    )
    score = CodeExecScorer(timeout_s=5.0).score(sample(), record(body))
    assert score.rule == "failed"
    assert canary.read_text() == "alive" and not outside.exists()


def test_socket_to_localhost_gets_nothing() -> None:
    iso = isolation()
    if not iso.network:
        pytest.skip(f"no network namespace here ({iso.mode}: {iso.reason}): the program would reach 127.0.0.1")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        body = f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n    return sum(xs)\n"
        score = CodeExecScorer(timeout_s=5.0).score(sample(), record(body))
        assert score.rule == "failed" and "OSError" in score.explanation or "Error" in score.explanation
        with pytest.raises(socket.timeout):
            server.accept()


# ---------------------------------------------------------------- HumanEval
@pytest.mark.skipif(not HUMANEVAL.exists(), reason=f"no HumanEval data at {HUMANEVAL}")
def test_humaneval_canonical_solutions_all_pass() -> None:
    rows = [json.loads(line) for line in gzip.open(HUMANEVAL, "rt", encoding="utf-8")]
    assert len(rows) == 164
    pairs = [
        (
            Sample(
                id=r["task_id"], question=r["prompt"], target=r["test"],
                fields={"entry_point": r["entry_point"], "canonical_solution": r["canonical_solution"], "task_id": r["task_id"]},
            ),
            Record(item_id=r["task_id"], prompt=r["prompt"], output=r["canonical_solution"], loglikelihoods=None),
        )
        for r in rows
    ]
    scores = CodeExecScorer(timeout_s=30.0).score_many(pairs)
    failed = [(s.id, sc.rule, sc.explanation) for (s, _), sc in zip(pairs, scores) if sc.rule != "passed"]
    assert not failed
    # A chat model's full function (signature repeated) passes as well, for a sample of them.
    full = [(s, Record(item_id=s.id, prompt="", output=f"```python\n{s.question}{s.fields['canonical_solution']}```", loglikelihoods=None)) for s, _ in pairs[::8]]
    assert all(sc.rule == "passed" for sc in CodeExecScorer(timeout_s=30.0).score_many(full))


@pytest.mark.parametrize("name", ["code_exec", "mbpp"])
@pytest.mark.parametrize("params", [{"extract_s": 0}, {"extract_s": -1.0}, {"timeout_s": 0}, {"memory_mb": 8}])
def test_limits_that_would_fail_every_item_are_refused(name: str, params: dict[str, float]) -> None:
    # mbpp took extract_s=0: every item "extraction_failed" (scored 0, no error) instead of a refusal.
    with pytest.raises(ValueError, match=f"{name}: "):
        get_scorer(name, params)
