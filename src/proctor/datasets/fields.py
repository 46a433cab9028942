"""How a row of a data file becomes a Sample: the field map, with defaults that fit most files."""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict

from proctor.core import CHOICE_LABELS, MAX_CHOICES, Sample, choice_labels
from proctor.errors import DataError

# Tried in order when the field map does not name the column.
QUESTION_COLUMNS = ("question", "input", "problem", "prompt", "query")
ANSWER_COLUMNS = ("answer", "target", "label", "output", "solution")
ID_COLUMNS = ("id", "task_id", "idx")
CHOICES_COLUMNS = ("choices", "options")


class FieldMap(BaseModel):
    """Which columns hold a sample's parts. Unset names fall back to the usual ones above.

    `choices`: a list of option columns (`[A, B, C, D]`), one column holding a list or a
    mapping of the options, `[]` for a free-form question, or unset: the columns `A`, `B`, ...
    when the row has them, else a `choices`/`options` list column, else free-form.
    `answer_format`: how the answer of a multiple-choice row is written: a letter, a 0-based
    index, the option text, or `auto` (letter, then index, then text).
    `id`: the id column; unset and absent (or null), the 0-based row number is the id.
    `meta`: columns copied into `Sample.meta` when not empty (e.g. `explanation`).
    `answerless`: the rows carry no answer (IFEval: the scorer checks a response against the
    row's own instructions); the target is None. Only a scorer that needs no answer accepts it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str | None = None
    choices: tuple[str, ...] | str | None = None
    answer: str | None = None
    answer_format: Literal["auto", "letter", "index", "text"] = "auto"
    id: str | None = None
    meta: tuple[str, ...] = ()
    # A transform of a free-form answer: "####" keeps what follows the last "####"
    # (GSM8K's "reasoning #### 42"), stripped; None keeps it as written.
    answer_after: str | None = None
    answerless: bool = False


def _column(row: Mapping[str, Any], name: str | None, fallbacks: tuple[str, ...]) -> str | None:
    """The column of `row` that `name` (case-insensitively) or else the first fallback names."""
    lowered = {key.lower(): key for key in row if isinstance(key, str)}
    for candidate in (name,) if name is not None else fallbacks:
        if candidate in row:
            return candidate
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _option_columns(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The option columns `A`, `B`, ... of a row, in label order, stopping at the first gap."""
    found: list[str] = []
    for label in CHOICE_LABELS:
        column = _column(row, label, ())
        if column is None:
            break
        found.append(column)
    return tuple(found)


def _stray_option_column(row: Mapping[str, Any], found: tuple[str, ...]) -> str | None:
    """An upper-case letter column after the run `found` (`E` after A-C, `K` after A-J), which
    would otherwise be dropped from the options without a word."""
    return next((c for c in _LETTERS[len(found) :] if c in row), None)


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def row_choices(row: Mapping[str, Any], fields: FieldMap, where: str) -> tuple[str, ...]:
    """The option texts of a row, in label order (empty: a free-form question)."""
    spec = fields.choices
    if spec == ():  # `choices: []`: a free-form question, whatever columns the row has
        return ()
    if isinstance(spec, tuple):
        missing = [c for c in spec if _column(row, c, ()) is None]
        if missing:
            raise DataError(f"{where}: no option column {missing[0]!r} (field map choices: {list(spec)})")
        texts = [_text(row[_column(row, c, ())]) for c in spec]  # type: ignore[index]
    else:
        column = _column(row, spec, ()) if isinstance(spec, str) else None
        if isinstance(spec, str) and column is None:
            raise DataError(f"{where}: no choices column {spec!r}")
        if column is None:
            letters = _option_columns(row)
            if len(letters) >= 2:
                stray = _stray_option_column(row, letters)
                if stray is not None:
                    if len(letters) == MAX_CHOICES:
                        n = next((i for i in range(MAX_CHOICES, len(_LETTERS)) if _LETTERS[i] not in row),
                                 len(_LETTERS))
                        raise DataError(f"{where}: {n} options (columns A-{_LETTERS[n - 1]}); "
                                        f"a question needs 2 to {MAX_CHOICES}")
                    raise DataError(f"{where}: option column {stray!r} follows {letters[-1]!r} without "
                                    f"{_LETTERS[len(letters)]!r} between them")
                texts = [_text(row[c]) for c in letters]
                return _checked(texts, where)
            column = _column(row, None, CHOICES_COLUMNS)
            if column is None:
                return ()
        value = row[column]
        if isinstance(value, Mapping):
            value = [value[k] for k in sorted(value)]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise DataError(f"{where}: field {column!r} must be a list of options, got {type(value).__name__}")
        texts = [_text(v) for v in value]
    return _checked(texts, where)


def _checked(texts: list[str], where: str) -> tuple[str, ...]:
    if not 2 <= len(texts) <= MAX_CHOICES:
        raise DataError(f"{where}: {len(texts)} options; a question needs 2 to {MAX_CHOICES}")
    return tuple(texts)


