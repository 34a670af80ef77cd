// A Runnel processor in JavaScript: passes every event on and counts them by level;
// every `tick_ms` (set it in the plugin's section of the agent config) and when the agent
// stops, it emits one `level-counts` event with the counts of the window.
//
// Try it: runnel plugin test PLUGIN.wasm --after combined < access.log
import * as rp from './runnel_plugin.js';

class Plugin {
  reads = []; // no fields: the level travels anyway

  constructor(config) {
    rp.checkKeys(config, []);
    this.counts = {};
  }

  process(events) {
    for (const event of events) this.counts[event.level] = (this.counts[event.level] ?? 0) + 1;
    return events;
  }

  tick(now) {
    if (Object.keys(this.counts).length === 0) return [];
    const counts = this.counts;
    this.counts = {};
    return [new rp.New('level-counts', { fields: counts, timestamp: now })];
  }
}

export const processor = rp.processor(Plugin);
