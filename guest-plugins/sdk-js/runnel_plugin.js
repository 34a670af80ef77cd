// Write Runnel plugins in JavaScript (componentize-js).
//
// Your plugin is a class in app.js; export it under the role's name through this SDK:
//
//     import * as rp from './runnel_plugin.js';
//     class Plugin { ... }
//     export const interceptor = rp.interceptor(Plugin);
//
// The SDK speaks the flat encoding of the runnel:plugin contract (wit/runnel.wit) for
// you: events are objects whose `fields` and `tags` are plain objects decoded on first
// use; what a plugin returns is plain JavaScript (rp.KEEP, rp.DROP, a patch object, an
// object of fields, route names, rp.New events). See README.md next to this file.

import * as host from 'runnel:plugin/host@0.2.0';
import * as hostState from 'runnel:plugin/state@0.2.0';

export const NULL = 0, BOOL = 1, INT = 2, UINT = 3, FLOAT = 4, STR = 5, BYTES = 6, ARRAY = 7, OBJECT = 8;
export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'unknown'];

/** Keep the event as it is (`undefined` means the same). */
export const KEEP = Object.freeze({ verdict: 'keep' });
/** Drop the event (interceptors and processors). */
export const DROP = Object.freeze({ verdict: 'drop' });

/** A line a parser cannot parse: return or throw it. */
export class ParseError extends Error {}

/** What a parser found: fields, and optionally level, timestamp (ns, BigInt), name. */
export class Parsed {
  constructor(fields = {}, { level, timestamp, name } = {}) {
    this.fields = fields;
    this.level = level;
    this.timestamp = timestamp;
    this.name = name;
  }
}

