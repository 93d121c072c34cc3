"""Matching found sources to injected ones in pixel space, for the finder tests."""

from __future__ import annotations

import numpy as np

MATCH_RADIUS_PX = 2.0


def match_count(truth_xy: np.ndarray, found_xy: np.ndarray, radius_px: float = MATCH_RADIUS_PX) -> int:
    """Greedy one-to-one matching, closest pairs first; the number of pairs within the radius."""
    if len(truth_xy) == 0 or len(found_xy) == 0:
        return 0
    dist = np.hypot(*(truth_xy[:, None, :] - found_xy[None, :, :]).transpose(2, 0, 1))
    used_t: set[int] = set()
    used_f: set[int] = set()
    for flat in np.argsort(dist, axis=None):
        t, f = np.unravel_index(flat, dist.shape)
        if dist[t, f] > radius_px:
            break
        if t not in used_t and f not in used_f:
            used_t.add(int(t))
            used_f.add(int(f))
    return len(used_t)
