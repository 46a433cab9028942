"""Python code out of a model's answer, and the program that tests it (HumanEval style).

`extract_code(output)` finds the code:
1. cut at the first end-of-text token (`<|endoftext|>`, `<|im_end|>`, `</s>`, ...);
2. fenced blocks (```, closed or not, any language tag): the block that defines the entry
   point, else the longest that parses, else the one with the longest parseable prefix;
3. otherwise an indented continuation of the prompt (a base model writing the body);
4. otherwise the text from the first line starting with `def`/`import`/`from`/`class`/`@`;
and keeps the longest prefix (whole lines) that `ast.parse` accepts. None: no code.

`build_program(prompt, code, tests, entry_point)` is always prompt + code + tests +
`check(entry_point)`: a completion that repeats the signature (a full function, perhaps with
its imports) comes after the whole prompt and so replaces the prompt's stub, keeping the
prompt's imports and helpers; a body is appended to the prompt as it is.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

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


def _parses(src: str) -> bool:
    try:
        ast.parse(src)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def longest_parsing_prefix(src: str) -> str:
    """The longest prefix of whole lines that parses and holds at least one statement ("" if none)."""
    lines = src.splitlines(keepends=True)
    try:
        ast.parse(src)
        end = len(lines)
    except SyntaxError as e:
        end = min(len(lines), (e.lineno or len(lines)))
    except (ValueError, MemoryError, RecursionError):
        end = len(lines)
    else:
        return src.rstrip() + "\n" if _has_statement(src) else ""
    for n in range(end, 0, -1):
        candidate = "".join(lines[:n])
        if _parses(candidate) and _has_statement(candidate):
            return candidate.rstrip() + "\n"
    return ""


def _has_statement(src: str) -> bool:
    try:
        return bool(ast.parse(src).body)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False


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


def _normalise(block: str) -> str:
    """Dedent a uniformly indented block that starts with a top-level statement (def, import...)."""
    stripped = block.strip("\n")
    first = next((line for line in stripped.splitlines() if line.strip()), "")
    if first[:1] in (" ", "\t") and first.lstrip().startswith(_TOPLEVEL_START):
        return textwrap.dedent(stripped) + "\n"
    return stripped + "\n"


def defines(code: str, name: str | None) -> bool:
    if not name:
        return False
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name
        for node in tree.body
    )


def _is_continuation(code: str, prompt: str | None) -> bool:
    first = next((line for line in code.splitlines() if line.strip()), "")
    return bool(prompt) and first[:1] in (" ", "\t")


def _continuation(code: str, prompt: str) -> str:
    """The longest prefix of `code` that parses after the prompt ("" if none)."""
    whole = longest_parsing_prefix(prompt + code)
    if len(whole) <= len(prompt.rstrip() + "\n"):
        return ""
    lines = code.splitlines(keepends=True)
    # Map back to whole lines of the completion.
    taken = whole[len(prompt):] if whole.startswith(prompt) else ""
    n = len(taken.splitlines())
    body = "".join(lines[:n]).rstrip() + "\n"
    return body if body.strip() else ""


def _from_block(block: str, prompt: str | None) -> str:
    code = _normalise(block)
    if _is_continuation(code, prompt) and prompt is not None:
        return _continuation(code, prompt)
    return longest_parsing_prefix(code)


def extract_code(output: str | None, prompt: str | None = None, entry_point: str | None = None) -> Extracted | None:
    """The code in a model's output (see the module doc); None when there is none."""
    if not output:
        return None
    text = strip_end_tokens(output).replace("\r\n", "\n")
    blocks = fenced_blocks(text)
    if blocks:
        candidates = []
        for block in blocks:
            code = _from_block(block, prompt)
            if code.strip():
                complete = _parses(_normalise(block))
                candidates.append((defines(code, entry_point), complete, len(code), code))
        if candidates:
            return Extracted(max(candidates, key=lambda c: c[:3])[3], "fenced")
    if prompt is not None and _is_continuation(text, prompt):
        code = _continuation(text.lstrip("\n"), prompt)
        if code.strip():
            return Extracted(code, "continuation")
    for m in _CODE_START.finditer(text):
        code = longest_parsing_prefix(text[m.start():])
        if code.strip() and _looks_like_code(code):
            return Extracted(code, "text")
    return None


def _looks_like_code(code: str) -> bool:
    """Reject prose that happens to parse ("from the list above" does not; "import this" would)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)) for n in tree.body)


def build_program(prompt: str, code: str, tests: str, entry_point: str, sentinel: str = "") -> str:
    """prompt + code + tests + `check(entry_point)` (+ a line printing `sentinel` once check returned)."""
    if defines(code, entry_point) or not code[:1].isspace():
        # A full function (or other top-level code): after the whole prompt, whose stub (a
        # docstring-only def) it replaces; the prompt's imports and helpers stay.
        head = prompt if _parses(prompt) else _before_entry_point(prompt, entry_point)
        program = head.rstrip("\n") + "\n\n\n" + code.rstrip("\n") + "\n"
    else:
        program = prompt + code.rstrip("\n") + "\n"
    program += "\n\n" + tests.strip("\n") + "\n\n\n" + f"check({entry_point})\n"
    if sentinel:
        program += f"print({sentinel!r}, flush=True)\n"
    return program


def _before_entry_point(prompt: str, entry_point: str) -> str:
    """The prompt up to its `def entry_point(` line (its imports and helpers)."""
    m = re.search(r"^(?:async\s+)?def\s+" + re.escape(entry_point) + r"\s*\(", prompt, re.MULTILINE)
    return prompt[: m.start()] if m else prompt
