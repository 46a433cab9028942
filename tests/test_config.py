"""Dataset names, ranges, presets and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.api import build_run_config
from proctor.config.files import load_config_file
from proctor.config.ranges import apply_range, parse_range
from proctor.config.registry import resolve_model_preset
from proctor.tasks import resolve_datasets
from proctor.config.schema import ApiModelConfig, HFModelConfig
from proctor.errors import ConfigError


def test_collections_expand_to_every_subject() -> None:
    assert len(resolve_datasets(["ceval_gen"])) == 52
    assert len(resolve_datasets(["cmmlu_gen"])) == 67
    mmlu = resolve_datasets(["mmlu_ppl"])
    assert len(mmlu) == 57 and {d.mode for d in mmlu} == {"ppl"}
    assert mmlu[0].abbr.endswith("_ppl")


def test_single_subjects_and_modes() -> None:
    (gen,) = resolve_datasets(["ceval-computer_network"])
    assert (gen.benchmark, gen.subject, gen.mode, gen.abbr) == ("ceval", "computer_network", "gen", "ceval-computer_network")
    (ppl,) = resolve_datasets(["mmlu-abstract_algebra_ppl"], limit=3, fewshot=0)
    assert (ppl.mode, ppl.limit, ppl.fewshot) == ("ppl", 3, 0)


def test_duplicates_are_dropped() -> None:
    assert len(resolve_datasets(["cmmlu-anatomy", "cmmlu-anatomy"])) == 1


def test_demo_set_is_registered() -> None:
    demo = resolve_datasets(["demo_gen"])
    assert len(demo) >= 2
    assert all(d.data_dir for d in demo)


@pytest.mark.parametrize(
    ("name", "hint"),
    [("ceval_gne", "ceval_gen"), ("ceval-computer_netwrok", "computer_network"), ("cmmlu-anatomyy", "anatomy")],
)
def test_unknown_dataset_suggests_close_matches(name: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        resolve_datasets([name])


@pytest.mark.parametrize(("text", "expected"), [("[0:10]", slice(0, 10)), ("[-5:]", slice(-5, None)), ("[:3]", slice(None, 3))])
def test_ranges(text: str, expected: slice) -> None:
    assert parse_range(text) == expected
    assert apply_range(list(range(20)), text, None, where="x") == list(range(20))[expected]


def test_range_then_limit() -> None:
    assert apply_range(list(range(20)), "[5:]", 3, where="x") == [5, 6, 7]


@pytest.mark.parametrize("text", ["0:10", "[a:b]", "[1:2:3:4]", "[]"])
def test_bad_range_names_where(text: str) -> None:
    with pytest.raises(ConfigError, match=r"dataset ceval-law: bad range"):
        parse_range(text, where="dataset ceval-law")


def test_ranges_take_a_step_as_opencompass_does() -> None:
    assert apply_range(list(range(20)), "[0:10:2]", None, where="x") == [0, 2, 4, 6, 8]
    assert apply_range(list(range(20)), "[::5]", 3, where="x") == [0, 5, 10]
    with pytest.raises(ConfigError, match="step 0"):
        parse_range("[0:5:0]", where="x")


def test_model_presets() -> None:
    assert isinstance(resolve_model_preset("gpt-4o-mini"), ApiModelConfig)
    internlm = resolve_model_preset("internlm2_5-1_8b-chat-hf")
    assert isinstance(internlm, HFModelConfig) and internlm.trust_remote_code
    with pytest.raises(ConfigError, match="gpt-4o-mini"):
        resolve_model_preset("gpt-4o-mni")


def test_python_config_file(tmp_path: Path) -> None:
    path = tmp_path / "eval.py"
    path.write_text(
        "from proctor.config.schema import HFModelConfig\n"
        "models = [{'api_base': 'http://127.0.0.1:1/v1', 'qps': 5}, HFModelConfig(path='/m', batch_size=4)]\n"
        "datasets = ['cmmlu-anatomy', {'name': 'ceval_gen', 'range': '[0:10]', 'fewshot': 0}]\n"
        "work_dir = 'out'\n",
        encoding="utf-8",
    )
    loaded = load_config_file(path)
    assert isinstance(loaded.models[0], ApiModelConfig) and loaded.models[0].qps == 5
    assert isinstance(loaded.models[1], HFModelConfig) and loaded.models[1].batch_size == 4
    assert len(loaded.datasets) == 53
    assert loaded.datasets[1].range == "[0:10]" and loaded.datasets[1].fewshot == 0
    assert loaded.run_options == {"work_dir": "out"}


def test_yaml_config_and_cli_overrides(tmp_path: Path) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text(
        "models:\n  - {type: api, api_base: 'http://127.0.0.1:1/v1', model: m}\n"
        "datasets: [mmlu-anatomy]\nmax_num_workers: 4\nwork_dir: a\n",
        encoding="utf-8",
    )
    config = build_run_config(config_file=str(path), dataset_overrides={"limit": 2}, run_options={"work_dir": "b"})
    assert config.work_dir == "b" and config.max_num_workers == 4
    assert config.datasets[0].limit == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("models:\n  - {type: api, api_base: x, max_concurrency: 0}\ndatasets: [mmlu-anatomy]\n", r"eval.yaml: models\[0\].max_concurrency: .*greater than or equal to 1"),
        ("models:\n  - {type: api, api_bsae: x}\ndatasets: [mmlu-anatomy]\n", r"eval.yaml: models\[0\]\.(api_bsae: unknown key|api_base: required)"),
        ("models:\n  - {type: api, api_base: x}\ndatasets:\n  - {name: mmlu-anatomy, limt: 3}\n", r"eval.yaml: datasets\[0\]\.limt: unknown key"),
        ("models: [{type: api, api_base: x}]\ndatasets: [mmlu-anatomy]\nmax_workers: 3\n", r"eval.yaml: unknown key 'max_workers'"),
        ("models: [\n", r"eval.yaml: line \d+ is not valid YAML"),
        ("models: 3\ndatasets: []\n", r"eval.yaml: `models` must be a list"),
    ],
)
def test_config_file_errors_name_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_python_config_that_raises(tmp_path: Path) -> None:
    path = tmp_path / "eval.py"
    path.write_text("models = [1/0]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="eval.py: running the config raised ZeroDivisionError"):
        load_config_file(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["eval_api.yaml", "eval_hf.py"])
def test_shipped_examples_load(name: str) -> None:
    loaded = load_config_file(Path(__file__).resolve().parents[1] / "examples" / name)
    assert loaded.models and len(loaded.datasets) > 50
    assert loaded.run_options["work_dir"].startswith("outputs/")


def test_same_name_with_different_data_is_refused() -> None:
    # demo_gen holds its own ceval-computer_network: one of the two was silently dropped before.
    with pytest.raises(ConfigError, match="'ceval-computer_network' is asked for twice with different data"):
        resolve_datasets(["ceval-computer_network", "demo_gen"])
    with pytest.raises(ConfigError, match="twice with different data"):
        resolve_datasets(["demo_gen", "ceval-computer_network"])


@pytest.mark.parametrize("text", ["[5:2]", "[3:3]", "[-1:-4]"])
def test_empty_ranges_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="selects nothing"):
        parse_range(text, where="--range")
    assert parse_range("[-3:2]") == slice(-3, 2)  # may be empty or not, depending on the size


def test_top_level_limit_in_a_config_file_is_not_ignored(tmp_path: Path) -> None:
    # A Python config ignores unknown helper names, so `limit = 2` used to run every sample.
    path = tmp_path / "eval.py"
    path.write_text('models = [{"api_base": "http://x/v1"}]\ndatasets = ["mmlu-anatomy"]\nlimit = 2\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"eval.py: `limit` is a per-dataset setting.*--limit"):
        load_config_file(path)
    yaml_path = tmp_path / "eval.yaml"
    yaml_path.write_text("models: [{api_base: 'http://x/v1'}]\ndatasets: [mmlu-anatomy]\nfewshot: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="`fewshot` is a per-dataset setting"):
        load_config_file(yaml_path)
    # A helper variable the dataset entries use is fine.
    path.write_text(
        'limit = 2\nmodels = [{"api_base": "http://x/v1"}]\ndatasets = [{"name": "mmlu-anatomy", "limit": limit}]\n',
        encoding="utf-8",
    )
    assert [d.limit for d in load_config_file(path).datasets] == [2]
