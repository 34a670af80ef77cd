"""A Runnel interceptor in Python: keeps the events whose `status` field is at least
`min_status` (default 400) and adds `class` = "client" (4xx) or "server" (5xx and up).

Put a parser in front of it to have `status`: `runnel plugin test PLUGIN.wasm --after
combined < access.log`.
"""

import runnel_plugin as rp


class Plugin:
    # Only these fields of each event are sent to the plugin (None: all of them).
    reads = ["status"]

    def __init__(self, config):
        rp.check_keys(config, ["min_status"])
        self.min_status = int(config.get("min_status", 400))

    def intercept(self, event):
        status = event.fields.get("status")
        if not isinstance(status, int) or status < self.min_status:
            return rp.DROP
        return {"class": "client" if status < 500 else "server"}
