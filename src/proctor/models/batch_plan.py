"""`--dry-run` for the Batch API: how many requests and batch files, and what they would cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence
from urllib.parse import urlsplit

from proctor.core import Request
from proctor.models.api_errors import Unusable
from proctor.models.api_limits import expected_tokens
from proctor.models.api_payloads import encode_body, plan_request
from proctor.models.batch_files import batch_line, split_sizes

if TYPE_CHECKING:
    from proctor.config.schema import ApiModelConfig

# The Batch API's price: half the online one (OpenAI, Anthropic, Mistral, Together, ...).
BATCH_DISCOUNT = 0.5
_ID_WIDTH = "0" * 34  # a custom id's length (32 hex digits, "-", the copy number)


def describe_batches(config: ApiModelConfig, name: str, requests: Sequence[Request]) -> list[str]:
    """Lines for `--dry-run`: the model's requests, batch files, estimated tokens and cost saved."""
    settings = dict(config.body_settings())
    if config.max_completion_tokens:
        settings["max_tokens_field"] = "max_completion_tokens"
    base_path = urlsplit(config.api_base.strip()).path.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if base_path.lower().endswith(suffix):
            base_path = base_path[: -len(suffix)].rstrip("/")
    by_url: dict[str, list[int]] = {}
    tokens_in = tokens_out = 0
    for request in requests:
        try:
            path, body, _ = plan_request(request, model=config.model or "model", chat=config.api_type == "chat",
                                         display_base="", settings=settings)
        except Unusable:
            continue  # recorded as failed, never sent
        if path is None:
            continue
        content = encode_body(body)
        url = base_path + path
        by_url.setdefault(url, []).append(len(batch_line(_ID_WIDTH, url, content)))
        budget = int(body.get("max_completion_tokens", body.get("max_tokens")) or 0)
        tokens_in += expected_tokens(content, body) - budget
        tokens_out += budget
    sizes = [s for group in by_url.values() for s in group]
    files = sum(len(split_sizes(g, config.batch_max_requests, config.batch_max_bytes)) for g in by_url.values())
    cached = "; cached answers are not counted: fewer may be sent" if config.temperature == 0 else ""
    lines = [f"  batch: {name}: {len(sizes):,} requests in {files} batch file{'' if files == 1 else 's'} "
             f"({_size(sum(sizes))}) for the Batch API; answers within 24 h",
             f"    (at most {config.batch_max_requests:,} requests and {_size(config.batch_max_bytes)} a file{cached})"]
    price_in, price_out = config.price_per_million_input, config.price_per_million_output
    estimate = f"about {tokens_in:,} prompt tokens (estimated), at most {tokens_out:,} completion tokens"
    if price_in is None and price_out is None:
        lines.append(f"  cost: {estimate}; set price_per_million_input / _output (or --price-per-million-input /")
        lines.append("    --price-per-million-output) to see it: the Batch API charges half the online price")
        return lines
    online = (tokens_in * (price_in or 0.0) + tokens_out * (price_out or 0.0)) / 1e6
    batch = online * BATCH_DISCOUNT
    unpriced = " (prompt tokens unpriced)" if price_in is None else " (completion tokens unpriced)" if price_out is None else ""
    lines.append(f"  cost: {estimate}:")
    lines.append(f"    at most ${online:,.4f} online, ${batch:,.4f} as a batch: ${online - batch:,.4f} saved (50%){unpriced}")
    return lines


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"
