"""An attacker's solver for published tables: can a suppressed value be worked out from the
values shown with it?

Each published row counts (or sums) the units (episodes, sessions ...) that belong to it. Units
that belong to exactly the same rows form an *atom*; a row's value is the sum of its atoms'
values. The attacker knows every shown row's value and which atoms each row covers (from the
row labels), and that counts are non-negative. A suppressed row's value is *disclosed* when it
is the same in every non-negative solution of "shown rows = their values": found by linear
programming (its minimum equals its maximum). Values forced to 0 only because a shown row that
covers them is 0 are public already (a shown cell of at least the minimum size says "none of
these clients ..."), so they are not counted as disclosed.

For unbounded sums (e.g. a mean times its n), a suppressed row is disclosed when its atom
vector lies in the row space of the shown rows (linear algebra, no bounds).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def atoms(members: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``members``: rows x units booleans. The incidence matrix rows x atoms, and each atom's
    units (indices)."""
    signatures, inverse = np.unique(members.T, axis=0, return_inverse=True)
    keep = signatures.any(axis=1)  # units in no row are not an atom
    matrix = signatures[keep].T.astype(float)
    index = np.flatnonzero(keep)
    groups = [np.flatnonzero(inverse.ravel() == k) for k in index]
    return matrix, groups


def disclosed_counts(matrix: np.ndarray, atom_values: np.ndarray,
                     suppressed: np.ndarray) -> list[int]:
    """Suppressed rows whose count is the same in every non-negative solution."""
    shown = ~suppressed
    values = matrix @ atom_values
    public_zero = np.zeros(matrix.shape[1], dtype=bool)
    for i in np.flatnonzero(shown):
        if values[i] == 0:
            public_zero |= matrix[i] > 0
    free = ~public_zero
    a_eq, b_eq = matrix[shown][:, free], values[shown]
    out = []
    for i in np.flatnonzero(suppressed):
        c = matrix[i, free]
        if not c.any():
            continue  # every atom of the row is a public zero
        other = False
        for sign in (-1.0, 1.0):  # maximise, then minimise; the true value is feasible
            res = linprog(sign * c, A_eq=a_eq if len(b_eq) else None,
                          b_eq=b_eq if len(b_eq) else None, bounds=(0, None), method="highs")
            if res.status == 3 or (res.status == 0 and abs(sign * res.fun - values[i]) >= 0.5):
                other = True  # unbounded, or another value is possible
                break
            assert res.status == 0, res.message
        if not other:
            out.append(int(i))
    return out


def disclosed_sums(matrix: np.ndarray, suppressed: np.ndarray) -> list[int]:
    """Suppressed rows whose (unbounded) sum is a linear combination of the shown rows: their
    atom vector has no component outside the shown rows' row space."""
    shown = matrix[~suppressed]
    if shown.size:
        _, sv, vt = np.linalg.svd(shown, full_matrices=False)
        basis = vt[sv > 1e-9 * max(sv.max(), 1.0)]
    else:
        basis = np.zeros((0, matrix.shape[1]))
    rows = np.flatnonzero(suppressed)
    target = matrix[rows]
    residual = target - (target @ basis.T) @ basis
    return [int(i) for i, r, t in zip(rows, residual, target, strict=True)
            if t.any() and np.abs(r).max() < 1e-7]
