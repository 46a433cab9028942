"""Python code out of a model's answer, and the program that tests it (HumanEval style).

`extract_code(output)` finds the code:
1. cut at the first end-of-text token (`<|endoftext|>`, `<|im_end|>`, `</s>`, ...);
2. fenced blocks (```, closed or not, any language tag): the block that defines the entry
   point, else the longest that parses, else the one with the longest parseable prefix;
3. otherwise an indented continuation of the prompt (a base model writing the body);
4. otherwise the text from its first line, when that starts code that defines or imports
   something, else from the first line starting with `def`/`import`/`from`/`class`/`@`;
and keeps the longest prefix (whole lines) that `ast.parse` accepts. None: no code.
An indented fenced block is a function body (appended to the prompt), unless it defines the
entry point itself (an indented whole function): a body may well start with `import` or a
nested `def`.

Time: linear in the output's length. Each failed parse jumps back to the line the parser
stopped at instead of trying every shorter prefix, lines that cannot end a statement are skipped,
and the whole search parses at most `_PARSE_BUDGET` times the output's length (and stops at an
optional deadline): past either, ExtractionTimeout.

`build_candidate(prompt, code, entry_point)` is the candidate's program (prompt + code, the
stub replaced as below), `tester_prelude(prompt, entry_point)` the prompt's part the tester runs
first (its helpers); the split run (proctor.sandbox.split) joins them. `build_program(prompt,
code, tests, entry_point)`, the single program of the reference harness, is always prompt + code + tests +
`check(entry_point)`: a completion that repeats the signature (a full function, perhaps with
its imports) comes after the whole prompt and so replaces the prompt's stub, keeping the
prompt's imports and helpers; a body is appended to the prompt as it is.
"""

from __future__ import annotations

import ast
import re
import textwrap
import time
from dataclasses import dataclass, field

END_TOKENS = (
    "<|endoftext|>", "<|im_end|>", "</s>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<|EOT|>",
    "<end_of_turn>", "<|file_separator|>", "<｜end▁of▁sentence｜>", "<|return|>", "<|im_start|>",
)
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n", re.MULTILINE)
_CODE_START = re.compile(r"^(?:async[ \t]+def|def|import|from|class)[ \t]|^@\w", re.MULTILINE)
_TOPLEVEL_START = ("def ", "async def ", "class ", "import ", "from ", "@")


@dataclass(frozen=True)
class Extracted:
    code: str
    kind: str  # "fenced", "continuation", "text"


def strip_end_tokens(text: str) -> str:
    cut = len(text)
    for token in END_TOKENS:
        i = text.find(token)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


class ExtractionTimeout(Exception):
    """Finding the code took longer than allowed (a pathological output)."""


_PARSE_BUDGET = 24  # characters parsed, per character of output, before giving up
_NO_END = (":", "\\", ",", "(", "[", "{")  # a line ending so cannot end a statement


@dataclass
class Budget:
    """What one extraction may still spend: characters to parse, and a deadline."""

    chars: int
    deadline: float | None = None
    parses: int = field(default=0)

    def spend(self, n: int) -> None:
        self.chars -= n
        self.parses += 1
        if self.chars < 0:
            raise ExtractionTimeout(f"no Python code found within the parse budget ({_PARSE_BUDGET}x the output's length)")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ExtractionTimeout("finding the code took longer than its time limit")


def _parse(src: str, budget: Budget | None) -> ast.Module:
    if budget is not None:
        budget.spend(len(src))
    return ast.parse(src)


def _parses(src: str, budget: Budget | None = None) -> bool:
    try:
        _parse(src, budget)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def longest_parsing_prefix(src: str, budget: Budget | None = None) -> str:
    """The longest prefix of whole lines that parses and holds at least one statement ("" if none)."""
    lines = src.splitlines(keepends=True)
    n = len(lines)
    while n > 0:
        last = lines[n - 1].strip()
        if not last or last.startswith("#") or last.endswith(_NO_END):
            n -= 1  # a blank or comment line adds nothing; the others cannot end a statement
            continue
        candidate = "".join(lines[:n])
        try:
            tree = _parse(candidate, budget)
        except SyntaxError as e:
            # Nothing longer than the line the parser stopped at can parse: jump there.
            n = min(n - 1, e.lineno) if e.lineno else n - 1
            continue
        except (ValueError, MemoryError, RecursionError):
            n -= 1
            continue
        return candidate.rstrip() + "\n" if tree.body else ""
    return ""


