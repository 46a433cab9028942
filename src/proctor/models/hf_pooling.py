"""Which waiting requests of a local model run together in one pool: those that begin alike.

A pool shares the prompt tokens its rows begin with (hf_prefill): the few-shot examples of a
subject run once for all its questions in the pool. Taking the longest waiting requests
instead scatters a subject over pools by question length: in `mmlu_gen --limit 5` (57
subjects x 5 questions, 5-shot, chat template) a pool of the 32 longest prompts held rows of
20 subjects that share only the instruction's first words, and 163k prompt tokens ran
where 72k would do. So requests are clustered by shared prefix (the rule of
`hf_prefill.shared_prefixes`, on every waiting request), and a pool takes whole clusters:
the one with the longest request first (an out-of-memory shows up at once), then the next
longest that fit in what is left; a cluster larger than a whole pool is cut, longest first.
Which requests share a pool never changes an answer (tests/test_hf_generate_pool.py).
"""

from __future__ import annotations

from array import array
from typing import Callable, Sequence, TypeVar

from proctor.models.hf_prefill import SHARED_PREFIX_MIN

T = TypeVar("T")

_WIDTH = array("i").itemsize  # bytes per token in a prefix key


def prefix_key(ids: Sequence[int]) -> bytes:
    """The tokens as bytes, a fixed width each: sequences that begin with the same k tokens
    begin with the same k * width bytes, so sorting keys puts them side by side, and bytes
    compare in C (a sort of token tuples is ~100x slower on 5-shot prompts)."""
    return array("i", ids).tobytes()


def common_tokens(a: bytes, b: bytes, most: int) -> int:
    """How many first tokens (at most `most`) two prefix keys have in common."""
    lo, hi = 0, min(most, len(a) // _WIDTH, len(b) // _WIDTH)
    while lo < hi:  # the largest n with equal first n tokens: binary search on slices
        mid = (lo + hi + 1) // 2
        if a[: mid * _WIDTH] == b[: mid * _WIDTH]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def prefix_clusters(keys: Sequence[bytes]) -> list[int]:
    """A cluster number per key: keys in sorted order stay in one cluster while they keep a
    common prefix of at least SHARED_PREFIX_MIN tokens that a newcomer shortens at most by
    half (as hf_prefill.shared_prefixes decides what a pool shares), so the 5-shot prompts of
    one subject form a cluster rather than merge with another subject over the instruction
    words they share. A key that shares nothing is a cluster of its own."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    cluster = [0] * len(keys)
    number, first, common, size = -1, b"", 0, 0
    for i in order:
        tokens = len(keys[i]) // _WIDTH
        if size:
            n = common_tokens(first, keys[i], min(common, tokens - 1))
            if n >= SHARED_PREFIX_MIN and (size == 1 or 2 * n >= common):
                cluster[i], common, size = number, n, size + 1
                continue
        number, first, common, size = number + 1, keys[i], tokens - 1, 1
        cluster[i] = number
    return cluster


def pick_pool(waiting: Sequence[T], cluster_of: Callable[[T], int], length_of: Callable[[T], int],
              room_of: Callable[[T], int], rows_for: Callable[[int, int], int]) -> list[T]:
    """The requests of the next pool, from `waiting` (longest first): whole clusters in the
    order of their longest request while the pool holds at most `rows_for(longest prompt,
    most new tokens)` rows; the first cluster is cut, longest first, when it alone is larger.
    Never empty when `waiting` is not."""
    clusters: dict[int, list[T]] = {}
    for item in waiting:
        clusters.setdefault(cluster_of(item), []).append(item)
    pool: list[T] = []
    longest = room = 0
    for members in clusters.values():
        top = max(longest, length_of(members[0]))
        extra = max([room] + [room_of(m) for m in members])
        if len(pool) + len(members) <= rows_for(top, extra):
            pool += members
            longest, room = top, extra
        elif not pool:
            end, room = 1, room_of(members[0])
            while end < len(members) and end + 1 <= rows_for(top, max(room, room_of(members[end]))):
                room = max(room, room_of(members[end]))
                end += 1
            return list(members[:end])
    return pool
