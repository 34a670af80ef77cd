"""A Runnel parser in Python: splits `key=value` pairs of a line into fields; a line
without any is a parse error (the event keeps its body and gets the `parse_error` tag).
A `level` pair sets the event's level.

Try it: `printf 'user=ann level=warn\nnothing here\n' | runnel plugin test PLUGIN.wasm`
"""

import runnel_plugin as rp


class Plugin:
    def __init__(self, config):
        rp.check_keys(config, ["separator"])
        self.separator = config.get("separator", "=")

    def parse(self, line):
        fields = {}
        for word in line.decode(errors="replace").split():
            key, sep, value = word.partition(self.separator)
            if sep:
                fields[key] = int(value) if value.isdigit() else value
        if not fields:
            return rp.ParseError("no key=value pairs")
        level = fields.get("level")
        return rp.Parsed(fields, level=level if level in rp.api.LEVELS else None)
