"""How many cameras each worker of a fleet should watch: every worker computes the same answer."""

from __future__ import annotations

import math


def fair_shares(capacities: dict[str, int], cameras: int) -> dict[str, int]:
    """Splits ``cameras`` over the workers in proportion to their capacities, none above its own.

    Deterministic (ties go by worker id), so workers that read the same registry agree without
    talking to each other. When the fleet is short of capacity every worker takes its capacity and
    the rest of the cameras stay unwatched.
    """
    workers = sorted(w for w, c in capacities.items() if c > 0)
    total = sum(capacities[w] for w in workers)
    if total <= cameras:
        return {w: capacities.get(w, 0) for w in capacities}
    quotas = {w: cameras * capacities[w] / total for w in workers}
    shares = {w: math.floor(q) for w, q in quotas.items()}
    left = cameras - sum(shares.values())
    for w in sorted(workers, key=lambda w: (-(quotas[w] - shares[w]), w))[:left]:
        shares[w] += 1
    return {w: shares.get(w, 0) for w in capacities}
