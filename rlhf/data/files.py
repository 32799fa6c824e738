"""Rows from local data files, with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path


class DataError(ValueError):
    """Missing, malformed or empty data; the message names the file (and line)."""


def read_rows(path: str, split: str = "train") -> list[dict]:
    """Rows of a .jsonl, .json (list of objects) or .parquet file, or of split `split` of a
    Hugging Face hub dataset named `owner/name` (needs a network)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise DataError(f"{path} is a directory: give a .jsonl, .json or .parquet file")
    if not p.is_file():
        if "/" in path and not p.suffix and not p.exists():
            return _hub_rows(path, split)
        raise DataError(f"data file not found: {path}")
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if suffix in (".jsonl", ".jsonl.gz"):
        rows = _read_jsonl(p)
    elif suffix == ".json":
        try:
            rows = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: byte {e.start} is not UTF-8 ({e.reason})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: expected a JSON list of objects")
    elif suffix == ".parquet":
        rows = _read_parquet(p)
    else:
        raise DataError(f"{path}: unsupported data format '{suffix}' (use .jsonl, .json or .parquet)")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _hub_rows(name: str, split: str) -> list[dict]:
    import datasets

    try:
        rows = datasets.load_dataset(name, split=split).to_list()
    except Exception as e:  # offline, unknown name or split: one line that says which
        raise DataError(f"{name}: not a local file, and loading it from the Hugging Face hub failed "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not rows:
        raise DataError(f"{name} ({split}): no rows")
    return rows


def _read_parquet(p: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(p).to_pylist()
    except Exception as e:  # noqa: BLE001  (pyarrow raises several kinds for a file that is not parquet)
        raise DataError(f"{p}: not a readable parquet file ({type(e).__name__}: {str(e).splitlines()[0][:200]})") \
            from None


def _read_jsonl(p: Path) -> list[dict]:
    import gzip

    opener = gzip.open if p.suffix == ".gz" else open
    rows = []
    with opener(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{p}:{lineno}: byte {e.start + 1} of the line is not UTF-8 ({e.reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{p}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def require_columns(rows: list[dict], columns: list[str], source: str) -> None:
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise DataError(f"{source}: row {i + 1} has no column {', '.join(repr(c) for c in missing)} "
                            f"(columns: {', '.join(row)}); map yours with data.*_key (see --help)")
