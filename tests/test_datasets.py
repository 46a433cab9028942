"""The built-in benchmark specs and the data side: metadata, loaders on the real files, layouts, errors, demo data."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.datasets import DEMO_DATA_DIR, data_files, data_roots
from proctor.errors import ConfigError, DataError
from proctor.tasks import builtin_specs, get_spec, load_samples

# Per-split totals from shared/datasets/README.md (counted there with csv.reader).
README_TOTALS = {("ceval", "val"): 1346, ("ceval", "dev"): 260, ("cmmlu", "test"): 11582, ("mmlu", "test"): 14079}


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data root outside tmp_path: no $PROCTOR_DATA, cwd and user cache dir inside tmp_path."""
    monkeypatch.delenv("PROCTOR_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _files(name: str, subset: str, split: str, data_dir: Path) -> list[Path]:
    return data_files(get_spec(name).data_source(), subset, split, data_dir)


def _in_category(name: str, category: str) -> list[str]:
    return [s.name for s in get_spec(name).subsets if category in s.categories]


# ---------------------------------------------------------------- metadata


def test_metadata_needs_no_data() -> None:
    specs = builtin_specs()
    sizes = {name: len(spec.subsets) for name, spec in specs.items()}
    assert {k: sizes[k] for k in ("ceval", "cmmlu", "mmlu")} == {"ceval": 52, "cmmlu": 67, "mmlu": 57}
    ceval, cmmlu, mmlu = (get_spec(n) for n in ("ceval", "cmmlu", "mmlu"))
    assert ceval is specs["ceval"]
    assert (ceval.display_title, ceval.prompt.language, ceval.splits.eval, ceval.splits.fewshot) == ("C-Eval", "zh", "val", "dev")
    assert (cmmlu.display_title, cmmlu.prompt.language, cmmlu.splits.eval, cmmlu.splits.fewshot) == ("CMMLU", "zh", "test", "dev")
    assert (mmlu.display_title, mmlu.prompt.language, mmlu.splits.eval, mmlu.splits.fewshot) == ("MMLU", "en", "test", "dev")
    assert (ceval.splits.all, cmmlu.splits.all, mmlu.splits.all) == (
        ("dev", "val", "test"), ("dev", "test"), ("dev", "val", "test"))
    assert ceval.categories == ("STEM", "Social Science", "Humanities", "Other")
    for spec in (ceval, cmmlu, mmlu):
        assert spec.multiple_choice and spec.modes == ("gen", "ppl") and spec.scorer.name == "choice"

    net = ceval.subset("computer_network")
    assert (net.title, net.title_zh, net.category, net.categories) == ("Computer Network", "计算机网络", "STEM", ("STEM",))
    assert ceval.subset("mao_zedong_thought").category == "Social Science"
    assert ceval.subset("logic").category == "Humanities"
    assert ceval.subset("physician").category == "Other"
    assert all(s.title_zh for s in ceval.subsets)  # every C-Eval subject has its Chinese title
    assert ceval.subset("mao_zedong_thought").title_zh == "毛泽东思想和中国特色社会主义理论体系概论"
    (hard,) = ceval.groups
    assert (hard.name, hard.title) == ("hard", "C-Eval-Hard")
    assert set(hard.subsets) == {
        "advanced_mathematics", "discrete_mathematics", "probability_and_statistics", "college_chemistry",
        "college_physics", "high_school_mathematics", "high_school_chemistry", "high_school_physics",
    }
    assert cmmlu.groups == () and mmlu.groups == ()


def test_data_sources_of_the_specs() -> None:
    ceval = get_spec("ceval").data_source()
    assert (ceval.name, ceval.title, ceval.splits) == ("ceval", "C-Eval", ("dev", "val", "test"))
    assert len(ceval.subsets) == 52 and ceval.subsets[0] == "computer_network"
    # The original layout first (what fetch writes), then OpenCompass's.
    assert ceval.candidates("law", "val") == ("ceval/val/law_val.csv", "ceval/formal_ceval/val/law_val.csv")
    assert get_spec("cmmlu").data_source().candidates("anatomy", "dev") == (
        "cmmlu/data/dev/anatomy.csv", "cmmlu/dev/anatomy.csv")
    mmlu = get_spec("mmlu").data_source()
    assert mmlu.candidates("anatomy", "test") == ("mmlu/data/test/anatomy_test.csv", "mmlu/test/anatomy_test.csv")
    assert (mmlu.source.header, mmlu.source.columns) == (False, ("question", "A", "B", "C", "D", "answer"))
    assert mmlu.source.archive is not None and mmlu.source.archive.revisions[0] == "main"


def test_category_sizes_match_the_papers() -> None:
    def sizes(name: str) -> dict[str, int]:
        return {c: len(_in_category(name, c)) for c in get_spec(name).categories}

    # CMMLU paper, table of subjects: 17 STEM, 13 Humanities, 22 Social Science, 15 Other, 15 China specific.
    assert sizes("cmmlu") == {"STEM": 17, "Humanities": 13, "Social Science": 22, "Other": 15, "China specific": 15}
    # hendrycks/test categories.py.
    assert sizes("mmlu") == {"STEM": 18, "humanities": 13, "social sciences": 12, "other": 14}
    # C-Eval paper: 20 STEM, 10 Social Science, 11 Humanities, 11 Other; one category per subject.
    assert sizes("ceval") == {"STEM": 20, "Social Science": 10, "Humanities": 11, "Other": 11}
    assert all(len(s.categories) == 1 for s in get_spec("ceval").subsets)
    cmmlu = get_spec("cmmlu")
    assert cmmlu.subset("ancient_chinese").categories == ("Social Science", "China specific")
    assert cmmlu.subset("anatomy").categories == ("STEM",)
    mmlu = get_spec("mmlu")
    assert mmlu.subset("professional_accounting").category == "other"
    assert mmlu.subset("human_sexuality").category == "social sciences"
    assert mmlu.subset("high_school_us_history").title == "High School US History"


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"C-Eval subset 'computer_netwrok': did you mean 'computer_network'"):
        get_spec("ceval").subset("computer_netwrok")
    with pytest.raises(ConfigError, match=r"unknown benchmark 'cmmmlu': did you mean 'cmmlu'"):
        get_spec("cmmmlu")
    with pytest.raises(ConfigError, match=r"^unknown CMMLU split 'val': known: dev, test$"):
        load_samples("cmmlu", "anatomy", "val")
    with pytest.raises(ConfigError, match="did you mean 'abstract_algebra'"):
        load_samples("mmlu", "abstract_algebr", "test")
    with pytest.raises(ConfigError, match="known: "):  # nothing close: list some known names
        get_spec("mmlu").subset("zzzz")


