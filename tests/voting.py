"""The crop stage's voting rule over whole descriptor sets in memory: the reference the tests compare
the crop stage (crops._keypoint_pairs), the search's votes and index.voted_pairs with."""

from __future__ import annotations

import numpy as np

from dedupe.index import (
    DESC_FLAT_LIMIT,
    MAX_DISTANCE,
    MIN_VOTES,
    _threads,
    exhaustive_index,
    inverted_lists,
    keypoint_votes,
    voted_pairs,
)


def keypoint_pairs(
    desc_sets: list[np.ndarray],
    labels: np.ndarray | None = None,
    max_distance: int = MAX_DISTANCE,
    min_votes: int = MIN_VOTES,
    top: int = 4,
) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of labels whose descriptor sets share many near-identical keypoints.

    Each set has a label (by default its own index; sets of copies of one picture share one). Each
    descriptor votes for the label owning its nearest neighbour under another label (within
    `max_distance` of 256 bits), so votes for a picture are not split between its copies; a pair needs
    `min_votes` votes both ways together, and each label keeps its `top` best partners.
    """
    sizes = np.array([len(d) for d in desc_sets], dtype=np.int64)
    labels = np.arange(len(desc_sets)) if labels is None else np.asarray(labels, dtype=np.int64)
    if len(np.unique(labels[sizes > 0])) < 2:
        return []
    owner = np.repeat(labels, sizes)
    data = np.ascontiguousarray(np.concatenate([d for d in desc_sets if len(d)]).astype(np.uint8, copy=False))
    index = exhaustive_index() if len(data) <= DESC_FLAT_LIMIT else inverted_lists(data, len(data))
    with _threads():
        index.add(data)
    a, b = keypoint_votes(index, data, owner, owner, max_distance)
    return voted_pairs(lambda: [(a, b)], min_votes, top)
