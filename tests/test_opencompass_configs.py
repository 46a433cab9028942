"""The OpenCompass tutorial's files, typed as its users have them (only the URL and the model
path changed), run with Proctor (issue 21 §1): `opencompass.*` and `mmengine` imports, read_base
with OpenCompass's config module names, the tutorial's dataset loop, `--models FILE.py` and
`--datasets FILE.py`. Each failed before: `No module named 'opencompass'`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from run_helpers import only_run, read_records
from serve_helpers import served_model
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.config.files import load_config_file
from proctor.errors import ConfigError

pytestmark = needs_shared_data

PUYU_API = """\
import os
from opencompass.models import OpenAISDK


internlm_url = '{url}' # 你前面获得的 api 服务地址
internlm_api_key = os.getenv('INTERNLM_API_KEY')

models = [
    dict(
        # abbr='internlm2.5-latest',
        type=OpenAISDK,
        path='internlm2.5-latest', # 请求服务时的 model name
        # 换成自己申请的APIkey
        key=internlm_api_key, # API key
        openai_api_base=internlm_url, # 服务地址
        rpm_verbose=True, # 是否打印请求速率
        query_per_second=0.16, # 服务请求速率
        max_out_len=1024, # 最大输出长度
        max_seq_len=4096, # 最大输入长度
        temperature=0.01, # 生成温度
        batch_size=1, # 批处理大小
        retry=3, # 重试次数
    )
]
"""

DEMO_CMMLU = """\
from mmengine import read_base

with read_base():
    from ..cmmlu.cmmlu_gen_c13365 import cmmlu_datasets


# 每个数据集只取前2个样本进行评测
for d in cmmlu_datasets:
    d['abbr'] = 'demo_' + d['abbr']
    d['reader_cfg']['test_range'] = '[0:1]' # 这里每个数据集只取1个样本, 方便快速评测.
"""

HF_CHAT = """\
from opencompass.models import HuggingFacewithChatTemplate

models = [
    dict(
        type=HuggingFacewithChatTemplate,
        abbr='internlm2_5-1_8b-chat-hf',
        path='{path}',
        max_out_len=2048,
        batch_size=8,
        run_cfg=dict(num_gpus=1),
    )
]
"""

TUTORIAL_DEMO = """\
from mmengine.config import read_base

with read_base():
    from .datasets.ceval.ceval_gen import ceval_datasets
    from .models.hf_internlm.hf_internlm2_5_1_8b_chat import models as hf_internlm2_5_1_8b_chat_models

datasets = ceval_datasets
models = hf_internlm2_5_1_8b_chat_models
"""

SERVED = """\
from opencompass.models import OpenAI

api_meta_template = dict(round=[
            dict(role='HUMAN', api_role='HUMAN'),
            dict(role='BOT', api_role='BOT', generate=True),
        ])

models = [
    dict(
        abbr='InternLM-2.5-1.8B-Chat',
        type=OpenAI,
        path='internlm2_5-1_8b-chat',  # 注册的模型名称
        key='sk-123456',
        openai_api_base='http://0.0.0.0:{port}/v1/chat/completions',
        meta_template=api_meta_template,
        query_per_second=16,
        max_out_len=1024,
        max_seq_len=4096,
        temperature=0.01,
        batch_size=8,
        retry=3,
    )
]
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _no_opencompass_left() -> None:
    assert not [m for m in sys.modules if m.split(".")[0] in ("opencompass", "mmengine")]
    assert not [f for f in sys.meta_path if type(f).__module__ == "proctor.config.opencompass"]


def _data(*argv: str) -> list[str]:
    return [*argv, "--data-dir", str(SHARED_DATASETS)]