# ---------------------------------------------------------------- real files


@needs_shared_data
@pytest.mark.parametrize(
    ("name", "folder", "suffix"),
    [
        ("ceval", "ceval/{split}", "_{split}.csv"),
        ("cmmlu", "cmmlu/data/{split}", ".csv"),
        ("mmlu", "mmlu/data/{split}", "_{split}.csv"),
    ],
)
def test_subject_lists_equal_the_files(name: str, folder: str, suffix: str) -> None:
    spec = get_spec(name)
    for split in spec.splits.all:
        end = suffix.format(split=split)
        files = {p.name[: -len(end)] for p in (SHARED_DATASETS / folder.format(split=split)).glob(f"*{end}")}
        assert files == set(spec.subset_names), (name, split)


@needs_shared_data
@pytest.mark.parametrize(
    ("name", "subject", "split", "count"),
    [
        ("ceval", "computer_network", "val", 19),
        ("ceval", "computer_network", "dev", 5),
        ("ceval", "middle_school_geography", "val", 12),
        ("cmmlu", "anatomy", "test", 148),
        ("cmmlu", "jurisprudence", "test", 411),
        ("cmmlu", "anatomy", "dev", 5),
        ("mmlu", "abstract_algebra", "test", 100),
        ("mmlu", "professional_law", "val", 170),
        ("mmlu", "college_mathematics", "dev", 5),
    ],
)
def test_row_counts_match_the_readme(name: str, subject: str, split: str, count: int) -> None:
    samples = load_samples(name, subject, split, data_dir=SHARED_DATASETS)
    assert len(samples) == count
    assert len({s.id for s in samples}) == count


