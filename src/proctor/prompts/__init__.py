"""Turning Samples into Requests: presets (multiple choice, free form), few-shot, chat vs text, variants."""

from proctor.prompts.length import estimate_request_tokens, estimate_tokens
from proctor.prompts.render import PromptPlan
from proctor.prompts.variants import current_item_id, items_of, option_orders
from proctor.prompts.wording import Wording

__all__ = ["PromptPlan", "Wording", "estimate_request_tokens", "current_item_id", "estimate_tokens", "items_of", "option_orders"]