def test_the_api_tutorial_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs" / "datasets" / "demo").mkdir(parents=True)
    with OpenAIServer(responder=lambda body: "答案是A", api_key="sk-puyu", model_ids=("internlm2.5-latest",)) as srv:
        (tmp_path / "puyu_api.py").write_text(PUYU_API.format(url=srv.base_url + "/"), encoding="utf-8")
        demo = tmp_path / "configs" / "datasets" / "demo" / "demo_cmmlu_chat_gen.py"
        demo.write_text(DEMO_CMMLU, encoding="utf-8")
        monkeypatch.setenv("INTERNLM_API_KEY", "sk-puyu")
        # A tiny slice in time: --qps on the command line wins over the file's 0.16 (67 requests).
        rc = main(_data("run", "--models", "puyu_api.py", "--datasets", str(demo), "--debug", "--qps", "50"))
        sent = [r for r in srv.requests if r.path.endswith("/chat/completions")]
    assert rc == 0
    assert len(sent) == 67  # the loop's test_range [0:1]: one question per CMMLU subject
    run = only_run(tmp_path / "outputs")
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert {d["abbr"][:11] for d in config["datasets"]} == {"demo_cmmlu-"} and len(config["datasets"]) == 67
    assert {d["range"] for d in config["datasets"]} == {"[0:1]"}
    model = config["models"][0]
    assert (model["qps"], model["temperature"], model["max_out_len"], model["max_seq_len"]) == (50.0, 0.01, 1024, 4096)
    assert len(read_records(run, "internlm2.5-latest", "demo_cmmlu-agronomy")) == 1
    _no_opencompass_left()


def test_the_local_chat_model_file_gets_whole_prompts(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """max_out_len=2048 on a 2048-token model: the answer gets what the prompt leaves, the prompt
    keeps its five examples (it was cut to its last token before)."""
    (tmp_path / "hf_internlm2_5_1_8b_chat.py").write_text(HF_CHAT.format(path=tiny_model_dir), encoding="utf-8")
    # The tiny model's context is set to 1,000 tokens only to keep the test short: the ~800-token
    # prompt then leaves ~200 for the answer, as a 2,048-token context leaves ~1,200 for 2,048.
    rc = main(_data("run", "--models", "hf_internlm2_5_1_8b_chat", "--datasets", "ceval-computer_network",
                    "--limit", "1", "--max-seq-len", "1000"))
    assert rc == 0
    run = only_run(tmp_path / "outputs")
    records = read_records(run, "internlm2_5-1_8b-chat-hf", "ceval-computer_network")
    assert len(records) == 1 and not any(r["error"] for r in records)
    for r in records:
        turns = [m["content"] for m in r["prompt"] if m["role"] == "user"]
        assert len(turns) == 6 and turns[-1].endswith("答案："), turns  # five worked examples, then the question
        assert r["prompt_tokens"] + r["completion_tokens"] <= 1000
    text = capsys.readouterr().err
    assert "truncated from the left" not in text
    assert "answers may use only" in text and "instead of 2048" in text
    model = json.loads((run / "config.json").read_text(encoding="utf-8"))["models"][0]
    assert (model["batch_size"], model["num_gpus"], model["max_out_len"]) == (8, 1, 2048)


def test_the_composed_tutorial_demo_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "configs" / "models" / "hf_internlm").mkdir(parents=True)
    (tmp_path / "configs" / "models" / "hf_internlm" / "hf_internlm2_5_1_8b_chat.py").write_text(
        HF_CHAT.format(path=tiny_model_dir), encoding="utf-8")
    demo = tmp_path / "configs" / "eval_tutorial_demo.py"
    demo.write_text(TUTORIAL_DEMO, encoding="utf-8")
    loaded = load_config_file(demo)
    assert [m.path for m in loaded.models] == [str(tiny_model_dir)]  # the file beside it, not a built-in
    assert len(loaded.datasets) == 52 and loaded.datasets[0].benchmark == "ceval"
    # A slice in time: one question per subject and short answers (flags win over the file).
    assert main(_data("run", str(demo), "--limit", "1", "--max-out-len", "4")) == 0
    run = only_run(tmp_path / "outputs")
    assert len(list((run / "results" / "internlm2_5-1_8b-chat-hf").glob("ceval-*.json"))) == 52
    _no_opencompass_left()


def test_the_served_model_file_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    with served_model(tiny_model_dir, served_model_name="internlm2_5-1_8b-chat", api_key="sk-123456",
                      max_batch_size=8) as base_url:
        port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        (tmp_path / "internlm2_5_1_8b_chat_api.py").write_text(SERVED.format(port=port), encoding="utf-8")
        rc = main(_data("run", "--models", "internlm2_5_1_8b_chat_api.py", "--datasets", "ceval-computer_network",
                        "--limit", "2", "--max-out-len", "8"))
    assert rc == 0
    run = only_run(tmp_path / "outputs")
    records = read_records(run, "InternLM-2.5-1.8B-Chat", "ceval-computer_network")
    assert len(records) == 2 and not any(r["error"] for r in records)


