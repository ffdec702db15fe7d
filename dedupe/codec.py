"""The only place msgpack is called: fixed options, size limits, and typed field access.

Every decoder of repository bytes goes through `unpack`, which turns any decoding failure into
`FormatError`, so hostile input can never raise anything but the project's own errors.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack

from dedupe.errors import FormatError

FORMAT_VERSION = 1
# msgpack.unpackb bounds every container and string by the input's length, so a hostile header
# claiming 2**32 elements fails instead of allocating them.

T = TypeVar("T")


def pack(obj: Any) -> bytes:
    """Encode with the repository's fixed msgpack options."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes | memoryview, what: str = "object") -> Any:
    """Decode, or raise FormatError naming `what`."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except Exception as exc:  # msgpack raises many types; all mean "not a valid object"
        raise FormatError(
            f"{what} is damaged or not a dedupe object ({type(exc).__name__})"
        ) from None


def field(obj: Any, key: str, kind: type[T] | tuple[type, ...], what: str) -> T:
    """obj[key] checked to be of `kind` (bool is not accepted as int), else FormatError."""
    if not isinstance(obj, dict):
        raise FormatError(f"{what}: expected a map")
    if key not in obj:
        raise FormatError(f"{what}: missing field {key!r}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise FormatError(f"{what}: field {key!r} has the wrong type")
    if not isinstance(value, kinds):
        raise FormatError(f"{what}: field {key!r} has the wrong type")
    return value  # type: ignore[return-value]


def opt_field(
    obj: dict[str, Any], key: str, kind: type[T] | tuple[type, ...], what: str, default: Any = None
) -> Any:
    """Like `field`, but an absent key (or nil) gives `default`."""
    if obj.get(key) is None:
        return default
    return field(obj, key, kind, what)


def check_version(obj: Any, what: str) -> dict[str, Any]:
    """Require a map with `v` == FORMAT_VERSION."""
    version = field(obj, "v", int, what)
    if version != FORMAT_VERSION:
        from dedupe.errors import UnsupportedVersion

        raise UnsupportedVersion(
            f"{what} has format version {version}; this dedupe reads version {FORMAT_VERSION}"
        )
    checked: dict[str, Any] = obj
    return checked


def blob_id(value: Any, what: str) -> bytes:
    """A 32-byte id, else FormatError."""
    if not isinstance(value, bytes) or len(value) != 32:
        raise FormatError(f"{what}: invalid id")
    return value
