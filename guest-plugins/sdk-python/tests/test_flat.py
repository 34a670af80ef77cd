"""The Python SDK's reader and writer of the flat encoding, in plain Python."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from runnel_plugin import flat  # noqa: E402


class Nodes:
    def __init__(self, writer):
        self.kinds = bytes(writer.kinds)
        self.keys = writer.keys
        self.payloads = writer.payloads


class FlatTest(unittest.TestCase):
    def round_trip(self, value):
        w = flat.Writer()
        start, count = w.tree(value)
        self.assertEqual(flat.subtree_end(w.kinds, w.payloads, start), start + count)
        return flat.read_tree(bytes(w.arena), Nodes(w), start)

    def test_every_kind_reads_back_as_written(self):
        value = {
            "null": None,
            "yes": True,
            "no": False,
            "int": -42,
            "min": -(1 << 63),
            "max": (1 << 63) - 1,
            "uint": (1 << 64) - 1,
            "float": 1.0,
            "text": "héllo",
            "bytes": b"\x00\xff",
            "list": [1, "two", [3.5, None]],
            "empty": {},
            "nested": {"a": {"b": []}},
        }
        back = self.round_trip(value)
        self.assertEqual(back, value)
        self.assertIsInstance(back["float"], float)
        self.assertIsInstance(back["int"], int)
        self.assertEqual(list(back), list(value))  # member order kept

    def test_kinds_and_payloads_follow_the_contract(self):
        w = flat.Writer()
        w.tree({"n": -1, "f": 2.0, "s": "x"})
        self.assertEqual(list(w.kinds), [flat.OBJECT, flat.INT, flat.FLOAT, flat.STR])
        self.assertEqual(w.payloads[0], 3)
        self.assertEqual(w.payloads[1], (1 << 64) - 1)  # two's complement bits
        self.assertEqual(w.payloads[2], 0x4000000000000000)  # 2.0's bits
        offset, length = flat.unpack(w.payloads[3])
        self.assertEqual(bytes(w.arena[offset : offset + length]), b"x")
        self.assertEqual(w.keys[0], 0)  # the root has no key
        self.assertEqual(flat.text(bytes(w.arena), w.keys[1]), "n")

    def test_repeated_keys_are_written_once(self):
        w = flat.Writer()
        w.tree({"status": 1})
        w.tree({"status": 2})
        self.assertEqual(w.keys[1], w.keys[3])
        self.assertEqual(bytes(w.arena), b"status")

    def test_values_that_cannot_be_written_are_refused(self):
        w = flat.Writer()
        with self.assertRaises(ValueError):
            w.tree({"big": 1 << 64})
        with self.assertRaises(TypeError):
            w.tree({1: "key must be text"})
        with self.assertRaises(TypeError):
            w.tree({"set": {1, 2}})

    def test_an_unknown_kind_is_an_error(self):
        with self.assertRaises(ValueError):
            flat.read_value(b"", bytes([9]), [0], [0], 0)


if __name__ == "__main__":
    unittest.main()
