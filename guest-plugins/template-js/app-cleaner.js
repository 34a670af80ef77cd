// A Runnel cleaner in JavaScript: masks the fields named in `fields` (default: `user`
// and `password`), keeping their last `keep` characters (default 0).
//
// Try it: echo '{"fields":{"user":"ann","n":1}}' | runnel plugin test PLUGIN.wasm --events-json
import * as rp from './runnel_plugin.js';

class Plugin {
  constructor(config) {
    rp.checkKeys(config, ['fields', 'keep']);
    this.reads = config.fields ?? ['user', 'password'];
    this.keep = config.keep ?? 0;
  }

  clean(event) {
    const masked = {};
    for (const name of this.reads) {
      const value = event.fields[name];
      if (typeof value === 'string') {
        const tail = this.keep ? value.slice(Math.max(0, value.length - this.keep)) : '';
        masked[name] = '*'.repeat(value.length - tail.length) + tail;
      }
    }
    return Object.keys(masked).length ? masked : undefined;
  }
}

export const cleaner = rp.cleaner(Plugin);
