"""Snapshot file: build from registry JSONL, write atomically, read and verify.

Layout (docs/snapshot-format.md is the reference): a 50-byte header (magic, u16 version, u64 body length,
SHA-256 of the body) followed by a msgpack body whose per-record data are little-endian columns stored
as msgpack ``bin``. A reader checks header, length and checksum before unpacking anything.
"""

from __future__ import annotations

import hashlib
import operator
import os
import struct
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import msgpack

from eir.registry import (
    CLONED,
    CODE_HASH_BYTES,
    COLUMNS,
    HAS_OPERATOR_SIMS,
    ORIGIN_MASK,
    ORIGINS,
    STRING_TABLES,
    RegistryBuilder,
    RegistryData,
    RegistryError,
)

MAGIC: Final = b"EIRSNAP\0"
FORMAT_VERSION: Final = 1
#: Versions this code reads. A version is bumped by any change an older reader would misread.
SUPPORTED_VERSIONS: Final = frozenset({1})
_HEADER: Final = struct.Struct("<8sHQ32s")
HEADER_SIZE: Final = _HEADER.size  # 50
_TYPES: Final = {"B": ("u8", 1), "I": ("u32", 4), "q": ("i64", 8)}
# Columns that must have equal lengths (parallel columns of one table).
_GROUPS: Final = (
    ("dev_flags", "dev_owner", "dev_owner_since", "dev_model"),
    ("opsim_dev", "opsim_slot", "opsim_msisdn"),
    ("prereg_dev", "prereg_msisdn"),
    ("block_dev", "block_reason"),
    ("blacklist_imei", "blacklist_reason"),
    ("tac", "tac_brand", "tac_model"),
    ("sub_imsi", "sub_national_id", "sub_since", "sub_expired", "msisdn_key", "msisdn_row"),
    ("imsi_key", "imsi_msisdn"),
    ("trav_msisdn", "trav_msisdn_entered"),
    ("trav_nid", "trav_nid_entered"),
)
# Index columns that must point inside a string table or the device range.
_REFS: Final = (
    ("dev_model", "models"), ("block_reason", "reasons"), ("blacklist_reason", "reasons"),
    ("tac_brand", "tac_strings"), ("tac_model", "tac_strings"),
)  # fmt: skip
_DEV_REFS: Final = ("opsim_dev", "prereg_dev", "block_dev", "code_dev")


class SnapshotError(Exception):
    """A snapshot file that cannot be used: truncated, corrupted, wrong version, not a snapshot."""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot says about itself (header + body ``meta``)."""

    format_version: int
    created: int
    checksum: str
    counts: Mapping[str, int]
    sources: tuple[str, ...]
    generator: str
    skipped: int
    size: int
    #: The registry-change journal this snapshot already includes (eir snapshot export): its id and the
    #: last change ``seq``. (0, 0) for a snapshot built from registry files.
    journal_id: int = 0
    journal_seq: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A verified, decoded snapshot: metadata and registry columns."""

    meta: SnapshotMeta
    data: RegistryData


@dataclass(frozen=True, slots=True)
class BuildReport:
    """Outcome of :func:`build_snapshot`; ``errors`` is capped at 1000, ``n_errors`` is the full count."""

    out: Path
    meta: SnapshotMeta
    lines: int
    records: int
    errors: tuple[str, ...]
    n_errors: int
    elapsed: float


def _check_platform() -> None:
    # array typecodes are C types; the format fixes their widths, so refuse a platform that differs.
    for tc, (name, width) in _TYPES.items():
        if array(tc).itemsize != width:
            raise SnapshotError(f"this platform's array('{tc}') is not {width} bytes ({name})")


def _generator() -> str:
    try:
        return f"eir {metadata.version('eir')}"
    except metadata.PackageNotFoundError:
        return "eir"