/** A new event a processor emits. */
export class New {
  constructor(name, { fields = {}, tags = {}, level = 'info', timestamp, body = '' } = {}) {
    Object.assign(this, { name, fields, tags, level, timestamp, body });
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const LOW32 = 0xffffffffn;
const scratch = new DataView(new ArrayBuffer(8));

function text(arena, packed) {
  const offset = Number(packed >> 32n);
  return decoder.decode(arena.subarray(offset, offset + Number(packed & LOW32)));
}

/** A batch's node columns with the u64 columns also seen as pairs of u32 (low, high;
 * little-endian), so that reading a node needs no BigInt: the JS engine in a component
 * is an interpreter, and BigInt arithmetic is most of the cost of a read. */
function columns(nodes) {
  if (nodes.k32 === undefined) {
    nodes.k32 = new Uint32Array(nodes.keys.buffer, nodes.keys.byteOffset, nodes.keys.length * 2);
    nodes.p32 = new Uint32Array(nodes.payloads.buffer, nodes.payloads.byteOffset, nodes.payloads.length * 2);
  }
  return nodes;
}

function spanText(arena, offset, len) {
  return decoder.decode(arena.subarray(offset, offset + len));
}

/** The value whose subtree starts at node `i` of `nodes`, and the index just past it. */
export function readValue(arena, nodes, i) {
  const c = columns(nodes);
  return readAt(arena, c.kinds, c.k32, c.p32, c.payloads, i);
}

function readAt(arena, kinds, k32, p32, payloads, i) {
  const kind = kinds[i];
  const lo = p32[2 * i];
  const hi = p32[2 * i + 1];
  switch (kind) {
    case STR:
      return [spanText(arena, hi, lo), i + 1];
    case INT:
      if (hi === 0) return [lo, i + 1];
      if (hi === 0xffffffff && lo !== 0) return [lo - 0x100000000, i + 1];
      {
        const v = BigInt.asIntN(64, payloads[i]);
        return [Number.isSafeInteger(Number(v)) ? Number(v) : v, i + 1];
      }
    case OBJECT: {
      const members = {};
      i += 1;
      for (let n = 0; n < lo; n++) {
        const key = spanText(arena, k32[2 * i + 1], k32[2 * i]);
        [members[key], i] = readAt(arena, kinds, k32, p32, payloads, i);
      }
      return [members, i];
    }
    case ARRAY: {
      const items = [];
      i += 1;
      for (let n = 0; n < lo; n++) {
        let item;
        [item, i] = readAt(arena, kinds, k32, p32, payloads, i);
        items.push(item);
      }
      return [items, i];
    }
    case BOOL:
      return [lo !== 0, i + 1];
    case UINT:
      return [payloads[i], i + 1];
    case FLOAT:
      scratch.setUint32(0, lo, true);
      scratch.setUint32(4, hi, true);
      return [scratch.getFloat64(0, true), i + 1];
    case BYTES:
      return [arena.slice(hi, hi + lo), i + 1];
    case NULL:
      return [null, i + 1];
    default:
      throw new Error(`unknown node kind ${kind} at node ${i}`);
  }
}

/** Builds an arena, node columns and tags: what a plugin returns as output-data. */
export class Writer {
  constructor() {
    this.arena = new Uint8Array(4096);
    this.used = 0;
    this.kinds = [];
    this.keys = [];
    this.payloads = [];
    this.tags = [];
    this.spans = new Map();
  }

  /** Appends text (UTF-8) or bytes; returns a span record. */
  span(data) {
    const bytes = typeof data === 'string' ? encoder.encode(data) : data;
    while (this.used + bytes.length > this.arena.length) {
      const grown = new Uint8Array(this.arena.length * 2);
      grown.set(this.arena.subarray(0, this.used));
      this.arena = grown;
    }
    this.arena.set(bytes, this.used);
    const span = { offset: this.used, len: bytes.length };
    this.used += bytes.length;
    return span;
  }

  /** Appends text or bytes and returns its packed span; short strings are written once. */
  packed(data) {
    if (typeof data === 'string' && data.length <= 64) {
      let p = this.spans.get(data);
      if (p === undefined) {
        const s = this.span(data);
        p = (BigInt(s.offset) << 32n) | BigInt(s.len);
        this.spans.set(data, p);
      }
      return p;
    }
    const s = this.span(data);
    return (BigInt(s.offset) << 32n) | BigInt(s.len);
  }

  /** Writes a value tree; returns its range record. */
  tree(value) {
    const start = this.kinds.length;
    this.value(0n, value);
    return { start, len: this.kinds.length - start };
  }

  node(kind, key, payload) {
    this.kinds.push(kind);
    this.keys.push(key);
    this.payloads.push(payload);
  }

  value(key, v) {
    if (v === null || v === undefined) this.node(NULL, key, 0n);
    else if (typeof v === 'boolean') this.node(BOOL, key, v ? 1n : 0n);
    else if (typeof v === 'number' && Number.isInteger(v)) this.node(INT, key, BigInt.asUintN(64, BigInt(v)));
    else if (typeof v === 'number') {
      scratch.setFloat64(0, v, true);
      this.node(FLOAT, key, scratch.getBigUint64(0, true));
    } else if (typeof v === 'bigint') {
      if (v >= -(1n << 63n) && v < (1n << 63n)) this.node(INT, key, BigInt.asUintN(64, v));
      else if (v >= 0n && v < (1n << 64n)) this.node(UINT, key, v);
      else throw new RangeError(`integer ${v} does not fit in 64 bits`);
    } else if (typeof v === 'string') this.node(STR, key, this.packed(v));
    else if (v instanceof Uint8Array) this.node(BYTES, key, this.packed(v));
    else if (Array.isArray(v)) {
      this.node(ARRAY, key, BigInt(v.length));
      for (const item of v) this.value(0n, item);
    } else if (typeof v === 'object') {
      const names = Object.keys(v);
      this.node(OBJECT, key, BigInt(names.length));
      for (const name of names) this.value(this.packed(name), v[name]);
    } else throw new TypeError(`cannot write a ${typeof v} as a field value`);
  }

  tagRange(tags) {
    const start = this.tags.length;
    for (const [k, v] of Object.entries(tags)) {
      this.tags.push({ key: this.span(String(k)), value: this.span(String(v)) });
    }
    return { start, len: this.tags.length - start };
  }

  patch(p) {
    if (!('fields' in p || 'replaceFields' in p || 'tags' in p || 'level' in p
      || 'timestamp' in p || 'name' in p || 'body' in p)) {
      p = { fields: p }; // a plain object of fields: merged
    }
    let fields;
    if (p.fields !== undefined) fields = { tag: 'merge', val: this.tree(p.fields) };
    else if (p.replaceFields !== undefined) fields = { tag: 'replace', val: this.tree(p.replaceFields) };
    return {
      fields,
      tags: p.tags ? this.tagRange(p.tags) : { start: 0, len: 0 },
      level: p.level,
      timestamp: p.timestamp === undefined ? undefined : BigInt(p.timestamp),
      name: p.name === undefined ? undefined : this.span(p.name),
      body: p.body === undefined ? undefined : this.span(p.body),
    };
  }

  event(n) {
    return {
      name: this.span(n.name),
      timestamp: n.timestamp === undefined ? undefined : BigInt(n.timestamp),
      level: n.level || 'info',
      body: this.span(n.body),
      fields: this.tree(n.fields),
      tags: this.tagRange(n.tags),
    };
  }

  finish() {
    return {
      arena: this.arena.slice(0, this.used),
      nodes: {
        kinds: Uint8Array.from(this.kinds),
        keys: BigUint64Array.from(this.keys),
        payloads: BigUint64Array.from(this.payloads),
      },
      tags: this.tags,
    };
  }
}

/** One event of a batch; `fields` and `tags` are decoded on first use. */
export class Event {
  constructor(batch, event, index) {
    this.batch = batch;
    this.event = event;
    this.index = index;
  }
  get name() {
    const s = this.event.name;
    return decoder.decode(this.batch.arena.subarray(s.offset, s.offset + s.len));
  }
  /** The raw body (Uint8Array). */
  get body() {
    const s = this.event.body;
    return this.batch.arena.subarray(s.offset, s.offset + s.len);
  }
  /** The body as text. */
  get text() {
    return decoder.decode(this.body);
  }
  /** The level's name: 'info', 'error', ... */
  get level() {
    return this.event.level;
  }
  /** Nanoseconds since the epoch (BigInt), or undefined. */
  get timestamp() {
    return this.event.timestamp;
  }
  get fields() {
    if (this._fields === undefined) {
      this._fields = readValue(this.batch.arena, this.batch.nodes, this.event.fields.start)[0];
    }
    return this._fields;
  }
  get tags() {
    if (this._tags === undefined) {
      const arena = this.batch.arena;
      const r = this.event.tags;
      this._tags = {};
      for (const t of this.batch.tags.slice(r.start, r.start + r.len)) {
        this._tags[decoder.decode(arena.subarray(t.key.offset, t.key.offset + t.key.len))] =
          decoder.decode(arena.subarray(t.value.offset, t.value.offset + t.value.len));
      }
    }
    return this._tags;
  }
}

/** Throws naming the first key of `config` not in `allowed`. */
export function checkKeys(config, allowed) {
  for (const key of Object.keys(config)) {
    if (!allowed.includes(key)) {
      throw new Error(`unknown key \`${key}\` (expected one of: ${allowed.join(', ')})`);
    }
  }
}

/** Writes to the agent's log under the plugin's name (`level`: 'info', ...). */
export function log(level, message) {
  host.log(level, String(message));
}
/** Adds `delta` to the plugin's counter `name` (once per batch, not per event). */
export function counter(name, delta = 1) {
  host.counter(name, BigInt(delta));
}
/** Wall-clock time, nanoseconds since the epoch (BigInt). */
export function now() {
  return host.now();
}
export function hostname() {
  return host.hostname();
}
const bytes = (b) => (typeof b === 'string' ? encoder.encode(b) : b);
/** Keyed state the agent keeps for the plugin (bytes or text in, Uint8Array out). */
export const state = {
  get: (key) => hostState.get(bytes(key)),
  set: (key, value) => hostState.set(bytes(key), bytes(value)),
  delete: (key) => hostState.delete(bytes(key)),
};

// ---- the component side: an Instance class per role, wrapping the plugin class ----

function config(tree) {
  const value = readValue(tree.arena, tree.nodes, 0)[0];
  return value !== null && typeof value === 'object' ? value : {};
}

function create(Plugin, tree) {
  try {
    return new Plugin(config(tree));
  } catch (e) {
    throw `${e && e.name ? e.name + ': ' : ''}${e && e.message !== undefined ? e.message : e}`;
  }
}

/** Logs the error with its stack and traps the call: the agent gives the batch's events
 * the plugin's on_error treatment, narrowed down to the events that fail. */
function failed(what, e) {
  const message = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e);
  host.log('error', `${what} failed: ${message}`);
  throw e;
}

function reads(plugin) {
  return plugin.reads === undefined || plugin.reads === null ? undefined : plugin.reads.map(String);
}

function events(batch) {
  return batch.events.map((e, i) => new Event(batch, e, i));
}

/** What every role's `Instance` does the same way: build the plugin class with the
 * config in `create` (then the role's own `created`), and answer `reads` from it. */
function base(Plugin) {
  return class {
    static create(tree) {
      const inst = new this();
      inst.plugin = create(Plugin, tree);
      inst.created();
      return inst;
    }
    created() {}
    reads() {
      return reads(this.plugin);
    }
  };
}

export function parser(Plugin) {
  class Instance extends base(Plugin) {
    parse(input) {
      const out = new Writer();
      const results = [];
      try {
        for (const packed of input.bodies) {
          const offset = Number(packed >> 32n);
          let r;
          try {
            r = this.plugin.parse(input.arena.subarray(offset, offset + Number(packed & LOW32)));
          } catch (e) {
            if (!(e instanceof ParseError)) throw e;
            r = e;
          }
          if (r instanceof ParseError) {
            results.push({ tag: 'error', val: out.span(r.message) });
            continue;
          }
          if (!(r instanceof Parsed)) r = new Parsed(r);
          results.push({
            tag: 'ok',
            val: {
              fields: out.tree(r.fields),
              level: r.level,
              timestamp: r.timestamp === undefined ? undefined : BigInt(r.timestamp),
              name: r.name === undefined ? undefined : out.span(r.name),
            },
          });
        }
      } catch (e) {
        failed('parse', e);
      }
      return { data: out.finish(), results };
    }
  }
  return { Instance };
}

export function interceptor(Plugin) {
  class Instance extends base(Plugin) {
    intercept(input) {
      const out = new Writer();
      const actions = [];
      try {
        for (const event of events(input)) {
          const r = this.plugin.intercept(event);
          if (r === undefined || r === null || r === KEEP) actions.push({ tag: 'keep' });
          else if (r === DROP) actions.push({ tag: 'drop' });
          else actions.push({ tag: 'patch', val: out.patch(r) });
        }
      } catch (e) {
        failed('intercept', e);
      }
      return { data: out.finish(), actions };
    }
  }
  return { Instance };
}

export function cleaner(Plugin) {
  class Instance extends base(Plugin) {
    clean(input) {
      const out = new Writer();
      const patches = [];
      try {
        for (const event of events(input)) {
          const r = this.plugin.clean(event);
          patches.push(r === undefined || r === null || r === KEEP ? undefined : out.patch(r));
        }
      } catch (e) {
        failed('clean', e);
      }
      return { data: out.finish(), patches };
    }
  }
  return { Instance };
}

export function router(Plugin) {
  class Instance extends base(Plugin) {
    created() {
      this.bits = new Map(this.routes().map((name, i) => [name, 1n << BigInt(i)]));
    }
    routes() {
      return (this.plugin.routes || []).map(String);
    }
    route(input) {
      const masks = new BigUint64Array(input.events.length);
      try {
        events(input).forEach((event, i) => {
          const r = this.plugin.route(event);
          if (r === undefined || r === null) return;
          for (const name of typeof r === 'string' ? [r] : r) {
            const bit = this.bits.get(name);
            if (bit === undefined) throw new Error(`route \`${name}\` is not in routes`);
            masks[i] |= bit;
          }
        });
      } catch (e) {
        failed('route', e);
      }
      return masks;
    }
  }
  return { Instance };
}

export function processor(Plugin) {
  class Instance extends base(Plugin) {
    process(input) {
      try {
        return emit(this.plugin.process(events(input)));
      } catch (e) {
        failed('process', e);
      }
    }
    tick(now) {
      try {
        return emit(this.plugin.tick ? this.plugin.tick(now) : []);
      } catch (e) {
        failed('tick', e);
      }
    }
  }
  return { Instance };
}

function emit(items) {
  const out = new Writer();
  const emitted = [];
  for (const item of items || []) {
    if (item instanceof Event) emitted.push({ tag: 'keep', val: item.index });
    else if (item instanceof New) emitted.push({ tag: 'new', val: out.event(item) });
    else {
      const [event, patch] = item;
      emitted.push({ tag: 'patched', val: [event.index, out.patch(patch)] });
    }
  }
  return { data: out.finish(), events: emitted };
}