@needs_shared_data
@pytest.mark.parametrize(("name", "split"), sorted(README_TOTALS))
def test_every_subject_loads_with_valid_targets(name: str, split: str) -> None:
    spec = get_spec(name)
    total = 0
    for subject in spec.subset_names:
        samples = load_samples(name, subject, split, data_dir=SHARED_DATASETS)
        assert samples, subject
        for s in samples:
            assert s.target in ("A", "B", "C", "D")
            assert len(s.choices) == 4 and s.labels == "ABCD"
            assert s.question.strip()
            assert s.meta["subject"] == subject
            assert s.fields == {}  # every column is used: nothing left over
        total += len(samples)
    assert total == README_TOTALS[(name, split)]


@needs_shared_data
@pytest.mark.parametrize(
    ("name", "subject", "split", "relative", "header"),
    [
        ("ceval", "computer_network", "dev", "ceval/dev/computer_network_dev.csv", True),
        ("cmmlu", "anatomy", "test", "cmmlu/data/test/anatomy.csv", True),
        ("mmlu", "college_mathematics", "dev", "mmlu/data/dev/college_mathematics_dev.csv", False),
    ],
)
def test_fields_equal_an_independent_parse(name: str, subject: str, split: str, relative: str, header: bool) -> None:
    path = SHARED_DATASETS / relative
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))[1 if header else 0 :]
    samples = load_samples(name, subject, split, data_dir=SHARED_DATASETS)
    assert _files(name, subject, split, SHARED_DATASETS) == [path.resolve()]
    assert len(samples) == len(rows)
    for i, (sample, row) in enumerate(zip(samples, rows, strict=True)):
        if name == "mmlu":  # no id column: the 0-based row number
            expected_id, question, options, answer = str(i), row[0], row[1:5], row[5]
        else:  # C-Eval "id", CMMLU's unnamed pandas index
            expected_id, question, options, answer = row[0], row[1], row[2:6], row[6]
        assert sample.id == expected_id
        assert sample.question == question
        assert list(sample.choices) == options
        assert sample.option("C") == options[2]
        assert sample.target == answer
        if name == "ceval":
            assert sample.meta["explanation"] == row[7]
        else:
            assert "explanation" not in sample.meta


@needs_shared_data
def test_newlines_inside_fields_are_kept() -> None:
    # The 3rd question of MMLU college_mathematics dev spans lines joined by CR LF inside the quotes.
    math = load_samples("mmlu", "college_mathematics", "dev", data_dir=SHARED_DATASETS)
    assert len(math) == 5
    assert "\r\n" in math[2].question
    physics = load_samples("mmlu", "college_physics", "val", data_dir=SHARED_DATASETS)
    assert len(physics) == 11 and sum("\r\n" in s.question for s in physics) == 2
    # C-Eval dev explanations are multi-line (CR LF inside the quoted field).
    ceval = load_samples("ceval", "computer_network", "dev", data_dir=SHARED_DATASETS)
    assert [s.meta["explanation"].count("\r\n") for s in ceval] == [1, 0, 0, 0, 2]
    assert [s.id for s in ceval] == ["0", "1", "2", "3", "4"]


@needs_shared_data
def test_ceval_test_split_has_no_answers() -> None:
    # The first data row is where the missing answer shows; the message says why.
    path = SHARED_DATASETS / "ceval" / "test" / "computer_network_test.csv"
    with pytest.raises(DataError) as info:
        load_samples("ceval", "computer_network", "test", data_dir=SHARED_DATASETS)
    message = str(info.value)
    assert message.startswith(f"{path}: row 2 (line 2): no answer field (answer); found ")
    assert message.endswith("(this split may have no public answers)") and "\n" not in message


