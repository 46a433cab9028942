"""Variants: the items a sample is asked as (option orders for circular evaluation, repeats for pass@k)."""

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


def items_of(sample: Sample, variants: Variants = "none", n: int = 1) -> list[Item]:
    """The items of one sample. A single item keeps the sample id; several get `#r<k>` (option
    order k) and/or `#n<j>` (the j-th of n answers)."""
    orders = option_orders(len(sample.choices), variants) if sample.choices and variants != "none" else [None]
    items = []
    for k, order in enumerate(orders):
        asked = sample if order is None else reorder(sample, order)
        for j in range(n):
            suffix = (f"#r{k}" if order is not None else "") + (f"#n{j}" if n > 1 else "")
            variant = {**({"rotation": k, "order": list(order)} if order is not None else {}), **({"repeat": j} if n > 1 else {})}
            items.append(Item(id=sample.id + suffix, sample=asked, sample_id=sample.id, variant=variant))
    return items