# ---------------------------------------------------------------- what the hook resolves, and refuses


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "eval.py"
    path.write_text(text, encoding="utf-8")
    return load_config_file(path)


def test_absolute_config_names_and_the_honoured_edits(tmp_path: Path) -> None:
    loaded = _load(tmp_path, (
        "from opencompass.configs.datasets.mmlu.mmlu_gen_4d595a import mmlu_datasets\n"
        "from opencompass.configs.models.hf_internlm.hf_internlm2_5_1_8b_chat import models\n"
        "from opencompass.openicl.icl_retriever import ZeroRetriever\n"
        "for d in mmlu_datasets[:2]:\n"
        "    d['infer_cfg']['retriever'] = dict(type=ZeroRetriever)\n"
        "    d['infer_cfg']['inferencer']['max_out_len'] = 32\n"
        "datasets = mmlu_datasets[:3]\n"
    ))
    first, second, third = loaded.datasets  # type: ignore[attr-defined]
    assert (first.fewshot, first.max_out_len, third.fewshot, third.max_out_len) == (0, 32, None, None)
    assert loaded.models[0].path == "internlm/internlm2_5-1_8b-chat"  # type: ignore[attr-defined]
    assert loaded.models[0].trust_remote_code  # as OpenCompass loads its HF models  # type: ignore[attr-defined]
    _no_opencompass_left()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from mmengine.config import read_base\nwith read_base():\n    from .datasets.cmmlu.cmmlu_gen_c13366 import cmmlu_datasets\n"
         "datasets = cmmlu_datasets\nmodels = []\n",
         "`.datasets.cmmlu.cmmlu_gen_c13366`: there is no file"),
        ("from opencompass.models import OpenAISDKK\nmodels = []\ndatasets = []\n",
         "`opencompass.models.OpenAISDKK` is not a model class Proctor runs; closest: OpenAISDK"),
        ("from mmengine.config import read_base\nwith read_base():\n    from .ceval.ceval_gen import ceval_datasets\n"
         "ceval_datasets[0]['eval_cfg']['pred_postprocessor'] = dict(type='x')\ndatasets = ceval_datasets\nmodels = []\n",
         "eval.py: datasets[0] (ceval-computer_network): eval_cfg.pred_postprocessor was changed, which Proctor cannot honour"),
        ("from opencompass.datasets import MyDataset\ndatasets = [dict(type=MyDataset, abbr='x', reader_cfg={})]\nmodels = []\n",
         "eval.py: datasets[0]: an OpenCompass dataset of type 'MyDataset', which Proctor does not have"),
    ],
)
def test_what_cannot_be_honoured_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert expected in message and len(message.splitlines()) == 1, message
    _no_opencompass_left()


def test_an_unknown_module_names_the_closest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "eval.py").write_text(
        "from mmengine.config import read_base\nwith read_base():\n    from ..cmmlu.cmmlu_gen_c13366 import cmmlu_datasets\n"
        "datasets = cmmlu_datasets\nmodels = ['gpt-4o-mini']\n", encoding="utf-8")
    assert main(["run", "eval.py"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: eval.py: line 3: `..cmmlu.cmmlu_gen_c13366`") and "closest known: cmmlu_gen_c13365" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_list_takes_several_patterns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "internlm", "ceval"]) == 0
    out = capsys.readouterr().out
    assert "internlm2_5-1_8b-chat-hf" in out and "ceval_gen" in out
    assert main(["list", "internlm", "nosuchthing"]) == 2
    assert "nosuchthing" in capsys.readouterr().err


def test_dataset_and_model_files_by_bare_name(tmp_path: Path) -> None:
    """`--datasets demo_cmmlu_chat_gen --models puyu_api`, as OpenCompass's run.py finds them."""
    from proctor.api import build_run_config

    (tmp_path / "demo_cmmlu_chat_gen.py").write_text(DEMO_CMMLU, encoding="utf-8")
    (tmp_path / "puyu_api.py").write_text(PUYU_API.format(url="http://127.0.0.1:9/v1"), encoding="utf-8")
    config = build_run_config(models=["puyu_api"], datasets=["demo_cmmlu_chat_gen", "cmmlu_gen_c13365"])
    names = [d.abbr for d in config.datasets]
    assert len(names) == 2 * 67 and names.count("demo_cmmlu-agronomy") == 1 and "cmmlu-agronomy" in names
    assert config.models[0].qps == 0.16 and config.models[0].model == "internlm2.5-latest"
