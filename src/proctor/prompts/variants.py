"""Variants: the items a sample is asked as (option orders for circular evaluation, repeats for avg@K/pass@k)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Literal

from proctor.core import Item, Sample

Variants = Literal["none", "circular", "all"]


def option_orders(n: int, variants: Variants) -> list[tuple[int, ...]]:
    """The option orders asked: order[i] is the original index of the option shown at position i.

    circular: the n cyclic rotations (ABCD, BCDA, CDAB, DABC), as OpenCompass's CircularEval;
    all: every permutation, in lexicographic order (the identity first).
    """
    if variants == "circular":
        return [tuple((i + k) % n for i in range(n)) for k in range(n)]
    if variants == "all":
        return list(itertools.permutations(range(n)))
    return [tuple(range(n))]


def reorder(sample: Sample, order: tuple[int, ...]) -> Sample:
    """The sample with its options shown in `order` and the target relabelled to match."""
    choices = tuple(sample.choices[i] for i in order)
    old = sample.labels.index(sample.target)
    target = sample.labels[order.index(old)]
    return replace(sample, choices=choices, target=target)


REPEAT_MARK = "#k"
# Older runs marked the j-th answer `#n<j>` (`--num-samples`); their records are still read.
OLD_REPEAT_MARK = "#n"


def items_of(sample: Sample, variants: Variants = "none", repeats: int = 1) -> list[Item]:
    """The items of one sample. A single item keeps the sample id; several get `#r<k>` (option
    order k) and/or `#k<j>` (the j-th of `repeats` answers)."""
    orders = option_orders(len(sample.choices), variants) if sample.choices and variants != "none" else [None]
    items = []
    for k, order in enumerate(orders):
        asked = sample if order is None else reorder(sample, order)
        for j in range(repeats):
            suffix = (f"#r{k}" if order is not None else "") + (f"{REPEAT_MARK}{j}" if repeats > 1 else "")
            variant = {**({"rotation": k, "order": list(order)} if order is not None else {}),
                       **({"repeat": j} if repeats > 1 else {})}
            items.append(Item(id=sample.id + suffix, sample=asked, sample_id=sample.id, variant=variant))
    return items


def current_item_id(item_id: str, sample_id: str) -> str:
    """The id this version gives a record's item: an older run's repeat `s#n2` (`s#r1#n2`) is
    `s#k2` (`s#r1#k2`); any other id is kept. `sample_id` tells the suffix from the sample's own id."""
    if not sample_id or not item_id.startswith(sample_id):
        return item_id
    head, mark, j = item_id[len(sample_id):].rpartition(OLD_REPEAT_MARK)
    if not mark or not j.isdigit() or (head and not (head.startswith("#r") and head[2:].isdigit())):
        return item_id
    return f"{sample_id}{head}{REPEAT_MARK}{j}"


TURN_MARK = "#t"


def turn_items(sample: Sample, turns_field: str) -> list[Item]:
    """The items of a conversation: `<id>#t1`, `<id>#t2`, ... one per user turn, each asking its
    turn's text (`variant["turn"]`, 1-based; `variant["turns"]` how many there are)."""
    from proctor.errors import DataError

    turns = sample.fields.get(turns_field)
    if (not isinstance(turns, (list, tuple)) or not turns
            or not all(isinstance(t, str) and t.strip() for t in turns)):
        raise DataError(f"sample {sample.id}: field {turns_field!r} must be a list of user turns (non-empty "
                        f"texts), got {type(turns).__name__}")
    return [Item(id=f"{sample.id}{TURN_MARK}{t}", sample=replace(sample, question=text), sample_id=sample.id,
                 variant={"turn": t, "turns": len(turns)})
            for t, text in enumerate(turns, 1)]