def column_counts(data: RegistryData) -> dict[str, int]:
    """Counts derived from the columns (devices by flag, origin and ownership; table sizes)."""
    c = data.columns
    owned = cloned = with_sims = 0
    by_origin, unowned = [0] * len(ORIGINS), [0] * len(ORIGINS)
    # One C-speed pass over the device columns; the Python loop runs over at most 256 x 2 combinations.
    for (flags, is_owned), n in Counter(zip(c["dev_flags"], map(bool, c["dev_owner"]), strict=True)).items():
        by_origin[flags & ORIGIN_MASK] += n
        if is_owned:
            owned += n
        else:
            unowned[flags & ORIGIN_MASK] += n
        cloned += n if flags & CLONED else 0
        with_sims += n if flags & HAS_OPERATOR_SIMS else 0
    counts = {
        "devices": len(c["dev_flags"]), "imeis": len(c["imeis"]), "owned": owned, "cloned": cloned,
        "blocked_devices": len(c["block_dev"]), "blacklisted_imeis": len(c["blacklist_imei"]),
    }  # fmt: skip
    for code, origin in enumerate(ORIGINS):
        counts[f"origin_{origin}"] = by_origin[code]
        counts["unowned_pre_registry" if origin == "pre_registry" else f"not_activated_{origin}"] = unowned[code]
    counts.update({
        "pre_registry": counts["origin_pre_registry"],
        "operator_sims": len(c["opsim_dev"]), "devices_with_operator_sims": with_sims,
        "pre_registry_users": len(c["prereg_dev"]),
        "activation_codes": len(c["code_dev"]), "models": len(data.strings["models"]),
        "subscribers": len(c["msisdn_key"]), "subscribers_with_imsi": len(c["imsi_key"]),
        "subscribers_with_national_id": len(c["sub_national_id"]) - c["sub_national_id"].count(0),
        "subscribers_expired": c["sub_expired"].count(1), "tacs": len(c["tac"]),
    })  # fmt: skip
    return counts


def encode_snapshot(data: RegistryData, *, created: int, sources: list[str], skipped: int = 0,
                    journal: tuple[int, int] = (0, 0)) -> bytes:
    """The complete snapshot file for ``data`` (header + body)."""
    header, body, _ = _encode(data, created, sources, skipped, journal)
    return header + body


def _encode(data: RegistryData, created: int, sources: list[str], skipped: int,
            journal: tuple[int, int] = (0, 0)) -> tuple[bytes, bytes, dict[str, Any]]:
    _check_platform()
    meta = {"format_version": FORMAT_VERSION, "created": created, "generator": _generator(),
            "sources": sources, "skipped": skipped, "counts": {**data.counts, **column_counts(data)}}  # fmt: skip
    if journal != (0, 0):
        meta["journal"] = list(journal)
    columns = {}
    for name, tc in COLUMNS.items():
        col = data.columns[name]
        if sys.byteorder == "big":
            col = array(tc, col)
            col.byteswap()
        columns[name] = [_TYPES[tc][0], col.tobytes()]
    tree: dict[str, Any] = {
        "meta": meta,
        "columns": columns,
        "strings": {name: data.strings[name] for name in STRING_TABLES},
    }  # fmt: skip
    if data.transfers:
        # Optional key (older readers ignore it): pending transfers of an exported snapshot.
        tree["transfers"] = [list(t) for t in data.transfers]
    body: bytes = msgpack.packb(tree, use_bin_type=True)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(body), hashlib.sha256(body).digest())
    return header, body, meta


