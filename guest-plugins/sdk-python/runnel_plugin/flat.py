"""The flat encoding of the runnel:plugin contract (wit/runnel.wit), read and written in
plain Python: one arena of bytes, strings as packed spans into it (``offset << 32 | len``),
value trees as pre-order node columns (kinds, keys, payloads).

This module needs nothing but the standard library, so it runs (and is tested) outside a
component too. It is also the reference reader and writer for authors in other languages.
"""

import struct

NULL, BOOL, INT, UINT, FLOAT, STR, BYTES, ARRAY, OBJECT = range(9)

_LOW32 = 0xFFFF_FFFF
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_U64 = 1 << 64
_F64 = struct.Struct("<d")
_U64S = struct.Struct("<Q")


def unpack(packed):
    """A packed span as ``(offset, length)``."""
    return packed >> 32, packed & _LOW32


def text(arena, packed):
    """The UTF-8 text of a packed span."""
    offset = packed >> 32
    return arena[offset : offset + (packed & _LOW32)].decode()


def read_value(arena, kinds, keys, payloads, i):
    """The value whose subtree starts at node ``i``, and the index just past it."""
    kind = kinds[i]
    payload = payloads[i]
    if kind == STR:
        offset = payload >> 32
        return arena[offset : offset + (payload & _LOW32)].decode(), i + 1
    if kind == INT:
        return (payload - _U64 if payload > _I64_MAX else payload), i + 1
    if kind == OBJECT:
        members = {}
        i += 1
        for _ in range(payload):
            key = keys[i]
            offset = key >> 32
            name = arena[offset : offset + (key & _LOW32)].decode()
            members[name], i = read_value(arena, kinds, keys, payloads, i)
        return members, i
    if kind == ARRAY:
        items = []
        i += 1
        for _ in range(payload):
            item, i = read_value(arena, kinds, keys, payloads, i)
            items.append(item)
        return items, i
    if kind == BOOL:
        return payload != 0, i + 1
    if kind == UINT:
        return payload, i + 1
    if kind == FLOAT:
        return _F64.unpack(_U64S.pack(payload))[0], i + 1
    if kind == BYTES:
        offset = payload >> 32
        return bytes(arena[offset : offset + (payload & _LOW32)]), i + 1
    if kind == NULL:
        return None, i + 1
    raise ValueError(f"unknown node kind {kind} at node {i}")


def read_tree(arena, nodes, start=0):
    """The value tree rooted at node ``start`` of ``nodes`` (kinds, keys, payloads)."""
    return read_value(arena, nodes.kinds, nodes.keys, nodes.payloads, start)[0]


def subtree_end(kinds, payloads, i):
    """The index just past the subtree that starts at node ``i``."""
    left = 1
    while left:
        kind = kinds[i]
        left -= 1
        if kind == ARRAY or kind == OBJECT:
            left += payloads[i]
        i += 1
    return i


class Writer:
    """Builds an arena, node columns and tags: what a plugin returns as ``output-data``."""

    def __init__(self):
        self.arena = bytearray()
        self.kinds = bytearray()
        self.keys = []
        self.payloads = []
        self.tags = []  # (key span, value span) pairs
        self._spans = {}

    def span(self, data):
        """Appends bytes (or text, as UTF-8); returns ``(offset, length)``."""
        if isinstance(data, str):
            data = data.encode()
        offset = len(self.arena)
        self.arena += data
        return offset, len(data)

    def packed(self, data):
        """Appends bytes (or text) and returns their packed span. Repeated short strings
        (keys, mostly) are written once."""
        if isinstance(data, str) and len(data) <= 64:
            found = self._spans.get(data)
            if found is None:
                offset, length = self.span(data)
                found = self._spans[data] = offset << 32 | length
            return found
        offset, length = self.span(data)
        return offset << 32 | length

    def tree(self, value):
        """Writes a value tree; returns ``(start, node count)``."""
        start = len(self.kinds)
        self._value(0, value)
        return start, len(self.kinds) - start

    def _node(self, kind, key, payload):
        self.kinds.append(kind)
        self.keys.append(key)
        self.payloads.append(payload)

    def _value(self, key, value):
        if value is None:
            self._node(NULL, key, 0)
        elif value is True or value is False:
            self._node(BOOL, key, 1 if value else 0)
        elif isinstance(value, int):
            if _I64_MIN <= value <= _I64_MAX:
                self._node(INT, key, value & (_U64 - 1))
            elif _I64_MAX < value < _U64:
                self._node(UINT, key, value)
            else:
                raise ValueError(f"integer {value} does not fit in 64 bits")
        elif isinstance(value, float):
            self._node(FLOAT, key, _U64S.unpack(_F64.pack(value))[0])
        elif isinstance(value, str):
            self._node(STR, key, self.packed(value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._node(BYTES, key, self.packed(bytes(value)))
        elif isinstance(value, dict):
            self._node(OBJECT, key, len(value))
            for name, member in value.items():
                if not isinstance(name, str):
                    raise TypeError(f"object keys must be str, not {type(name).__name__}")
                self._value(self.packed(name), member)
        elif isinstance(value, (list, tuple)):
            self._node(ARRAY, key, len(value))
            for item in value:
                self._value(0, item)
        else:
            raise TypeError(f"cannot write a {type(value).__name__} as a field value")
