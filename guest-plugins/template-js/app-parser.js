// A Runnel parser in JavaScript: splits `key=value` pairs of a line into fields; a line
// without any is a parse error (the event keeps its body and gets the `parse_error` tag).
// A `level` pair sets the event's level.
//
// Try it: printf 'user=ann level=warn\nnothing here\n' | runnel plugin test PLUGIN.wasm
import * as rp from './runnel_plugin.js';

const decoder = new TextDecoder();

class Plugin {
  constructor(config) {
    rp.checkKeys(config, ['separator']);
    this.separator = config.separator ?? '=';
  }

  parse(line) {
    const fields = {};
    for (const word of decoder.decode(line).split(/\s+/)) {
      const at = word.indexOf(this.separator);
      if (at > 0) {
        const value = word.slice(at + this.separator.length);
        fields[word.slice(0, at)] = /^\d+$/.test(value) ? Number(value) : value;
      }
    }
    if (Object.keys(fields).length === 0) return new rp.ParseError('no key=value pairs');
    const level = rp.LEVELS.includes(fields.level) ? fields.level : undefined;
    return new rp.Parsed(fields, { level });
  }
}

export const parser = rp.parser(Plugin);