@needs_shared_data
def test_opencompass_layout(isolated: Path) -> None:
    root = isolated / "opencompass-data"
    copies = {  # (name, subject, split): (original layout, OpenCompass layout)
        ("ceval", "computer_network", "val"): (
            "ceval/val/computer_network_val.csv",
            "ceval/formal_ceval/val/computer_network_val.csv",
        ),
        ("cmmlu", "anatomy", "test"): ("cmmlu/data/test/anatomy.csv", "cmmlu/test/anatomy.csv"),
        ("mmlu", "abstract_algebra", "test"): (
            "mmlu/data/test/abstract_algebra_test.csv",
            "mmlu/test/abstract_algebra_test.csv",
        ),
    }
    for (name, subject, split), (original, opencompass) in copies.items():
        (root / opencompass).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED_DATASETS / original, root / opencompass)
        assert _files(name, subject, split, root) == [(root / opencompass).resolve()]
        loaded = load_samples(name, subject, split, data_dir=root)
        assert loaded == load_samples(name, subject, split, data_dir=SHARED_DATASETS)
        assert len(loaded) == {"ceval": 19, "cmmlu": 148, "mmlu": 100}[name]


# ---------------------------------------------------------------- errors and search order


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (["2", "题目", "甲", "乙", "丙"], "5 fields, expected 7"),
        (["2", "题目", "甲", "乙", "丙", "丁", "E"], "answer 'E' is not one of A/B/C/D"),
        (["2", " ", "甲", "乙", "丙", "丁", "A"], "the question \\('question'\\) is empty"),
        (["", "题目", "甲", "乙", "丙", "丁", "A"], "the id \\('id'\\) is empty"),
        (["1", "题目", "甲", "乙", "丙", "丁", "A"], "duplicate id '1'"),
    ],
)
def test_malformed_row_names_file_and_row(isolated: Path, row: list[str], problem: str) -> None:
    path = _write_csv(
        isolated / "d" / "ceval" / "val" / "logic_val.csv",
        [["id", "question", "A", "B", "C", "D", "answer"],
         ["0", "第一题\n第二行", "甲", "乙", "丙", "丁", "B"],
         ["1", "题目", "甲", "乙", "丙", "丁", "C"],
         row],
    )
    # Row 4 counting the header as row 1; line 5 because the first question spans two lines.
    with pytest.raises(DataError, match=f"^{path}: row 4 \\(line 5\\): {problem}"):
        load_samples("ceval", "logic", "val", data_dir=isolated / "d")


def test_malformed_headerless_row(isolated: Path) -> None:
    path = _write_csv(
        isolated / "d" / "mmlu" / "data" / "test" / "anatomy_test.csv",
        [["Q1", "a", "b", "c", "d", "A"], ["Q2", "a", "b", "c", "D"]],
    )
    with pytest.raises(DataError, match=f"^{path}: row 2 \\(line 2\\): 5 fields, expected 6$"):
        load_samples("mmlu", "anatomy", "test", data_dir=isolated / "d")


def test_bom_and_crlf_files_load(isolated: Path) -> None:
    # Saved by a spreadsheet program: a UTF-8 BOM before the header and CR LF row endings.
    path = isolated / "d" / "cmmlu" / "test" / "arts.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(",Question,A,B,C,D,Answer\r\n0,问题,甲,乙,丙,丁,D\r\n".encode("utf-8-sig"))
    (sample,) = load_samples("cmmlu", "arts", "test", data_dir=isolated / "d")
    assert (sample.id, sample.question, sample.target) == ("0", "问题", "D")
    assert sample.choices == ("甲", "乙", "丙", "丁")
    assert sample.meta == {"subject": "arts"}


