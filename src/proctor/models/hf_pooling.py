"""Which waiting requests of a local model run together in one pool: those that begin alike.

A pool shares the prompt tokens its rows begin with (hf_prefill): the few-shot examples of a
subject run once for all its questions in the pool. Taking the longest waiting requests
instead scatters a subject over pools by question length: in `mmlu_gen --limit 5` (57
subjects x 5 questions, 5-shot, chat template) a pool of the 32 longest prompts held rows of
20 subjects that share only the instruction's first words, and 163k prompt tokens ran
where 72k would do. So requests are clustered by shared prefix (`shared_prefixes`, the rule
hf_prefill shares by, on every waiting request), and a pool takes whole clusters:
the one with the longest request first (an out-of-memory shows up at once), then the next
longest that fit in what is left; a cluster larger than a whole pool is cut, longest first.
Which requests share a pool never changes an answer (tests/test_hf_generate_pool.py).
"""

from __future__ import annotations

from array import array
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

SHARED_PREFIX_MIN = 8  # tokens: a shorter common prefix is not worth a pass of its own
_WIDTH = array("i").itemsize  # bytes per token in a prefix key


def prefix_key(ids: Sequence[int]) -> bytes:
    """The tokens as bytes, a fixed width each: sequences that begin with the same k tokens
    begin with the same k * width bytes, so sorting keys puts them side by side, and bytes
    compare in C (a sort of token tuples is ~100x slower on 5-shot prompts)."""
    return array("i", ids).tobytes()


def common_tokens(a: bytes, b: bytes, most: int) -> int:
    """How many first tokens (at most `most`) two prefix keys have in common."""
    lo, hi = 0, max(0, min(most, len(a) // _WIDTH, len(b) // _WIDTH))
    while lo < hi:  # the largest n with equal first n tokens: binary search on slices
        mid = (lo + hi + 1) // 2
        if a[: mid * _WIDTH] == b[: mid * _WIDTH]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def shared_keys(keys: Sequence[bytes]) -> list[tuple[int, int]]:
    """For each key, (index of the first key of its cluster, the tokens the cluster shares),
    or (i, 0) when it shares nothing worth a pass of its own.

    Keys are clustered in sorted order; a cluster keeps a common prefix of at least
    SHARED_PREFIX_MIN tokens, a newcomer may shorten it at most by half, and a newcomer that
    shares more than twice as much with the key after it starts a cluster with that one
    instead. So the 5-shot prompts of one subject stay together rather than shrink to the
    instruction words they share with another subject, or with a lone prompt sorted before
    them. The last token is never shared: its logits start decoding.
    """
    n = len(keys)
    order = sorted(range(n), key=keys.__getitem__)
    tokens = [len(k) // _WIDTH for k in keys]
    ahead = [common_tokens(keys[a], keys[b], min(tokens[a], tokens[b]) - 1)
             for a, b in zip(order, order[1:])] + [0]
    out = [(i, 0) for i in range(n)]
    cluster: list[int] = []
    common = 0

    def close() -> None:
        if len(cluster) > 1 and common >= SHARED_PREFIX_MIN:
            for i in cluster:
                out[i] = (cluster[0], common)

    for pos, i in enumerate(order):
        if cluster:
            shared = common_tokens(keys[cluster[0]], keys[i], min(common, tokens[i] - 1))
            if shared >= SHARED_PREFIX_MIN and (len(cluster) == 1 or 2 * shared >= common) \
                    and 2 * shared >= ahead[pos]:
                cluster.append(i)
                common = shared
                continue
            close()
        cluster, common = [i], tokens[i] - 1
    close()
    return out


def shared_prefixes(seqs: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """`shared_keys` of token sequences: for each, (index of a sequence, how many first tokens)
    it shares with others, to be computed once; (i, 0) when none is worth sharing."""
    return shared_keys([prefix_key(s) for s in seqs])


def prefix_clusters(keys: Sequence[bytes]) -> list[int]:
    """A cluster number per key (`shared_keys`'s clusters; a key sharing nothing is alone)."""
    return [source if length else i for i, (source, length) in enumerate(shared_keys(keys))]


def pick_pool(waiting: Sequence[T], cluster_of: Callable[[T], int], length_of: Callable[[T], int],
              room_of: Callable[[T], int], rows_for: Callable[[int, int], int]) -> list[T]:
    """The requests of the next pool, from `waiting` (longest first): whole clusters in the
    order of their longest request while the pool holds at most `rows_for(longest prompt,
    most new tokens)` rows; the first cluster is cut, longest first, when it alone is larger.
    A pool that whole clusters leave less than half full (the last rows of a large subject,
    the next subjects too large to join) is filled with the longest rows of the next
    clusters: a pool more to decode costs more than their examples run once more.
    Never empty when `waiting` is not."""
    clusters: dict[int, list[T]] = {}
    for item in waiting:
        clusters.setdefault(cluster_of(item), []).append(item)
    pool: list[T] = []
    left: list[list[T]] = []
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
        else:
            left.append(members)
    if 2 * len(pool) < rows_for(longest, room):
        for member in (m for members in left for m in members):
            top, extra = max(longest, length_of(member)), max(room, room_of(member))
            if len(pool) + 1 > rows_for(top, extra):
                break
            pool.append(member)
            longest, room = top, extra
    return pool
