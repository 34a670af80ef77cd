"""A Runnel router in Python: sends events whose `status` field is 500 or more to the
route `alerts` (configure the route's channels in the source: `routes = { alerts = [...] }`).

Try it: `runnel plugin test PLUGIN.wasm --after combined < access.log`
"""

import runnel_plugin as rp


class Plugin:
    routes = ["alerts"]
    reads = ["status"]

    def __init__(self, config):
        rp.check_keys(config, ["min_status"])
        self.min_status = int(config.get("min_status", 500))

    def route(self, event):
        status = event.fields.get("status")
        return "alerts" if isinstance(status, int) and status >= self.min_status else None