def fenced_blocks(text: str) -> list[str]:
    """The contents of ``` (or ~~~) blocks, in order; an unclosed last block runs to the end."""
    blocks = []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if not m:
            break
        fence = m.group(1)
        close = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{%d,}[ \t]*$" % len(fence), re.MULTILINE)
        c = close.search(text, m.end())
        if c is None:
            blocks.append(text[m.end():])
            break
        blocks.append(text[m.end():c.start()])
        pos = c.end()
    # A one-line ```code``` with no newline after the opening fence is not a block: fine.
    return blocks


def _normalise(block: str, entry_point: str | None = None) -> str:
    """Dedent a uniformly indented block that is top-level code written indented (a whole
    function, perhaps with its imports); keep an indented function body as it is."""
    stripped = block.strip("\n")
    first = next((line for line in stripped.splitlines() if line.strip()), "")
    if first[:1] in (" ", "\t") and first.lstrip().startswith(_TOPLEVEL_START):
        dedented = textwrap.dedent(stripped) + "\n"
        if not _is_body(dedented, entry_point):
            return dedented
    return stripped + "\n"


def _is_body(dedented: str, entry_point: str | None) -> bool:
    """Whether an indented block (given dedented) is a function's body rather than indented
    top-level code: it does not define the entry point and returns (or, with no entry point
    known, has a `return`/`yield` of its own at its top level)."""
    if entry_point and defines(dedented, entry_point):
        return False
    try:
        tree = ast.parse(dedented)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return bool(entry_point)  # e.g. cut short: a body when it is not the function itself
    own = [n for n in tree.body if isinstance(n, (ast.Return, ast.Expr)) and
           (isinstance(n, ast.Return) or isinstance(n.value, (ast.Yield, ast.YieldFrom)))]
    if own:
        return True
    if not entry_point:
        return False
    # No return of its own: a body only when it is more than definitions and imports.
    return not all(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom))
                   for n in tree.body)


def defines(code: str, name: str | None, budget: Budget | None = None) -> bool:
    if not name:
        return False
    try:
        tree = _parse(code, budget)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name
        for node in tree.body
    )


def _is_continuation(code: str, prompt: str | None) -> bool:
    first = next((line for line in code.splitlines() if line.strip()), "")
    return bool(prompt) and first[:1] in (" ", "\t")


def _continuation(code: str, prompt: str, budget: Budget | None = None) -> str:
    """The longest prefix of `code` that parses after the prompt ("" if none)."""
    whole = longest_parsing_prefix(prompt + code, budget)
    if len(whole) <= len(prompt.rstrip() + "\n"):
        return ""
    lines = code.splitlines(keepends=True)
    # Map back to whole lines of the completion.
    taken = whole[len(prompt):] if whole.startswith(prompt) else ""
    n = len(taken.splitlines())
    body = "".join(lines[:n]).rstrip() + "\n"
    return body if body.strip() else ""


def _from_block(block: str, prompt: str | None, entry_point: str | None, budget: Budget | None) -> str:
    code = _normalise(block, entry_point)
    if _is_continuation(code, prompt) and prompt is not None:
        return _continuation(code, prompt, budget)
    return longest_parsing_prefix(code, budget)


