// A Runnel router in JavaScript: sends events whose `status` field is 500 or more to the
// route `alerts` (configure the route's channels in the source: routes = { alerts = [...] }).
//
// Try it: runnel plugin test PLUGIN.wasm --after combined < access.log
import * as rp from './runnel_plugin.js';

class Plugin {
  routes = ['alerts'];
  reads = ['status'];

  constructor(config) {
    rp.checkKeys(config, ['min_status']);
    this.minStatus = config.min_status ?? 500;
  }

  route(event) {
    const status = event.fields.status;
    return typeof status === 'number' && status >= this.minStatus ? 'alerts' : undefined;
  }
}

export const router = rp.router(Plugin);
