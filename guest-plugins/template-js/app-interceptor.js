// A Runnel interceptor in JavaScript: keeps the events whose `status` field is at least
// `min_status` (default 400) and adds `class` = "client" (4xx) or "server" (5xx and up).
//
// Put a parser in front of it to have `status`:
//   runnel plugin test PLUGIN.wasm --after combined < access.log
import * as rp from './runnel_plugin.js';

class Plugin {
  reads = ['status'];

  constructor(config) {
    rp.checkKeys(config, ['min_status']);
    this.minStatus = config.min_status ?? 400;
  }

  intercept(event) {
    const status = event.fields.status;
    if (typeof status !== 'number' || status < this.minStatus) return rp.DROP;
    return { class: status < 500 ? 'client' : 'server' };
  }
}

export const interceptor = rp.interceptor(Plugin);