def extract_code(output: str | None, prompt: str | None = None, entry_point: str | None = None, *,
                 deadline_s: float | None = None) -> Extracted | None:
    """The code in a model's output (see the module doc); None when there is none.
    ExtractionTimeout past `deadline_s` seconds or the parse budget."""
    if not output:
        return None
    text = strip_end_tokens(output).replace("\r\n", "\n")
    budget = Budget(chars=_PARSE_BUDGET * (len(text) + len(prompt or "")) + (1 << 16),
                    deadline=None if deadline_s is None else time.monotonic() + deadline_s)
    blocks = fenced_blocks(text)
    if blocks:
        candidates = []
        for block in blocks:
            code = _from_block(block, prompt, entry_point, budget)
            if code.strip():
                complete = _parses(_normalise(block, entry_point), budget)
                candidates.append((defines(code, entry_point, budget), complete, len(code), code))
        if candidates:
            return Extracted(max(candidates, key=lambda c: c[:3])[3], "fenced")
    if prompt is not None and _is_continuation(text, prompt):
        code = _continuation(text.lstrip("\n"), prompt, budget)
        if code.strip():
            return Extracted(code, "continuation")
    lead = text.lstrip("\n")
    if lead[:1] not in (" ", "\t", ""):  # code from the first line (`N = 256` before the defs)
        code = longest_parsing_prefix(lead, budget)
        if code.strip() and _looks_like_code(code, budget) and not _starts_with_expression(code):
            return Extracted(code, "text")
    for m in _CODE_START.finditer(text):
        line_end = text.find("\n", m.start())
        if not _plausible_start(text[m.start(): len(text) if line_end == -1 else line_end], budget):
            continue  # prose that starts like code ("from the list above..."): no need to parse the rest
        code = longest_parsing_prefix(text[m.start():], budget)
        if code.strip() and _looks_like_code(code, budget):
            return Extracted(code, "text")
    return None


def _starts_with_expression(code: str) -> bool:
    """A bare expression first ("Sure", "Python" on a line of its own): prose, not code."""
    try:
        first = ast.parse(code).body[0]
    except (SyntaxError, ValueError, MemoryError, RecursionError, IndexError):
        return True
    return isinstance(first, ast.Expr)


def _plausible_start(line: str, budget: Budget | None) -> bool:
    """Whether a line starting with def/class/import/from/@ can begin code (checked on the line
    alone, so that a long prose answer costs one short parse per such line, not one long one)."""
    s = line.rstrip()
    if s.endswith("\\") or any(s.count(o) != s.count(c) for o, c in ("()", "[]", "{}")) or '"""' in s or "'''" in s:
        return True  # continues on the next lines: the parser decides
    if s.startswith(("import ", "from ")):
        return _parses(s, budget)
    if s.startswith("@"):
        return _parses(s + "\ndef _f(): pass\n", budget)
    return _parses(s, budget) or _parses(s + "\n    pass\n", budget)


def _looks_like_code(code: str, budget: Budget | None = None) -> bool:
    """Reject prose that happens to parse ("from the list above" does not; "import this" would)."""
    try:
        tree = _parse(code, budget)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)) for n in tree.body)


def build_candidate(prompt: str, code: str, entry_point: str) -> str:
    """The candidate's program: the prompt and the code, a full function replacing the prompt's stub."""
    if defines(code, entry_point) or not code[:1].isspace():
        # A full function (or other top-level code): after the whole prompt, whose stub (a
        # docstring-only def) it replaces; the prompt's imports and helpers stay.
        head = tester_prelude(prompt, entry_point)
        return head.rstrip("\n") + "\n\n\n" + code.rstrip("\n") + "\n"
    return prompt + code.rstrip("\n") + "\n"


def tester_prelude(prompt: str, entry_point: str) -> str:
    """What of the prompt the tester runs before the tests: all of it when it parses (a stub
    with a docstring does), else the part before the entry point (its imports and helpers)."""
    return prompt if _parses(prompt) else _before_entry_point(prompt, entry_point)


def build_program(prompt: str, code: str, tests: str, entry_point: str, sentinel: str = "") -> str:
    """prompt + code + tests + `check(entry_point)` (+ a line printing `sentinel` once check
    returned): the one-process program of the reference harness. Proctor's own verdicts come
    from the split run (proctor.sandbox.split), which a completion cannot forge; this stays for
    comparison (bench/) and for running a program by hand."""
    program = build_candidate(prompt, code, entry_point)
    program += "\n\n" + tests.strip("\n") + "\n\n\n" + f"check({entry_point})\n"
    if sentinel:
        program += f"print({sentinel!r}, flush=True)\n"
    return program


def _before_entry_point(prompt: str, entry_point: str) -> str:
    """The prompt up to its `def entry_point(` line (its imports and helpers)."""
    m = re.search(r"^(?:async\s+)?def\s+" + re.escape(entry_point) + r"\s*\(", prompt, re.MULTILINE)
    return prompt[: m.start()] if m else prompt