def write_snapshot(
    data: RegistryData, out: Path, *, created: int, sources: list[str], skipped: int = 0,
    journal: tuple[int, int] = (0, 0),
) -> SnapshotMeta:
    """Write ``data`` to ``out`` atomically (temp file in the same directory, fsync, rename)."""
    header, body, meta = _encode(data, created, sources, skipped, journal)
    out = Path(out)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        # Interrupted or failed: the destination is untouched and no stray temp file stays behind.
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)
    return _decode_meta(meta, header, len(header) + len(body))


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_header(header: bytes | memoryview, file_size: int, name: str) -> tuple[int, bytes]:
    if file_size < HEADER_SIZE:
        raise SnapshotError(f"{name}: truncated: {file_size} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, length, digest = _HEADER.unpack_from(header)
    if magic != MAGIC:
        raise SnapshotError(f"{name}: not an EIR snapshot (bad magic {bytes(magic)!r})")
    if version not in SUPPORTED_VERSIONS:
        raise SnapshotError(
            f"{name}: snapshot format version {version} is not supported (this eir reads "
            f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}); rebuild it with `eir snapshot build`"
        )
    body_size = file_size - HEADER_SIZE
    if body_size < length:
        raise SnapshotError(f"{name}: truncated: body has {body_size} of {length} bytes")
    if body_size > length:
        raise SnapshotError(f"{name}: {body_size - length} unexpected bytes after the body")
    return length, digest


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify a snapshot file; raises :class:`SnapshotError` (nothing is half-loaded)."""
    name = str(path)
    try:
        with Path(path).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = f.read(HEADER_SIZE)
            length, digest = _check_header(header, size, name)
            body = f.read(length)
    except OSError as exc:
        raise SnapshotError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(body) != length:  # the file shrank while we read it
        raise SnapshotError(f"{name}: truncated: body has {len(body)} of {length} bytes")
    tree = _unpack(body, digest, name)
    del body  # free the raw body before the columns are copied out of the tree (lower peak RSS)
    return _decode_tree(tree, header, size, name)


def decode_snapshot(buf: bytes | bytearray | memoryview, name: str = "<bytes>") -> Snapshot:
    """Verify and decode a snapshot held in memory (the bytes of a snapshot file)."""
    view = memoryview(buf).cast("B")
    _, digest = _check_header(view[:HEADER_SIZE], len(view), name)
    tree = _unpack(view[HEADER_SIZE:], digest, name)
    return _decode_tree(tree, bytes(view[:HEADER_SIZE]), len(view), name)


def _unpack(body: bytes | memoryview, digest: bytes, name: str) -> Any:
    _check_platform()
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError(f"{name}: checksum mismatch: the file is corrupted")
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise SnapshotError(f"{name}: malformed body: {exc}") from None


def _decode_tree(tree: Any, header: bytes, size: int, name: str) -> Snapshot:
    try:
        return _from_tree(tree, header, size)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"{name}: malformed body: {type(exc).__name__}: {exc}") from None
    except SnapshotError as exc:
        raise SnapshotError(f"{name}: malformed body: {exc}") from None


def _from_tree(tree: Any, header: bytes, size: int) -> Snapshot:
    raw_cols = tree["columns"]
    cols: dict[str, array[int]] = {}
    for name, tc in COLUMNS.items():
        type_name, blob = raw_cols.pop(name)  # pop: free each bin as soon as it has been copied
        expected, width = _TYPES[tc]
        if type_name != expected or type(blob) is not bytes or len(blob) % width:
            raise SnapshotError(f"column {name}: expected {expected} data")
        col = array(tc)
        col.frombytes(blob)
        if sys.byteorder == "big":
            col.byteswap()
        cols[name] = col
    strings = {name: list(tree["strings"][name]) for name in STRING_TABLES}
    if not all(type(s) is str for table in strings.values() for s in table):
        raise SnapshotError("string tables must hold strings")
    for group in _GROUPS:
        if len({len(cols[name]) for name in group}) != 1:
            raise SnapshotError(f"columns {', '.join(group)} differ in length")
    n_dev, offsets = len(cols["dev_flags"]), cols["dev_imei_offsets"]
    if len(offsets) != n_dev + 1 or offsets[0] != 0 or offsets[-1] != len(cols["imeis"]):
        raise SnapshotError("dev_imei_offsets does not match the device and IMEI columns")
    if not all(map(operator.lt, offsets, offsets[1:])):  # every device has at least one IMEI
        raise SnapshotError("dev_imei_offsets is not increasing")
    if len(cols["code_hash"]) != CODE_HASH_BYTES * len(cols["code_dev"]):
        raise SnapshotError("code_hash does not hold one hash per code_dev")
    for col_name, table in _REFS:
        if max(cols[col_name], default=-1) >= len(strings[table]):
            raise SnapshotError(f"column {col_name} points outside string table {table}")
    for col_name in _DEV_REFS:
        if max(cols[col_name], default=-1) >= n_dev:
            raise SnapshotError(f"column {col_name} points outside the devices")
    if max(cols["msisdn_row"], default=-1) >= len(cols["sub_imsi"]):
        raise SnapshotError("column msisdn_row points outside the subscriber rows")
    meta = tree["meta"]
    counts = {str(k): int(v) for k, v in meta["counts"].items()}
    if counts.get("devices") != n_dev or counts.get("imeis") != len(cols["imeis"]):
        raise SnapshotError("meta counts do not match the columns")
    transfers = []
    for t in tree.get("transfers", ()):
        key, buyer, code_hash, issued, expires = t
        if type(code_hash) is not bytes or len(code_hash) != CODE_HASH_BYTES:
            raise SnapshotError("transfers: bad code hash")
        transfers.append((int(key), int(buyer), code_hash, int(issued), int(expires)))
    data = RegistryData(columns=cols, strings=strings, counts=counts, transfers=transfers)
    return Snapshot(meta=_decode_meta(meta, header, size), data=data)


def _decode_meta(meta: dict[str, Any], header: bytes, size: int) -> SnapshotMeta:
    _, version, _, digest = _HEADER.unpack_from(header)
    return SnapshotMeta(
        format_version=version,
        created=int(meta["created"]),
        checksum=digest.hex(),
        counts=MappingProxyType({str(k): int(v) for k, v in meta["counts"].items()}),
        sources=tuple(str(s) for s in meta["sources"]),
        generator=str(meta.get("generator", "")),
        skipped=int(meta.get("skipped", 0)),
        size=size,
        journal_id=int(meta.get("journal", (0, 0))[0]),
        journal_seq=int(meta.get("journal", (0, 0))[1]),
    )


def code_key_from_env() -> bytes | None:
    """The activation-code key from ``EIR_CODE_KEY`` (raw bytes), or None when unset or empty."""
    value = os.environ.get("EIR_CODE_KEY", "")
    # surrogateescape gives back the exact bytes the environment holds, even if not UTF-8.
    return value.encode("utf-8", "surrogateescape") or None


def build_snapshot(paths: list[Path], out: Path, skip_invalid: bool) -> BuildReport:
    """Validate registry JSONL files (concatenated) and write one snapshot to ``out``.

    Raises :class:`RegistryError` when a record is invalid (unless ``skip_invalid``), when a file cannot
    be read, or when activation codes are present without ``EIR_CODE_KEY``; nothing is written then.
    """
    started = time.perf_counter()
    if not paths:
        raise RegistryError("no registry files given")
    builder = RegistryBuilder(code_key_from_env())
    for path in paths:
        builder.read(Path(path))
    data = builder.finish()
    if builder.n_errors and not skip_invalid:
        raise RegistryError(
            f"{builder.n_errors} invalid record(s); no snapshot written (--skip-invalid builds without them)",
            builder.errors,
            builder.n_errors,
        )
    meta = write_snapshot(
        data, Path(out), created=int(time.time()), sources=[str(p) for p in paths], skipped=builder.n_errors
    )
    return BuildReport(
        out=Path(out),
        meta=meta,
        lines=builder.n_lines,
        records=builder.n_records,
        errors=tuple(builder.errors),
        n_errors=builder.n_errors,
        elapsed=time.perf_counter() - started,
    )