def test_missing_data_lists_the_searched_paths(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_root = isolated / "env-root"
    env_root.mkdir()
    monkeypatch.setenv("PROCTOR_DATA", str(env_root))
    explicit = isolated / "explicit"
    explicit.mkdir()
    with pytest.raises(DataError) as info:
        load_samples("cmmlu", "anatomy", "test", data_dir=explicit)
    message = str(info.value)
    assert "\n" not in message
    assert "no CMMLU data for anatomy/test" in message
    assert "cmmlu/data/test/anatomy.csv or cmmlu/test/anatomy.csv" in message
    for root in (explicit, env_root, isolated / "cwd" / "data", isolated / "xdg-cache" / "proctor" / "data"):
        assert str(root) in message
    assert "proctor data fetch cmmlu" in message and "--data-dir" in message

    with pytest.raises(DataError, match="data directory .*nowhere does not exist"):
        load_samples("cmmlu", "anatomy", "test", data_dir=isolated / "nowhere")


def test_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = ["id", "question", "A", "B", "C", "D", "answer"]

    def make_root(path: Path, question: str) -> Path:
        _write_csv(path / "ceval" / "val" / "law_val.csv", [header, ["0", question, "1", "2", "3", "4", "A"]])
        return path

    def question(data_dir: Path | None = None) -> str:
        return load_samples("ceval", "law", "val", data_dir=data_dir)[0].question

    cache = make_root(isolated / "xdg-cache" / "proctor" / "data", "from cache")
    assert question() == "from cache"
    make_root(isolated / "cwd" / "data", "from ./data")
    assert question() == "from ./data"
    env = make_root(isolated / "env", "from env")
    monkeypatch.setenv("PROCTOR_DATA", str(env))
    assert question() == "from env"
    explicit = make_root(isolated / "explicit", "from data_dir")
    assert question(explicit) == "from data_dir"
    # A data_dir without the file falls through to the next root.
    other = isolated / "other"
    other.mkdir()
    assert question(other) == "from env"
    assert data_roots(explicit)[0] == explicit and data_roots()[-1] == cache
    # Within one root, the first layout wins over OpenCompass's.
    _write_csv(explicit / "ceval" / "formal_ceval" / "val" / "law_val.csv",
               [header, ["0", "from formal_ceval", "1", "2", "3", "4", "A"]])
    assert question(explicit) == "from data_dir"


# ---------------------------------------------------------------- demo data


DEMO = [
    ("ceval", "computer_network"),
    ("ceval", "high_school_physics"),
    ("mmlu", "astronomy"),
    ("mmlu", "computer_security"),
]


@pytest.mark.parametrize(("name", "subject"), DEMO)
def test_demo_data_loads(isolated: Path, name: str, subject: str) -> None:
    spec = get_spec(name)
    scored = load_samples(name, subject, spec.splits.eval, data_dir=DEMO_DATA_DIR)
    shots = load_samples(name, subject, spec.splits.fewshot, data_dir=DEMO_DATA_DIR)
    assert (len(scored), len(shots)) == (8, 5)
    assert Counter(s.target for s in scored) == {"A": 2, "B": 2, "C": 2, "D": 2}
    assert {s.target for s in shots} <= set("ABCD")
    for s in scored + shots:
        assert len(set(s.choices)) == 4  # four distinct options
    if name == "ceval":
        assert all(s.meta["explanation"] for s in shots)
        # Explanations end by naming the answer: keep them consistent with the target.
        assert all(s.meta["explanation"].rstrip("。").endswith(f"答案是{s.target}") for s in shots)
    for path in _files(name, subject, spec.splits.eval, DEMO_DATA_DIR):
        assert path.is_relative_to(DEMO_DATA_DIR.resolve())


@needs_shared_data
@pytest.mark.parametrize(("name", "subject"), DEMO)
def test_demo_questions_are_not_benchmark_items(name: str, subject: str) -> None:
    spec = get_spec(name)
    demo = {s.question for split in (spec.splits.eval, spec.splits.fewshot)
            for s in load_samples(name, subject, split, data_dir=DEMO_DATA_DIR)}
    real = set().union(*(_real_questions(name, subject, split) for split in spec.splits.all))
    assert real and not demo & real


def _real_questions(name: str, subject: str, split: str) -> set[str]:
    if (name, split) == ("ceval", "test"):  # no answer column, so not loadable: read the questions
        path = SHARED_DATASETS / "ceval" / "test" / f"{subject}_test.csv"
        with open(path, encoding="utf-8", newline="") as handle:
            return {row["question"] for row in csv.DictReader(handle)}
    return {s.question for s in load_samples(name, subject, split, data_dir=SHARED_DATASETS)}
