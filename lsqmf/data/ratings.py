"""The observed entries of a partially observed matrix.

A :class:`Ratings` holds the observed entries of an ``(n_rows, n_cols)`` matrix as COO triplets
``(rows, cols, values)`` sorted in row-major order, optional per-entry weights, and optional id
maps from row/column indices back to the caller's raw ids (user and item ids of a ratings
table). Rows are users and columns are items throughout lsqmf.

Nothing here ever builds an ``n_rows x n_cols`` array: memory and time are linear in the number
of observed entries (the dense constructor reads a dense array the caller already has).

Builders
--------
- :meth:`Ratings.from_dense`: NaN marks a missing entry; ``missing=0`` selects the convention
  where 0 means unobserved.
- :meth:`Ratings.from_sparse`: every stored entry of a ``scipy.sparse`` matrix or array is
  observed, explicit zeros included.
- :meth:`Ratings.from_frame`: a pandas DataFrame with user, item and rating columns and
  arbitrary ids.
- :meth:`Ratings.from_triplets`: index arrays and values.
- :func:`as_ratings`: dispatch on the type of its argument.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .._validation import describe

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Ratings", "as_mask", "as_ratings", "lookup_ids"]


#: The largest index an int64 holds.
_MAX_INDEX = np.iinfo(np.int64).max


def _as_index_array(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as err:
        raise TypeError(f"`{name}` must be a 1-d array of integer indices; got "
                        f"{describe(values)} ({err}).") from None
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-dimensional; got shape {arr.shape}.")
    if arr.dtype == object and arr.size and all(isinstance(v, int) for v in arr.tolist()):
        big = [v for v in arr.tolist() if not -_MAX_INDEX <= v <= _MAX_INDEX]
        if big:  # Python ints beyond int64: numpy would wrap them
            raise ValueError(f"`{name}` indices must be < 2**63; got {big[0]}.")
        arr = arr.astype(np.int64)
    if arr.size and arr.dtype == np.uint64 and int(arr.max()) > _MAX_INDEX:
        raise ValueError(f"`{name}` indices must be < 2**63; got {int(arr.max())}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(
            arr == np.round(arr)
        ):
            if np.abs(arr).max() >= 2.0**63:  # the cast would wrap
                raise ValueError(
                    f"`{name}` indices must be < 2**63; got {arr.flat[np.abs(arr).argmax()]:g}."
                )
            arr = arr.astype(np.int64)
        else:
            raise TypeError(
                f"`{name}` must hold integer indices; got dtype {arr.dtype}. "
                "Use Ratings.from_frame for arbitrary (string or non-contiguous) ids."
            )
    return arr.astype(np.int64, copy=False)


def _check_values(values_in: Any, len_rows: int, len_cols: int) -> np.ndarray:
    """The rating values as a 1-d float array of the same length as the indices."""
    if np.iscomplexobj(values_in):
        raise TypeError("rating values must be real numbers; got complex values.")
    try:
        values = np.asarray(values_in, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"rating values must be real numbers; got {describe(values_in)}."
        ) from err
    if values.ndim != 1:
        raise ValueError(f"rating values must be 1-dimensional; got shape {values.shape}.")
    if not (len_rows == len_cols == len(values)):
        raise ValueError(
            "`rows`, `cols` and `values` must have the same length; got "
            f"{len_rows}, {len_cols} and {len(values)}."
        )
    return values


def _check_shape(shape: Any) -> tuple[int, int]:
    """``(n_rows, n_cols)`` from a pair of positive ints."""
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 2
        or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape)
    ):
        raise TypeError(f"`shape` must be a pair of ints (n_rows, n_cols); got {shape!r}.")
    n_rows, n_cols = int(shape[0]), int(shape[1])
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"`shape` must be positive in both dimensions; got {shape!r}.")
    return n_rows, n_cols


#: The largest rating magnitude accepted: squared and summed over up to 10^8 ratings, it
#: stays far below float64's limit.
MAX_RATING = 1e150


def _check_entries(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int,
                   n_cols: int) -> None:
    """At least one entry, finite values, every index inside the shape."""
    if len(values) == 0:
        raise ValueError("the ratings are empty: there is no observed entry to fit.")
    bad = ~np.isfinite(values)
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"rating values must be finite; {int(bad.sum())} are NaN or infinite "
            f"(first at row {rows[t]}, column {cols[t]}: {values[t]})."
        )
    top = float(np.abs(values).max())
    if top > MAX_RATING:  # their squares (the cost) would overflow float64
        t = int(np.abs(values).argmax())
        raise ValueError(
            f"rating values must be at most {MAX_RATING:g} in magnitude (the cost sums their "
            f"squares in float64, whose largest value is 1.8e308); got {values[t]:g} at row "
            f"{rows[t]}, column {cols[t]}. Divide the ratings by a power of ten first."
        )
    for name, idx, size in (("row", rows, n_rows), ("column", cols, n_cols)):
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0:
            raise ValueError(f"{name} indices must be >= 0; got {lo}.")
        if hi >= size:
            raise ValueError(
                f"{name} indices must be < {size} (the {name} count of `shape`); got {hi}."
            )


def _check_weights(weights_in: Any, values: np.ndarray) -> np.ndarray | None:
    """The weights as a float array (one finite, non-negative entry per value), or None."""
    if weights_in is None:
        return None
    try:
        weights = np.asarray(weights_in, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`weights` must be real numbers; got {describe(weights_in)}."
        ) from err
    if weights.shape != values.shape:
        raise ValueError(
            f"`weights` must have one entry per observed rating ({len(values)}); "
            f"got shape {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("`weights` must be finite and >= 0.")
    if not np.any(weights > 0):
        raise ValueError("`weights` must not all be zero.")
    return weights


def _check_no_duplicates(rows: np.ndarray, cols: np.ndarray, row_ids: Any,
                         col_ids: Any) -> None:
    """Raise on a repeated ``(row, col)`` pair of the sorted triplets, naming the first."""
    dup = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
    if dup.any():
        t = int(np.flatnonzero(dup)[0])
        r, c = int(rows[t]), int(cols[t])
        where = f"row {r}, column {c}"
        if row_ids is not None and col_ids is not None:
            user, item = (_plain(ids[i]) for ids, i in ((row_ids, r), (col_ids, c)))
            where = f"user {user!r}, item {item!r}"
        raise ValueError(
            f"the ratings contain {int(dup.sum())} duplicate (row, column) pair(s), "
            f"first at {where}; aggregate them (e.g. keep the last or the mean) first."
        )


@dataclass(frozen=True, eq=False, repr=False)
class Ratings:
    """Observed entries of an ``(n_rows, n_cols)`` matrix as sorted COO triplets.

    Parameters
    ----------
    rows, cols : ndarray of int, shape (nnz,)
        Row (user) and column (item) index of each observed entry.
    values : ndarray of float, shape (nnz,)
        Observed values; must be finite.
    shape : tuple of int
        ``(n_rows, n_cols)``; every index must lie inside it.
    weights : ndarray of float, shape (nnz,), optional
        Non-negative weight of each entry in the data term of the objective.
    row_ids, col_ids : ndarray, optional
        Raw id of each row index and of each column index (length ``n_rows`` / ``n_cols``).

    Notes
    -----
    The triplets are sorted in row-major order (by row, then column) on construction, so the
    residual vector of every problem built from a ``Ratings`` has a well-defined order and does
    not depend on the order in which the entries were given. Duplicate ``(row, col)`` pairs are
    an error.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    weights: np.ndarray | None = None
    row_ids: np.ndarray | None = None
    col_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        rows = _as_index_array("rows", self.rows)
        cols = _as_index_array("cols", self.cols)
        values = _check_values(self.values, len(rows), len(cols))
        n_rows, n_cols = _check_shape(self.shape)
        _check_entries(rows, cols, values, n_rows, n_cols)
        weights = _check_weights(self.weights, values)
        order = np.lexsort((cols, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        if weights is not None:
            weights = weights[order]
        _check_no_duplicates(rows, cols, self.row_ids, self.col_ids)
        id_maps = (("row_ids", self.row_ids, n_rows), ("col_ids", self.col_ids, n_cols))
        for name, ids, size in id_maps:
            if ids is not None and len(ids) != size:
                raise ValueError(f"`{name}` must have length {size}; got {len(ids)}.")
        for name, arr in (("rows", rows), ("cols", cols), ("values", values), ("weights", weights)):
            if arr is not None:
                arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "shape", (n_rows, n_cols))
        for name in ("row_ids", "col_ids"):
            ids = getattr(self, name)
            if ids is not None:
                ids = np.asarray(ids)
                ids.setflags(write=False)
                object.__setattr__(self, name, ids)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_triplets(
        cls,
        rows: Any,
        cols: Any,
        values: Any,
        shape: tuple[int, int] | None = None,
        *,
        weights: Any = None,
    ) -> Ratings:
        """Build from index arrays; ``shape`` defaults to one past the largest indices."""
        rows = _as_index_array("rows", rows)
        cols = _as_index_array("cols", cols)
        if shape is None:
            if rows.size == 0:
                raise ValueError("the ratings are empty: there is no observed entry to fit.")
            shape = (int(rows.max()) + 1, int(cols.max()) + 1)
        return cls(rows, cols, values, tuple(shape), weights=weights)  # type: ignore[arg-type]

    @classmethod
    def from_dense(
        cls,
        array: Any,
        *,
        missing: float | None = None,
        weights: Any = None,
        mask: Any = None,
    ) -> Ratings:
        """Build from a dense 2-D array.

        Parameters
        ----------
        array : array_like, shape (n_rows, n_cols)
            NaN marks a missing entry.
        missing : float, optional
            A value that also marks a missing entry (``missing=0`` is the convention where 0
            means unobserved). Without it, an array with zeros and no NaN is taken as fully
            observed, with a warning.
        weights : array_like, shape (n_rows, n_cols), optional
            Weight of each entry; read only at observed entries.
        mask : array_like of bool or of 0/1 integers, shape (n_rows, n_cols), optional
            Visibility mask of a measurement matrix (any integer dtype holding only 0 and 1,
            e.g. MATLAB's ``uint8``, is read as ``mask == 1``): exactly the entries where it
            is True are observed, whatever ``array`` holds elsewhere (NaN included); the values
            where it is True must be finite. Not combined with ``missing``.

        Notes
        -----
        A ``numpy.ma.MaskedArray`` keeps its meaning: its masked entries are missing (as if
        NaN; with ``mask=`` too, an entry is observed where ``mask`` is True and the array
        does not mask it).
        """
        if isinstance(array, np.ma.MaskedArray):
            array, mask = _unmask(array, mask)
        if mask is not None:
            return cls._from_masked(array, mask, missing=missing, weights=weights)
        arr = _as_float_array(array)
        if arr.ndim != 2:
            raise ValueError(f"`R` must be 2-dimensional; got shape {arr.shape}.")
        if arr.size == 0:
            raise ValueError(f"`R` is empty (shape {arr.shape}).")
        if np.isinf(arr).any():
            raise ValueError(
                f"`R` has {int(np.isinf(arr).sum())} infinite value(s); use NaN for missing."
            )
        observed = ~np.isnan(arr)
        if missing is not None:
            if isinstance(missing, bool) or not isinstance(missing, int | float | np.number):
                raise TypeError(f"`missing` must be a number or None; got {describe(missing)}.")
            if np.isnan(missing):
                pass
            else:
                observed &= arr != missing
        elif observed.all() and (arr == 0).any():
            warnings.warn(
                "`R` has zeros and no NaN, so every entry (zeros included) is treated as "
                "observed. Mark missing entries with NaN, or pass missing=0 if 0 means "
                "unobserved.",
                UserWarning,
                stacklevel=3,
            )
        rows, cols = np.nonzero(observed)
        if rows.size == 0:
            raise ValueError("`R` has no observed entry (all entries are missing).")
        w = _observed_weights(weights, arr.shape, rows, cols)
        return cls(rows, cols, arr[rows, cols], arr.shape, weights=w)  # type: ignore[arg-type]

    @classmethod
    def _from_masked(cls, array: Any, mask: Any, *, missing: Any, weights: Any) -> Ratings:
        """:meth:`from_dense` with an explicit visibility ``mask``."""
        if missing is not None:
            raise ValueError(
                "`missing` and `mask` cannot be combined: with a `mask`, exactly its True "
                f"entries are observed; got missing={missing!r}."
            )
        arr = _as_float_array(array)
        if arr.ndim != 2 or arr.size == 0:
            raise ValueError(f"`R` must be a non-empty 2-D array; got shape {arr.shape}.")
        m_arr = as_mask(mask)
        if m_arr.shape != arr.shape:
            raise ValueError(f"`mask` must have the shape of `R` {arr.shape}; got {m_arr.shape}.")
        rows, cols = np.nonzero(m_arr)
        if rows.size == 0:
            raise ValueError("`mask` has no True entry: nothing is observed.")
        values = arr[rows, cols]
        bad = ~np.isfinite(values)
        if bad.any():
            t = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"`R` must be finite where `mask` is True; {int(bad.sum())} such value(s) are "
                f"NaN or infinite (first at row {rows[t]}, column {cols[t]})."
            )
        w = _observed_weights(weights, arr.shape, rows, cols)
        return cls(rows, cols, values, arr.shape, weights=w)  # type: ignore[arg-type]

    @classmethod
    def from_sparse(cls, matrix: Any, *, weights: Any = None) -> Ratings:
        """Build from a ``scipy.sparse`` matrix or array; stored entries are observed.

        Explicit zeros are observed entries, except in BSR and DIA matrices, whose blocks and
        diagonals are padded with zeros: there only nonzeros are ratings. Every format is
        accepted (csr, csc, coo, bsr, dia, lil, dok; matrices and arrays). ``weights``, if
        given, is a 1-D array aligned with the matrix's COO entries (``matrix.tocoo()`` order)
        or a sparse matrix storing a weight at every stored entry of the matrix (a
        ``ValueError`` names the first one without; weights stored elsewhere are unused).
        """
        if not sp.issparse(matrix):
            raise TypeError(f"`R` must be a scipy.sparse matrix; got {describe(matrix)}.")
        if matrix.ndim != 2:
            raise ValueError(f"`R` must be 2-dimensional; got shape {matrix.shape}.")
        coo = _sparse_entries(matrix)
        w = None
        if weights is not None:
            w = _sparse_weights(weights, coo) if sp.issparse(weights) else weights
        if coo.nnz == 0:
            raise ValueError("`R` has no stored entry: there is no observed rating to fit.")
        return cls(coo.row, coo.col, coo.data, tuple(coo.shape), weights=w)  # type: ignore[arg-type]

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user: str = "user",
        item: str = "item",
        rating: str = "rating",
        weight: str | None = None,
        row_ids: Any = None,
        col_ids: Any = None,
    ) -> Ratings:
        """Build from a DataFrame with user, item and rating columns and arbitrary ids.

        Parameters
        ----------
        frame : pandas.DataFrame
        user, item, rating : str
            Column names.
        weight : str, optional
            Column of per-rating weights.
        row_ids, col_ids : array_like, optional
            The id universe to index against (e.g. the training set's ids, so that a test set
            shares its indices); ids in ``frame`` outside it are an error. By default the sorted
            unique ids of ``frame``.
        """
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"`R` must be a pandas DataFrame; got {describe(frame)}.")
        for arg, col in (("user", user), ("item", item), ("rating", rating), ("weight", weight)):
            if col is not None and col not in frame.columns:
                raise ValueError(
                    f"`{arg}` column {col!r} is not in the DataFrame; columns are "
                    f"{list(frame.columns)}."
                )
        used = [c for c in (user, item, rating, weight) if c is not None]
        repeated = sorted({str(c) for c in used if int((frame.columns == c).sum()) > 1})
        if repeated:
            raise ValueError(f"the DataFrame has more than one column named {repeated}; "
                             "rename or drop the duplicates.")
        if len(frame) == 0:
            raise ValueError("the DataFrame is empty: there is no observed rating to fit.")
        rows, row_ids = _encode(frame[user], row_ids, "user")
        cols, col_ids = _encode(frame[item], col_ids, "item")
        try:
            values = pd.to_numeric(frame[rating], errors="raise").to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"the `rating` column {rating!r} must be numeric.") from err
        try:
            w = (None if weight is None else
                 pd.to_numeric(frame[weight], errors="raise").to_numpy(dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"the `weights` column {weight!r} must be numeric.") from err
        return cls(
            rows, cols, values, (len(row_ids), len(col_ids)), weights=w,
            row_ids=row_ids, col_ids=col_ids,
        )

    # ------------------------------------------------------------------ views
    @property
    def nnz(self) -> int:
        """Number of observed entries."""
        return len(self.values)

    @property
    def density(self) -> float:
        """Fraction of the matrix that is observed."""
        return self.nnz / (self.shape[0] * self.shape[1])

    def row_counts(self) -> np.ndarray:
        """Number of observed entries in each row, shape ``(n_rows,)``."""
        return np.bincount(self.rows, minlength=self.shape[0])

    def col_counts(self) -> np.ndarray:
        """Number of observed entries in each column, shape ``(n_cols,)``."""
        return np.bincount(self.cols, minlength=self.shape[1])

    def mean(self) -> float:
        """(Weighted) mean of the observed values."""
        if self.weights is None:
            return float(self.values.mean())
        return float(np.average(self.values, weights=self.weights))

    def to_sparse(self) -> sp.csr_array:
        """The observed entries as a CSR array (explicit zeros kept)."""
        return sp.csr_array((self.values, (self.rows, self.cols)), shape=self.shape)

    def to_frame(self, *, raw_ids: bool = True) -> pd.DataFrame:
        """The observed entries as a DataFrame with columns user, item, rating (and weight)."""
        import pandas as pd

        users = self.row_ids[self.rows] if raw_ids and self.row_ids is not None else self.rows
        items = self.col_ids[self.cols] if raw_ids and self.col_ids is not None else self.cols
        data = {"user": users, "item": items, "rating": self.values}
        if self.weights is not None:
            data["weight"] = self.weights
        return pd.DataFrame(data)

    def subset(self, index: Any) -> Ratings:
        """The entries selected by a boolean mask or integer index, same shape and id maps."""
        idx = np.asarray(index)
        w = None if self.weights is None else self.weights[idx]
        return Ratings(
            self.rows[idx], self.cols[idx], self.values[idx], self.shape, weights=w,
            row_ids=self.row_ids, col_ids=self.col_ids,
        )

    def with_weights(self, weights: Any) -> Ratings:
        """A copy with per-entry weights (aligned with the sorted triplets)."""
        return Ratings(
            self.rows, self.cols, self.values, self.shape, weights=weights,
            row_ids=self.row_ids, col_ids=self.col_ids,
        )

    def row_index(self, ids: Any) -> np.ndarray:
        """Row index of each raw user id; -1 where the id is unknown."""
        return lookup_ids(self.row_ids, ids, self.shape[0])

    def col_index(self, ids: Any) -> np.ndarray:
        """Column index of each raw item id; -1 where the id is unknown."""
        return lookup_ids(self.col_ids, ids, self.shape[1])

    def __repr__(self) -> str:
        ids = ", with id maps" if self.row_ids is not None else ""
        w = ", weighted" if self.weights is not None else ""
        return (
            f"Ratings(shape={self.shape}, nnz={self.nnz}, density={self.density:.4g}{w}{ids})"
        )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _encode(column: Any, universe: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Map raw ids to indices ``0..len(universe)-1``."""
    import pandas as pd

    if column.isna().any():
        raise ValueError(f"the {what} id column has {int(column.isna().sum())} missing id(s).")
    if universe is None:
        try:
            codes, uniques = pd.factorize(column, sort=True)
        except TypeError:  # ids of mixed, unorderable types: order of first appearance
            codes, uniques = pd.factorize(column, sort=False)
        return np.asarray(codes, dtype=np.int64), np.asarray(uniques)
    universe = np.asarray(universe)
    codes = pd.Index(universe).get_indexer(column)
    if (codes < 0).any():
        unknown = column[codes < 0].iloc[0]
        raise ValueError(
            f"{int((codes < 0).sum())} {what} id(s) are not in the given id map, "
            f"first {unknown!r}."
        )
    return codes.astype(np.int64), universe


def _unmask(array: np.ma.MaskedArray, mask: Any) -> tuple[Any, Any]:
    """A masked array as plain values (masked entries NaN) and the visibility ``mask``
    (masked entries not visible); inputs that are invalid anyway pass through for the usual
    checks and messages."""
    hidden = np.ma.getmaskarray(array)
    data = np.ma.getdata(array)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype.kind in "biu" and m.shape == hidden.shape:
            try:
                return data, as_mask(m) & ~hidden
            except ValueError:
                pass  # values other than 0/1: reported by the usual check
        return data, mask
    if np.iscomplexobj(data) or data.dtype.kind not in "biuf":
        return data, None
    values = np.array(data, dtype=np.float64)
    values[hidden] = np.nan
    return values, None


def as_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """A visibility mask as a boolean array: booleans, or integers holding only 0 and 1.

    MATLAB stores visibility as ``logical`` or ``uint8``/``double`` 0/1 arrays; a 0/1 array of
    any integer dtype is read as ``mask == 1``.

    Raises
    ------
    TypeError
        For a mask that is not boolean or integer (floats, objects, strings).
    ValueError
        For an integer mask holding a value other than 0 and 1 (the values are shown).
    """
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"`{name}` must be a boolean array, or integers holding only 0 and 1 (1 = observed);"
            f" got {describe(mask)}."
        )
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise ValueError(
            f"`{name}` must hold only 0 and 1 (1 = observed); got {int(bad.sum())} other "
            f"value(s): {shown}."
        )
    return arr == 1


def _as_float_array(array: Any) -> np.ndarray:
    """A dense ``R`` as float64; TypeError for complex or non-numeric input."""
    try:
        complex_ = np.iscomplexobj(array)
        if not complex_:
            return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as err:  # also ragged nested lists
        raise TypeError(f"`R` must be a numeric array; got {describe(array)} "
                        f"({' '.join(str(err).split())[:120]}).") from err
    raise TypeError("`R` must hold real numbers; got a complex array.")


def _sparse_entries(matrix: Any) -> Any:
    """The stored entries of a sparse ``R`` as COO. BSR blocks and DIA
    diagonals store padding zeros: there, only nonzeros are ratings."""
    coo = matrix.tocoo()  # dok, lil, ... have no .data of their own
    if np.iscomplexobj(coo.data):
        raise TypeError("`R` must hold real numbers; got a complex sparse matrix.")
    if matrix.format in ("bsr", "dia"):
        coo.eliminate_zeros()
    return coo


def _sparse_weights(weights: Any, coo: Any) -> np.ndarray:
    """A sparse ``weights`` at the entries of ``coo``: each observed rating needs one (a
    weight stored elsewhere is not used)."""
    if weights.shape != coo.shape:
        raise ValueError(f"`weights` must have the shape of `R` {coo.shape}; got "
                         f"{weights.shape}.")
    wc = weights.tocsr()
    stored = sp.csr_array((np.ones(wc.nnz), wc.indices, wc.indptr), shape=wc.shape)
    has = np.asarray(stored[coo.row, coo.col]).ravel() > 0
    if not has.all():
        t = int(np.flatnonzero(~has)[0])
        raise ValueError(
            f"`weights` as a sparse matrix must store a weight at every stored entry of `R`; "
            f"{int((~has).sum())} have none (first at row {coo.row[t]}, column {coo.col[t]})."
            " Store explicit zeros for ratings to ignore."
        )
    return np.asarray(sp.csr_array(wc)[coo.row, coo.col], dtype=np.float64).ravel()


def _observed_weights(weights: Any, shape: tuple[int, ...], rows: np.ndarray,
                      cols: np.ndarray) -> np.ndarray | None:
    """The dense ``weights`` (shape of ``R``) at the observed entries; None without."""
    if weights is None:
        return None
    try:
        w_arr = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`weights` must be real numbers; got {describe(weights)}.") from err
    if w_arr.shape != shape:
        raise ValueError(f"`weights` must have the shape of `R` {shape}; got {w_arr.shape}.")
    return w_arr[rows, cols]


def lookup_ids(universe: np.ndarray | None, ids: Any, size: int) -> np.ndarray:
    """Index of each raw id in ``universe`` (-1 where unknown); without a universe, ids are
    indices and those outside ``[0, size)`` map to -1."""
    ids = np.atleast_1d(np.asarray(ids))
    if universe is None:
        if not np.issubdtype(ids.dtype, np.integer):
            return np.full(ids.shape, -1, dtype=np.int64)
        out = ids.astype(np.int64)
        out[(out < 0) | (out >= size)] = -1
        return out
    universe = np.asarray(universe)
    if universe.dtype.kind in "iu" and ids.dtype == universe.dtype and universe.size:
        # integer ids: a sorted search (no Python loop, no pandas import)
        order = np.argsort(universe, kind="stable")
        ranked = universe[order]
        pos = np.minimum(np.searchsorted(ranked, ids), ranked.size - 1)
        return np.where(ranked[pos] == ids, order[pos], -1).astype(np.int64)
    index = {v: i for i, v in enumerate(universe.tolist())}
    return np.fromiter(
        (index.get(v, -1) for v in ids.ravel().tolist()), dtype=np.int64, count=ids.size
    ).reshape(ids.shape)


def as_ratings(
    R: Any,
    *,
    missing: float | None = None,
    weights: Any = None,
    user: str = "user",
    item: str = "item",
    rating: str = "rating",
    mask: Any = None,
) -> Ratings:
    """Turn any accepted input into :class:`Ratings`.

    Accepts a :class:`Ratings` (returned as is, or with ``weights``), a dense array (NaN or
    ``missing`` marks unobserved; or a boolean or 0/1 integer ``mask`` of the observed entries, see
    :meth:`Ratings.from_dense`), a ``scipy.sparse`` matrix/array, or a pandas DataFrame.
    """
    if mask is not None:
        if isinstance(R, Ratings) or sp.issparse(R) or type(R).__name__ == "DataFrame":
            raise ValueError(
                "`mask` applies to dense arrays only (a measurement matrix and its visibility "
                f"mask); got `R` of type {type(R).__name__}."
            )
        return Ratings.from_dense(R, missing=missing, weights=weights, mask=mask)
    if isinstance(R, Ratings):
        if missing is not None:
            raise ValueError("`missing` applies to dense arrays only; `R` is already Ratings.")
        return R if weights is None else R.with_weights(weights)
    if sp.issparse(R):
        if missing is not None:
            raise ValueError(
                "`missing` applies to dense arrays only; in a sparse `R` every stored entry "
                "is observed."
            )
        return Ratings.from_sparse(R, weights=weights)
    if type(R).__name__ == "DataFrame":
        if missing is not None:
            raise ValueError("`missing` applies to dense arrays only; `R` is a DataFrame.")
        if weights is not None and not isinstance(weights, str):
            raise TypeError("with a DataFrame `R`, `weights` must be the name of a column.")
        return Ratings.from_frame(R, user=user, item=item, rating=rating, weight=weights)
    if isinstance(R, np.ndarray | list | tuple) or hasattr(R, "__array__"):
        return Ratings.from_dense(R, missing=missing, weights=weights)
    raise TypeError(
        "`R` must be a dense array (NaN = missing), a scipy.sparse matrix, a pandas DataFrame "
        f"or lsqmf.Ratings; got {describe(R)}."
    )