def _letter(answer: Any, choices: tuple[str, ...], fmt: str, where: str) -> str:
    """The gold letter of a multiple-choice row, from a letter, a 0-based index or the option text.

    With `auto`, every reading that fits is tried; when they name different options (answer "2"
    with options 1/2/3: index 2 is C, the text "2" is B) the row is refused, never guessed.
    """
    labels = choice_labels(len(choices))
    text = _text(answer).strip()
    readings: dict[str, str] = {}
    if fmt in ("auto", "letter"):
        letter = text.strip("()[]. ").upper()
        if len(letter) == 1 and letter in labels:
            readings["a letter"] = letter
    if fmt in ("auto", "index"):
        if isinstance(answer, int) and not isinstance(answer, bool) or text.isdigit():
            index = int(text)
            if 0 <= index < len(choices):
                readings["a 0-based index"] = labels[index]
    if fmt in ("auto", "text"):
        matches = [labels[i] for i, option in enumerate(choices) if option.strip() == text]
        if len(matches) == 1:
            readings["an option text"] = matches[0]
    if len(set(readings.values())) > 1:
        shown = ", ".join(f"as {how} it is {letter}" for how, letter in readings.items())
        raise DataError(
            f"{where}: answer {text!r} is ambiguous ({shown}); set the field map's answer_format "
            "to letter, index or text"
        )
    if readings:
        return next(iter(readings.values()))
    expected = {"letter": f"one of {'/'.join(labels)}", "index": f"an index 0-{len(choices) - 1}",
                "text": "one of the option texts"}.get(fmt, f"one of {'/'.join(labels)}, an index or an option text")
    raise DataError(f"{where}: answer {text!r} is not {expected}")


def _free_target(answer: Any, fields: FieldMap) -> Any:
    if isinstance(answer, (list, tuple)):
        return [_free_target(a, fields) for a in answer]
    if fields.answer_after and isinstance(answer, str) and fields.answer_after in answer:
        return answer.rsplit(fields.answer_after, 1)[1].strip()
    if isinstance(answer, str):
        return answer.strip()
    return answer


def row_to_sample(row: Mapping[str, Any], index: int, fields: FieldMap, where: str,
                  meta: Mapping[str, Any] | None = None) -> Sample:
    """The Sample of one row (`index`: its 0-based data-row number); DataError names the row and field."""
    q_col = _column(row, fields.question, QUESTION_COLUMNS)
    if q_col is None:
        wanted = fields.question or " or ".join(QUESTION_COLUMNS)
        raise DataError(f"{where}: no question field ({wanted}); found {sorted(map(str, row))}")
    question = _text(row[q_col])
    if not question.strip():
        raise DataError(f"{where}: the question ({q_col!r}) is empty")
    if fields.answerless:
        return _answerless_sample(row, index, fields, where, q_col, question, meta)
    a_col = _column(row, fields.answer, ANSWER_COLUMNS)
    if a_col is None:
        wanted = fields.answer or " or ".join(ANSWER_COLUMNS)
        raise DataError(f"{where}: no answer field ({wanted}); found {sorted(map(str, row))}"
                        + (" (this split may have no public answers)" if fields.answer else ""))
    choices = row_choices(row, fields, where)
    answer = row[a_col]
    if choices:
        target: Any = _letter(answer, choices, fields.answer_format, where)
    else:
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            raise DataError(f"{where}: the answer ({a_col!r}) is empty")
        target = _free_target(answer, fields)
    id_col = _column(row, fields.id, ID_COLUMNS)
    if fields.id is not None and id_col is None:
        raise DataError(f"{where}: no id column {fields.id!r}")
    raw_id = row[id_col] if id_col is not None else None
    sample_id = str(index) if raw_id is None or (id_col is not None and fields.id is None and _text(raw_id) == "") else _text(raw_id).strip()
    if not sample_id:
        raise DataError(f"{where}: the id ({id_col!r}) is empty")
    used = {q_col, a_col, id_col, *(_option_columns(row) if choices and not isinstance(fields.choices, tuple) else ())}
    if isinstance(fields.choices, tuple):
        used.update(_column(row, c, ()) for c in fields.choices)
    elif isinstance(fields.choices, str) or (choices and not _option_columns(row)):
        used.add(_column(row, fields.choices if isinstance(fields.choices, str) else None, CHOICES_COLUMNS))
    sample_meta: dict[str, Any] = dict(meta or {})
    for name in fields.meta:
        column = _column(row, name, ())
        if column is not None and _text(row[column]).strip():
            sample_meta[name] = row[column]
    extra = {k: v for k, v in row.items() if k not in used and k not in fields.meta and isinstance(k, str) and k}
    return Sample(id=sample_id, question=question, target=target, choices=choices, fields=extra, meta=sample_meta)


def _answerless_sample(row: Mapping[str, Any], index: int, fields: FieldMap, where: str, q_col: str,
                       question: str, meta: Mapping[str, Any] | None) -> Sample:
    """A row without an answer: its target is None and every other column stays in `fields`."""
    if fields.answer is not None:
        raise DataError(f"{where}: the field map names an answer column ({fields.answer!r}) and says "
                        "the rows are answerless; drop one of the two")
    id_col = _column(row, fields.id, ID_COLUMNS)
    if fields.id is not None and id_col is None:
        raise DataError(f"{where}: no id column {fields.id!r}")
    raw_id = row[id_col] if id_col is not None else None
    sample_id = str(index) if raw_id is None else _text(raw_id).strip()
    if not sample_id:
        raise DataError(f"{where}: the id ({id_col!r}) is empty")
    sample_meta: dict[str, Any] = dict(meta or {})
    for name in fields.meta:
        column = _column(row, name, ())
        if column is not None and _text(row[column]).strip():
            sample_meta[name] = row[column]
    used = {q_col, id_col}
    extra = {k: v for k, v in row.items() if k not in used and k not in fields.meta and isinstance(k, str) and k}
    return Sample(id=sample_id, question=question, target=None, fields=extra, meta=sample_meta)
