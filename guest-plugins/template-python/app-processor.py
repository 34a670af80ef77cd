"""A Runnel processor in Python: passes every event on and counts them by level; every
`tick_ms` (set it in the plugin's section of the agent config) and when the agent stops,
it emits one `level-counts` event with the counts of the window.

Try it: `runnel plugin test PLUGIN.wasm --after combined < access.log`
"""

import runnel_plugin as rp


class Plugin:
    reads = []  # no fields: the level travels anyway

    def __init__(self, config):
        rp.check_keys(config, [])
        self.counts = {}

    def process(self, events):
        for event in events:
            self.counts[event.level] = self.counts.get(event.level, 0) + 1
        return events

    def tick(self, now):
        if not self.counts:
            return []
        counts, self.counts = self.counts, {}
        return [rp.New("level-counts", fields=counts, timestamp=now)]
