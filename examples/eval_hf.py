"""proctor run examples/eval_hf.py — a local checkpoint, generation and log-likelihood scoring."""

from proctor.config.schema import HFModelConfig

models = [
    HFModelConfig(
        abbr="internlm2_5-1_8b-chat-hf",
        path="internlm/internlm2_5-1_8b-chat",
        trust_remote_code=True,  # InternLM ships its own model code
        batch_size=16,
        max_out_len=64,
    ),
]
datasets = ["ceval_gen", "ceval_ppl"]
work_dir = "outputs/hf"
