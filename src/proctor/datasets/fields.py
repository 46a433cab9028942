"""How a row of a data file becomes a Sample: the field map, with defaults that fit most files.

A field names a column, a path into one (`question.stem`, `choices[0]`) or is a Jinja template
over the row (`"{{ passage }}\\n{{ question }}"`). The common option shapes are read as they
are: option columns (`A`..`J`, or any named ones such as PIQA's `sol1`, `sol2`), a list of
texts, a list of `{label, text}` (AI2 ARC), `{text: [...], label: [...]}` (Hugging Face) and a
label -> text mapping. A row keeps the labels it writes (`1`-`4`, `A`-`E`) only to read its
answer; the prompt shows the preset's letters and the target is the letter of that position.

Nothing is turned into text that is not text: a mapping, a list or a null where a question, an
option, an answer or an id is expected is refused with one line naming the row and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, field_validator

from proctor.core import CHOICE_LABELS, MAX_CHOICES, Sample, choice_labels
from proctor.datasets.paths import MISSING, lookup, parse_path, top_key
from proctor.errors import DataError
from proctor.templating import TemplateProblem, is_jinja, render_jinja

# Tried in order when the field map does not name the column.
QUESTION_COLUMNS = ("question", "input", "problem", "prompt", "query", "question_stem")
ANSWER_COLUMNS = ("answer", "target", "label", "output", "solution", "answerKey")
ID_COLUMNS = ("id", "task_id", "idx")
CHOICES_COLUMNS = ("choices", "options")

AnswerFormat = Literal["auto", "label", "letter", "index", "index1", "text"]


class EmptyAnswer(DataError):
    """A row whose answer is empty (null, "" or []): refused, or left out where the spec says so."""


class FieldMap(BaseModel):
    """Which fields hold a sample's parts. Unset names fall back to the usual ones above.

    `choices`: a list of option fields (`[A, B, C, D]`, `[sol1, sol2]`), one field holding the
    options in any of the shapes above, `[]` for a free-form question, or unset: the columns
    `A`, `B`, ... when the row has them, else a `choices`/`options` field, else the `choices` of
    a nested question (`question: {stem, choices}`), else free-form.
    `labels`: a field with the row's own option labels, where the options' shape has none.
    `answer_format`: how a multiple-choice answer is written: `label` (one of the row's own
    labels), `letter` (A, B, ... by position), `index` (0-based), `index1` (1-based), `text`
    (the option text), or `auto`: the row's own label (then the text) when the options carry
    labels, else a letter, a 0-based index or the text, refused when two readings disagree.
    An index is never taken as 1-based unless the spec says `index1`.
    `answerless`: the rows carry no answer (IFEval: the scorer checks a response against the
    row's own instructions); the target is None. Only a scorer that needs no answer accepts it.
    `id`: the id field; unset and absent (or null), the 0-based row number is the id.
    `meta`: fields copied into `Sample.meta` when not empty (e.g. `explanation`).
    `hook`: `module:function` (or `path/to/file.py:function`, relative to the spec file) called
    with each row (a dict) before the map is applied; it returns the row to read. For the
    rare row that needs code; the hook's file is part of the dataset's version.
    `shuffle_choices`: a seed; each question's options are shown in an order drawn from the seed
    and the sample id (the same order in every run, whatever `--limit` or `--range` pick), the
    gold letter following its option. For files that list the right option first (GPQA).
    `question_file`: the question is the text of this file, a path relative to the data file's
    folder with `{column}` placeholders from the row (MathArena's `problems/{id}.tex`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str | None = None
    choices: tuple[str, ...] | str | None = None
    labels: str | None = None
    answer: str | None = None
    answer_format: AnswerFormat = "auto"
    answerless: bool = False
    id: str | None = None
    meta: tuple[str, ...] = ()
    # A transform of a free-form answer: "####" keeps what follows the last "####"
    # (GSM8K's "reasoning #### 42"), stripped; None keeps it as written.
    answer_after: str | None = None
    hook: str | None = None
    shuffle_choices: int | None = None
    question_file: str | None = None
    # Rows whose answer is empty are left out (each named in a warning) instead of refused: for a
    # source with a known unanswerable row (AGIEval jec-qa-kd line 212 has `label: []`).
    skip_unanswered: bool = False

    @field_validator("question", "answer", "id", "labels")
    @classmethod
    def _path_or_template(cls, value: str | None) -> str | None:
        if value and not is_jinja(value):  # "" names a column without a header (CMMLU's ids)
            parse_path(value)  # ValueError names the bad path
        return value

    @field_validator("hook")
    @classmethod
    def _hook_form(cls, value: str | None) -> str | None:
        if value is not None:
            module, sep, function = value.rpartition(":")
            if not sep or not module or not function.isidentifier():
                raise ValueError(f"hook {value!r} must be written module:function (or file.py:function)")
        return value


def _kind(value: Any) -> str | None:
    """What a non-text value is ("a mapping", "a list", "null"), or None for text and numbers."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    if not isinstance(value, (str, int, float)):
        return f"a {type(value).__name__}"
    return None


def _scalar(value: Any, where: str, name: str) -> str:
    """The text of a scalar field; a mapping, a list or a null is refused, naming the field."""
    kind = _kind(value)
    if kind is None:
        return str(value)
    if kind == "a mapping":
        keys = [str(k) for k in value][:6]
        hint = f"; name a path into it, e.g. {name}.{keys[0]}" if keys else ""
        raise DataError(f"{where}: field {name!r} is a mapping (keys {', '.join(keys)}), not text{hint}")
    if kind == "a list":
        raise DataError(f"{where}: field {name!r} is a list of {len(value)}, not text; "
                        f"name one item (e.g. {name}[0]) or join it in a template")
    if kind == "null":
        raise DataError(f"{where}: field {name!r} is null")
    raise DataError(f"{where}: field {name!r} is {kind}, not text")


def _render(template: str, row: Mapping[str, Any], where: str, what: str) -> str:
    try:
        return render_jinja(template, row)
    except TemplateProblem as err:
        raise DataError(f"{where}: field map {what}: {err}") from None


def _field(row: Mapping[str, Any], name: str | None, fallbacks: tuple[str, ...]) -> tuple[Any, str | None, str | None]:
    """(value, the name it was found under, its top-level column) for `name` or the first fallback found."""
    for candidate in (name,) if name is not None else fallbacks:
        value, top = lookup(row, candidate)
        if value is not MISSING:
            return value, candidate if name is not None else top, top
    return MISSING, None, None


@dataclass(frozen=True)
class Options:
    """The options of a row: texts in order, the row's own labels (if it writes any), the columns read."""

    texts: tuple[str, ...] = ()
    labels: tuple[str, ...] | None = None
    used: frozenset[str] = frozenset()


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _option_columns(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The option columns `A`, `B`, ... of a row, in label order, stopping at the first gap."""
    found: list[str] = []
    for label in CHOICE_LABELS:
        column = top_key(row, label)
        if column is None:
            break
        found.append(column)
    return tuple(found)


def _stray_option_column(row: Mapping[str, Any], found: tuple[str, ...]) -> str | None:
    """An upper-case letter column after the run `found` (`E` after A-C, `K` after A-J), which
    would otherwise be dropped from the options without a word."""
    return next((c for c in _LETTERS[len(found) :] if c in row), None)


def _option_text(value: Any, where: str, name: str) -> str:
    if value is None:
        raise DataError(f"{where}: option {name!r} is null (a missing option is not an empty one); "
                        "fix the row or leave the option out")
    return _scalar(value, where, name)


def _shape(value: Any, where: str, name: str) -> tuple[list[str], list[str] | None]:
    """Option texts (and the row's labels) from one field holding the options in a common shape."""
    if isinstance(value, Mapping):
        text_key, label_key = top_key(value, "text"), top_key(value, "label")
        if text_key is not None and isinstance(value[text_key], (list, tuple)):
            # Hugging Face: {"text": [...], "label": [...]}
            texts = [_option_text(v, where, f"{name}.{text_key}[{i}]") for i, v in enumerate(value[text_key])]
            if label_key is None:
                return texts, None
            labels = value[label_key]
            if not isinstance(labels, (list, tuple)) or len(labels) != len(texts):
                raise DataError(f"{where}: field '{name}.{label_key}' must be a list of {len(texts)} labels, "
                                f"one per option")
            return texts, [_scalar(v, where, f"{name}.{label_key}[{i}]") for i, v in enumerate(labels)]
        # {label: text, ...}
        keys = sorted(value, key=str)
        return [_option_text(value[k], where, f"{name}.{k}") for k in keys], [str(k) for k in keys]
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: field {name!r} must be a list of options, got {type(value).__name__}")
    if value and all(isinstance(v, Mapping) for v in value):
        # AI2 ARC / OpenBookQA: [{"label": "A", "text": "..."}, ...]
        texts, labels = [], []
        for i, item in enumerate(value):
            text_key = top_key(item, "text")
            if text_key is None:
                raise DataError(f"{where}: field '{name}[{i}]' has no 'text' (keys {', '.join(map(str, item))})")
            texts.append(_option_text(item[text_key], where, f"{name}[{i}].{text_key}"))
            label_key = top_key(item, "label")
            labels.append(None if label_key is None else _scalar(item[label_key], where, f"{name}[{i}].{label_key}"))
        return texts, (None if any(label is None for label in labels) else labels)  # type: ignore[return-value]
    return [_option_text(v, where, f"{name}[{i}]") for i, v in enumerate(value)], None


def _checked(texts: list[str], labels: list[str] | None, used: set[str], where: str) -> Options:
    if not 2 <= len(texts) <= MAX_CHOICES:
        raise DataError(f"{where}: {len(texts)} options; a question needs 2 to {MAX_CHOICES}")
    if labels is not None:
        stripped = [label.strip() for label in labels]
        duplicate = next((label for i, label in enumerate(stripped) if label in stripped[:i]), None)
        if duplicate is not None or "" in stripped:
            raise DataError(f"{where}: the option labels {stripped} are not distinct")
        labels = stripped
    return Options(tuple(texts), tuple(labels) if labels is not None else None, frozenset(u for u in used if u))


def row_options(row: Mapping[str, Any], fields: FieldMap, where: str) -> Options:
    """The options of a row, in order (no texts: a free-form question)."""
    spec = fields.choices
    if spec == ():  # `choices: []`: a free-form question, whatever columns the row has
        return Options()
    labels: list[str] | None = None
    if isinstance(spec, tuple):
        texts, used = [], set()
        for name in spec:
            value, top = lookup(row, name)
            if value is MISSING:
                raise DataError(f"{where}: no option column {name!r} (field map choices: {list(spec)})")
            texts.append(_option_text(value, where, name))
            used.add(top)
        options = _checked(texts, None, used, where)
    else:
        if isinstance(spec, str):
            value, top = lookup(row, spec)
            if value is MISSING:
                raise DataError(f"{where}: no choices column {spec!r}")
            name = spec
        else:
            letters = _option_columns(row)
            if len(letters) >= 2:
                return _letter_columns(row, letters, where)
            _refuse_gapped_columns(row, where)
            value, name, top = _field(row, None, CHOICES_COLUMNS)
            if value is MISSING:
                nested, top = lookup(row, "question.choices")
                q_key = top_key(row, "question")
                if nested is MISSING or q_key is None or not isinstance(row[q_key], Mapping):
                    return Options()
                value, name = nested, f"{q_key}.choices"  # AI2 ARC: question: {stem, choices}
        texts, labels = _shape(value, where, str(name))
        options = _checked(texts, labels, {top} if top else set(), where)
    if fields.labels is not None:
        value, top = lookup(row, fields.labels)
        if value is MISSING:
            raise DataError(f"{where}: no labels field {fields.labels!r}")
        if not isinstance(value, (list, tuple)) or len(value) != len(options.texts):
            raise DataError(f"{where}: field {fields.labels!r} must be a list of {len(options.texts)} labels")
        own = [_scalar(v, where, f"{fields.labels}[{i}]") for i, v in enumerate(value)]
        options = _checked(list(options.texts), own, {*options.used, top or ""}, where)
    return options


def _refuse_gapped_columns(row: Mapping[str, Any], where: str) -> None:
    """Option columns with a gap before the second (`A` and `C`, or `B` and `C`) would make the
    row a free-form question without a word: refused, naming the columns and the missing one."""
    present = [c for c in CHOICE_LABELS if c in row]
    if len(present) >= 2:
        missing = next(c for c in CHOICE_LABELS if c not in row)
        raise DataError(f"{where}: option columns {', '.join(present)} have a gap: no column {missing!r}; "
                        f"options are the columns A, B, C, ... in order")


def _letter_columns(row: Mapping[str, Any], letters: tuple[str, ...], where: str) -> Options:
    stray = _stray_option_column(row, letters)
    if stray is not None:
        if len(letters) == MAX_CHOICES:
            n = next((i for i in range(MAX_CHOICES, len(_LETTERS)) if _LETTERS[i] not in row), len(_LETTERS))
            raise DataError(f"{where}: {n} options (columns A-{_LETTERS[n - 1]}); a question needs 2 to {MAX_CHOICES}")
        raise DataError(f"{where}: option column {stray!r} follows {letters[-1]!r} without "
                        f"{_LETTERS[len(letters)]!r} between them")
    texts = [_option_text(row[c], where, c) for c in letters]
    return _checked(texts, None, set(letters), where)


def row_choices(row: Mapping[str, Any], fields: FieldMap, where: str) -> tuple[str, ...]:
    """The option texts of a row, in order (empty: a free-form question)."""
    return row_options(row, fields, where).texts


def _index(answer: Any, text: str) -> int | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer
    return int(text) if text.isdigit() else None


def _letter(answer: Any, options: Options, fmt: str, where: str, name: str) -> str:
    """The gold letter (by position) of a multiple-choice row, read as `fmt` says.

    With `auto`, every reading that fits is tried; when they name different options (answer "2"
    with options 1/2/3: index 2 is C, the text "2" is B) the row is refused, never guessed.
    """
    choices = options.texts
    labels = choice_labels(len(choices))
    if answer is None:
        raise EmptyAnswer(f"{where}: the answer ({name!r}) is empty")
    if isinstance(answer, (list, tuple, Mapping)):
        raise DataError(f"{where}: field {name!r} is {_kind(answer)}; a multiple-choice row needs one answer")
    text = str(answer).strip()
    readings: dict[str, str] = {}
    own = options.labels
    if fmt == "label" and own is None:
        raise DataError(f"{where}: answer_format label, but the options carry no labels of their own; "
                        "use letter, index, index1 or text")
    if fmt in ("label", "auto") and own is not None:
        if text in own:
            readings["a label of the row"] = labels[own.index(text)]
        else:
            folded = [label.casefold() for label in own]
            if folded.count(text.casefold()) == 1:
                readings["a label of the row"] = labels[folded.index(text.casefold())]
    if fmt == "letter" or (fmt == "auto" and own is None):
        letter = text.strip("()[]. ").upper()
        if len(letter) == 1 and letter in labels:
            readings["a letter"] = letter
    if fmt == "index" or (fmt == "auto" and own is None):
        index = _index(answer, text)
        if index is not None and 0 <= index < len(choices):
            readings["a 0-based index"] = labels[index]
    if fmt == "index1":
        index = _index(answer, text)
        if index is not None and 1 <= index <= len(choices):
            readings["a 1-based index"] = labels[index - 1]
    if fmt in ("auto", "text"):
        matches = [labels[i] for i, option in enumerate(choices) if option.strip() == text]
        if len(matches) == 1:
            readings["an option text"] = matches[0]
        elif len(matches) > 1:
            raise DataError(f"{where}: answer {text!r} is the text of options {' and '.join(matches)}, which are "
                            "identical; make the options distinct or give the answer as a letter")
    if len(set(readings.values())) > 1:
        shown = ", ".join(f"as {how} it is {letter}" for how, letter in readings.items())
        raise DataError(
            f"{where}: answer {text!r} is ambiguous ({shown}); set the field map's answer_format "
            "to label, letter, index, index1 or text"
        )
    if readings:
        return next(iter(readings.values()))
    own_text = "/".join(own) if own is not None else ""
    expected = {
        "letter": f"one of {'/'.join(labels)}",
        "label": f"one of the row's labels {own_text}",
        "index": f"an index 0-{len(choices) - 1}",
        "index1": f"an index 1-{len(choices)}",
        "text": "one of the option texts",
    }.get(fmt)
    if expected is None:
        expected = (f"one of the row's labels {own_text} or an option text" if own is not None
                    else f"one of {'/'.join(labels)}, an index or an option text")
    raise DataError(f"{where}: answer {text!r} is not {expected}")


def _free_target(answer: Any, fields: FieldMap, where: str, name: str) -> Any:
    if isinstance(answer, (list, tuple)):
        return [_free_target(a, fields, where, f"{name}[{i}]") for i, a in enumerate(answer)]
    if isinstance(answer, Mapping) or _kind(answer) not in (None, "null"):
        _scalar(answer, where, name)  # refused, naming the field
    if fields.answer_after and isinstance(answer, str) and fields.answer_after in answer:
        return answer.rsplit(fields.answer_after, 1)[1].strip()
    if isinstance(answer, str):
        return answer.strip()
    return answer


def _hooked(row: Mapping[str, Any], fields: FieldMap, where: str) -> Mapping[str, Any]:
    if fields.hook is None:
        return row
    from proctor.datasets.hooks import load_hook

    hook: Callable[[dict[str, Any]], Any] = load_hook(fields.hook)
    try:
        out = hook(dict(row))
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's hook: its failure is a bad row, in one line
        raise DataError(f"{where}: hook {fields.hook} failed: {type(err).__name__}: {err}") from None
    if not isinstance(out, Mapping):
        raise DataError(f"{where}: hook {fields.hook} returned {type(out).__name__}, not a row (a dict)")
    return out


def _question(row: Mapping[str, Any], fields: FieldMap, where: str) -> tuple[str, str | None]:
    """The question text and its top-level column (None for a template)."""
    if fields.question is not None and is_jinja(fields.question):
        text = _render(fields.question, row, where, "question")
        if not text.strip():
            raise DataError(f"{where}: the question (field map template) is empty")
        return text, None
    value, name, top = _field(row, fields.question, QUESTION_COLUMNS)
    if value is MISSING:
        wanted = fields.question or " or ".join(QUESTION_COLUMNS)
        raise DataError(f"{where}: no question field ({wanted}); found {sorted(map(str, row))}")
    if fields.question is None and isinstance(value, Mapping) and top_key(value, "stem") is not None:
        # AI2 ARC / OpenBookQA: question: {stem, choices}
        name = f"{name}.{top_key(value, 'stem')}"
        value = value[top_key(value, "stem")]  # type: ignore[index]
    if value is None:
        raise DataError(f"{where}: the question ({name!r}) is empty")
    question = _scalar(value, where, str(name))
    if not question.strip():
        raise DataError(f"{where}: the question ({name!r}) is empty")
    return question, top


def _sample_id(row: Mapping[str, Any], index: int, fields: FieldMap, where: str) -> tuple[str, str | None]:
    if fields.id is not None and is_jinja(fields.id):
        sample_id = _render(fields.id, row, where, "id").strip()
        if not sample_id:
            raise DataError(f"{where}: the id (field map template) is empty")
        return sample_id, None
    raw, name, top = _field(row, fields.id, ID_COLUMNS)
    if fields.id is not None and raw is MISSING:
        raise DataError(f"{where}: no id column {fields.id!r}")
    if raw is MISSING or raw is None or (fields.id is None and raw == ""):
        return str(index), top
    sample_id = _scalar(raw, where, str(name)).strip()
    if not sample_id:
        raise DataError(f"{where}: the id ({name!r}) is empty")
    return sample_id, top


def row_to_sample(row: Mapping[str, Any], index: int, fields: FieldMap, where: str,
                  meta: Mapping[str, Any] | None = None) -> Sample:
    """The Sample of one row (`index`: its 0-based data-row number); DataError names the row and field."""
    row = _hooked(row, fields, where)
    question, q_col = _question(row, fields, where)
    if fields.answerless and fields.answer is not None:
        raise DataError(f"{where}: the field map names an answer column ({fields.answer!r}) and says "
                        "the rows are answerless; drop one of the two")
    # An answerless row (IFEval) is free-form: its other columns stay in `fields` for the scorer.
    options = Options() if fields.answerless else row_options(row, fields, where)
    target: Any
    a_col: str | None = None
    if fields.answerless:
        target = None
    elif fields.answer is not None and is_jinja(fields.answer):
        target = _render(fields.answer, row, where, "answer")
        target = _letter(target, options, fields.answer_format, where, "answer") if options.texts else target.strip()
        if not options.texts and not target:
            raise EmptyAnswer(f"{where}: the answer (field map template) is empty")
    else:
        answer, a_name, a_col = _field(row, fields.answer, ANSWER_COLUMNS)
        if answer is MISSING:
            wanted = fields.answer or " or ".join(ANSWER_COLUMNS)
            raise DataError(f"{where}: no answer field ({wanted}); found {sorted(map(str, row))}"
                            + (" (this split may have no public answers)" if fields.answer else ""))
        if options.texts:
            target = _letter(answer, options, fields.answer_format, where, str(a_name))
        else:
            if answer is None or (isinstance(answer, (str, list, tuple)) and not "".join(map(str, answer)).strip()):
                raise EmptyAnswer(f"{where}: the answer ({a_name!r}) is empty")
            target = _free_target(answer, fields, where, str(a_name))
    sample_id, id_col = _sample_id(row, index, fields, where)
    choices = options.texts
    if choices and fields.shuffle_choices is not None:
        choices, target = shuffled(choices, target, fields.shuffle_choices, sample_id)
    used = {q_col, a_col, id_col, *options.used}
    sample_meta: dict[str, Any] = dict(meta or {})
    for name in fields.meta:
        value, _ = lookup(row, name)
        if value is not MISSING and value is not None and str(value).strip():
            sample_meta[name] = value
    extra = {k: v for k, v in row.items() if k not in used and k not in fields.meta and isinstance(k, str) and k}
    if (options.labels is not None and options.labels != tuple(choice_labels(len(options.texts)))
            and fields.shuffle_choices is None):  # shuffled, the row's labels no longer say where an option is
        sample_meta.setdefault("source_labels", list(options.labels))  # shown as A, B, ...; kept for reading
    return Sample(id=sample_id, question=question, target=target, choices=choices, fields=extra,
                  meta=sample_meta)


def shuffled(choices: tuple[str, ...], target: str, seed: int, sample_id: str) -> tuple[tuple[str, ...], str]:
    """The options in the order drawn for this question, and the gold letter that follows its option."""
    import random

    # A string seed is hashed with SHA-512 by `random`: the same order on every machine and run.
    order = random.Random(f"{seed}:{sample_id}").sample(range(len(choices)), len(choices))
    labels = choice_labels(len(choices))
    return tuple(choices[i] for i in order), labels[order.index(labels.index(target))]
