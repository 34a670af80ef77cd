"""A Runnel cleaner in Python: masks the fields named in `fields` (default: `user` and
`password`), keeping their last `keep` characters (default 0).

Try it: `echo '{"fields":{"user":"ann","n":1}}' | runnel plugin test PLUGIN.wasm --events-json`
"""

import runnel_plugin as rp


class Plugin:
    def __init__(self, config):
        rp.check_keys(config, ["fields", "keep"])
        self.reads = list(config.get("fields", ["user", "password"]))
        self.keep = int(config.get("keep", 0))

    def clean(self, event):
        masked = {}
        for name in self.reads:
            value = event.fields.get(name)
            if isinstance(value, str):
                tail = value[len(value) - self.keep:] if self.keep else ""
                masked[name] = "*" * (len(value) - len(tail)) + tail
        return masked or None
