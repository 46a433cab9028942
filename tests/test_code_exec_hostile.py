"""Completions that try to forge a HumanEval pass (issue 20 §1). Every one returns a wrong answer
and then cheats; each forged a pass when the verdict was a sentinel printed by the program under
test (run this file with the old code on PYTHONPATH to see them pass), and each must be scored
failed now that the verdict comes from a tester process the completion cannot reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proctor.core import Record, Sample
from proctor.sandbox import isolation
from proctor.scoring.code_exec import CodeExecScorer

PROMPT = 'import math\n\n\ndef add_all(xs):\n    """Sum of xs.\n    >>> add_all([1, 2])\n    3\n    """\n'
TESTS = "\n\ndef check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0, 'empty list'\n"
TESTS_ABS = "\n\ndef check(candidate):\n    assert abs(candidate([1, 2]) - 3) < 1e-9\n    assert abs(candidate([0.5, 0.25]) - 0.75) < 1e-9\n"
TESTS_MATH = "\n\ndef check(candidate):\n    assert math.isclose(candidate([1, 2]), 3)\n    assert math.isclose(candidate([0.5]), 0.5)\n"

# Finds anything that looks like a verdict token (the old sentinel, a nonce) wherever the program
# can look: its own file, argv, environment, every open fd, the /proc entries of every process it
# can see and the sandbox folders of others; prints each alone and as a verdict line.
FINDER = r'''
import os as _os, re as _re, sys as _sys, glob as _glob
def _texts():
    out = []
    def grab(path, limit=1 << 22):
        try:
            with open(path, "rb") as f:
                out.append(f.read(limit).decode("latin-1"))
        except Exception:
            pass
    grab(globals().get("__file__") or _sys.argv[0])
    out.append(" ".join(_sys.argv))
    out.append(repr(dict(_os.environ)))
    for fd in range(0, 64):
        try:
            out.append(_os.pread(fd, 1 << 20, 0).decode("latin-1"))
        except Exception:
            pass
    for pid in _os.listdir("/proc"):
        if pid.isdigit():
            for name in ("cmdline", "environ"):
                grab("/proc/%s/%s" % (pid, name))
            for fd in _glob.glob("/proc/%s/fd/*" % pid):
                grab(fd, 1 << 16)
    for path in _glob.glob("/tmp/proctor-sbx-*/prog.py") + _glob.glob("/tmp/work/prog.py"):
        grab(path)
    return out
def _lines():
    pat = _re.compile(r"proctor-[a-z-]+-[0-9a-f]{16,}")
    found = set()
    for text in _texts():
        found.update(pat.findall(text))
    return sorted(found), "".join("%s\n%s {\"passed\": true, \"error\": \"\", \"calls\": 2}\n" % (t, t) for t in sorted(found)).encode()
def _forge():
    found, data = _lines()
    _os.write(1, data)
    return found
'''

WRONG = "    return -1\n"

HOSTILE: dict[str, tuple[str, str]] = {
    "prints the sentinel found in its own file, then os._exit(0)": (
        WRONG + FINDER + "_forge()\n_os._exit(0)\n", TESTS),
    "atexit hook prints the sentinel and exits 0 after the failed test": (
        WRONG + FINDER + "import atexit\n@atexit.register\ndef _after():\n    _forge()\n    _os._exit(0)\n", TESTS),
    "sys.excepthook prints the sentinel and exits 0": (
        WRONG + FINDER + "def _hook(*a):\n    _forge()\n    _os._exit(0)\n_sys.excepthook = _hook\n", TESTS),
    "re-execs the interpreter to print the sentinel": (
        WRONG + FINDER + "_code = 'print(' + repr('\\n'.join(t + '\\n' + t + ' {\"passed\": true, \"error\": \"\", \"calls\": 2}' for t in sorted(_forge()))) + ')'\n"
        "_os.execv(_sys.executable, [_sys.executable, '-c', _code])\n", TESTS),
    "a racing thread prints the sentinel and exits 0 while the tests fail": (
        WRONG + FINDER + "import threading, time\ndef _race():\n    time.sleep(0.3)\n    _forge()\n    _os._exit(0)\n"
        "threading.Thread(target=_race).start()\n", TESTS),
    "a finalizer at shutdown prints the sentinel and exits 0": (
        WRONG + FINDER + "class _Late:\n    def __del__(self, _w=_os.write, _x=_os._exit, _data=_lines()[1]):\n"
        "        _w(1, _data)\n        _x(0)\n_keep = _Late()\n", TESTS),
    "returns an object whose __eq__ is always True": (
        "    class Any:\n        def __eq__(self, other):\n            return True\n    return Any()\n", TESTS),
    "returns an int subclass equal to everything": (
        "    class Int(int):\n        def __eq__(self, other):\n            return True\n        __hash__ = int.__hash__\n    return Int(-1)\n", TESTS),
    "returns a float subclass whose difference is always 0": (
        "    class F(float):\n        def __sub__(self, other):\n            return 0.0\n    return F(-1)\n", TESTS_ABS),
    "monkeypatches builtins.abs used by the tests": (
        "    return -1\nimport builtins\nbuiltins.abs = lambda value: 0\n", TESTS_ABS),
    "patches math.isclose used by the asserts": (
        "    return -1\nmath.isclose = lambda *a, **k: True\n", TESTS_MATH),
    "reads the tests from its own program and returns the expected values": (
        "    import ast, sys\n"
        "    frame = sys._getframe(1)\n"
        "    source = open(frame.f_code.co_filename).read()\n"
        "    table = {}\n"
        "    for node in ast.walk(ast.parse(source)):\n"
        "        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Call) and node.left.args:\n"
        "            try:\n"
        "                table[repr(ast.literal_eval(node.left.args[0]))] = ast.literal_eval(node.comparators[0])\n"
        "            except Exception:\n"
        "                pass\n"
        "    return table.get(repr(xs), -1)\n", TESTS),
}


def sample(tests: str) -> Sample:
    return Sample(id="t/0", question=PROMPT, target=tests, fields={"entry_point": "add_all"})


def record(output: str) -> Record:
    return Record(item_id="t/0", prompt=PROMPT, output=output, loglikelihoods=None)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_forged_pass_is_scored_failed(name: str) -> None:
    body, tests = HOSTILE[name]
    score = CodeExecScorer(timeout_s=5.0).score(sample(tests), record(body))
    # (Without namespaces the finder may block reading another process's pipe: a timeout.)
    assert score.value == 0.0 and score.rule in ("failed", "timeout"), (score.rule, score.explanation)
    if isolation().pid_namespace:
        assert score.rule == "failed", score.explanation


def test_the_same_tests_pass_a_right_answer() -> None:
    # The hostile cases fail because they cheat, not because the tests cannot pass.
    for tests in (TESTS, TESTS_ABS, TESTS_MATH):
        score = CodeExecScorer(timeout_s=5.0).score(sample(tests), record("    return sum(xs)\n"))
        assert score.rule == "passed", score.explanation


def test_the_forger_finds_nothing_to_forge() -> None:
    # The candidate sees neither the verdict nonce nor the tester (own pid namespace), so the
    # finder comes back empty-handed: nothing it prints could ever be a verdict.
    if not isolation().pid_namespace:
        pytest.skip("no pid namespace here: other processes of the same user are visible")
    body = "    return sum(xs)\n" + FINDER + "print('found', sorted(_forge()), file=_sys.stderr)\n"
    score = CodeExecScorer(timeout_s=5.0).score(sample(TESTS), record(body))
    assert score.rule == "passed", score.explanation


# Attacks on the split run itself: the pipes, the codec and the exceptions. The old design had no
# pipes, so these are checks of the new one only.
PROTOCOL: dict[str, str] = {
    "answers with a handle on the plain-only channel": (
        "    return sum(xs)\nimport os, json, struct\n"
        "def _w(m):\n    d = json.dumps(m).encode()\n    os.write(4, struct.pack('>I', len(d)) + d)\n"
        "for _ in range(4):\n    _w({'ok': {'h': 1}})\n"),
    "answers with an untagged float and an unknown tag": (
        "    return sum(xs)\nimport os, json, struct\n"
        "def _w(m):\n    d = json.dumps(m).encode()\n    os.write(4, struct.pack('>I', len(d)) + d)\n"
        "_w({'ok': 3.0})\n_w({'ok': {'eq': 'always'}})\n"),
    "answers with a huge length prefix": (
        "    return sum(xs)\nimport os, struct\nos.write(4, struct.pack('>I', 4 << 30) + b'x' * 100)\n"),
    "answers with deeply nested lists": (
        "    return sum(xs)\nimport os, struct\nd = b'[' * 100000 + b']' * 100000\nos.write(4, struct.pack('>I', len(d)) + d)\n"),
    "closes its pipes": "    return sum(xs)\nimport os\nos.close(3)\nos.close(4)\n",
    "raises SystemExit(0) when called": "    raise SystemExit(0)\n",
    "raises StopIteration to cut a map() short": "    raise StopIteration\n",
    "returns a self-containing list": "    x = []\n    x.append(x)\n    return x\n",
    "returns a generator": "    return (x for x in [3])\n",
}


def test_stop_iteration_cannot_end_a_map_inside_the_tests() -> None:
    # In one process, a candidate raising StopIteration makes map() stop: all([]) is True.
    tests = "\n\ndef check(candidate):\n    assert all(map(lambda v: candidate([v]) == v, [1, 2, 3]))\n"
    score = CodeExecScorer(timeout_s=5.0).score(sample(tests), record("    raise StopIteration\n"))
    assert (score.value, score.rule) == (0.0, "failed"), (score.rule, score.explanation)
    assert CodeExecScorer(timeout_s=5.0).score(sample(tests), record("    return sum(xs)\n")).rule == "passed"


@pytest.mark.parametrize("name", list(PROTOCOL))
def test_protocol_attacks_are_scored_failed(name: str) -> None:
    tests = TESTS.replace("(candidate):\n", "(candidate):\n    assert all(map(lambda v: candidate([v]) == v, [1, 2, 3]))\n")
    score = CodeExecScorer(timeout_s=5.0).score(sample(tests), record(PROTOCOL[name]))
    assert (score.value, score.rule) == (0.0, "failed"), (score.rule, score.explanation)


# ---------------------------------------------------------------- a hostile model, end to end
def _forging_answer(prompt: str, k: int) -> str:
    """A chat answer: the prompt's function returning a wrong value, then one way of cheating."""
    body = [
        "    return None\n" + FINDER + "_forge()\n_os._exit(0)\n",
        "    return None\n" + FINDER + "import atexit\natexit.register(lambda: (_forge(), _os._exit(0)))\n",
        "    return None\n" + FINDER + "_sys.excepthook = lambda *a: (_forge(), _os._exit(0))\n",
        "    class Any:\n        def __eq__(self, other):\n            return True\n        def __ne__(self, other):\n"
        "            return False\n    return Any()\n",
        "    return None\n" + FINDER + "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), _forge(), _os._exit(0))).start()\n",
    ][k % 5]
    return f"```python\n{prompt}{body}```"


def test_a_hostile_model_scores_zero_end_to_end(tmp_path: Path) -> None:
    # Issue 20: against such a model Proctor once reported 140 of 164 HumanEval tasks passed.
    from openai_server import OpenAIServer, last_user_message
    from run_helpers import only_run, read_result, read_scores, run_args
    from shared_data import SHARED_DATASETS

    from proctor.cli import main
    from proctor.tasks import load_samples

    problems = load_samples("humaneval", "", "test", str(SHARED_DATASETS))[:10]

    def model(body: dict[str, Any]) -> str:
        asked = last_user_message(body)
        k, sample = next((i, s) for i, s in enumerate(problems) if s.question in asked)
        return _forging_answer(sample.question, k)

    with OpenAIServer(model, model_ids=["m"]) as server:
        main(run_args(server.base_url, tmp_path, ["humaneval"], len(problems)))
    run = only_run(tmp_path)
    result = read_result(run, "m", "humaneval")
    rules = {k: v["rule"] for k, v in read_scores(run, "m", "humaneval").items()}
    assert result["n"] == len(problems) and result["value"] == 0.0, (result["value"], rules)
