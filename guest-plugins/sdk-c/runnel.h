/*
 * runnel.h — write Runnel plugins in C. One header, no library to link.
 *
 * Contract: runnel:plugin@0.2.0 (wit/runnel.wit). The bindings come from
 * `wit-bindgen c --world ROLE-plugin wit`; include them first, name the world, then
 * this header:
 *
 *     #include "interceptor_plugin.h"
 *     #define RUNNEL_WORLD interceptor_plugin
 *     #include "runnel.h"
 *
 * What it gives:
 *   - reading:  rn_nodes (a batch's or a tree's arena and node columns), rn_event_get
 *               (a top-level field of an event), rn_get (a member of an object), rn_skip
 *               (past a whole subtree), typed getters (rn_as_int, rn_as_str, ...);
 *   - config:   rn_config_check_keys, rn_config_int/_float/_bool/_str, rn_error;
 *   - writing:  rn_output (the arena, nodes and tags a call returns), rn_object /
 *               rn_put_* / rn_end (a value tree), rn_tag, rn_merge / rn_replace
 *               (patches), rn_output_finish;
 *   - the host: rn_log, rn_fail, rn_counter, rn_now, rn_state_get/_set/_delete.
 *
 * Ownership (the canonical ABI's rules, as the generated bindings apply them):
 *   - The inputs of an exported function (a batch, lines, the config tree) are the
 *     plugin's: free them before returning, with the generated free function
 *     (`runnel_plugin_types_batch_free(input)`, `..._lines_free`, `..._tree_free`). Keep
 *     no pointer into them past that.
 *   - Every list and string an export returns must come from malloc (calloc/realloc):
 *     the bindings free them after the host has copied them. rn_output_finish,
 *     RN_ALLOC_LIST and rn_strings do this for you; never return a pointer to static
 *     or stack memory.
 *   - Arguments passed to host functions are borrowed: the host copies them.
 *   - What a host function returns (rn_state_get's value) is the plugin's to free.
 *
 * Errors: rn_fail logs a message and traps (abort). The agent then gives the batch's
 * events the plugin's `on_error` treatment (narrowed down to the events that fail) and
 * makes a new instance. Out of memory traps the same way: the plugin's memory is capped
 * by `memory_mb`.
 *
 * Build: see build.sh in a project made by `runnel plugin new --lang c`, and the guide,
 * guest-plugins/sdk-c/README.md.
 */
#ifndef RUNNEL_H
#define RUNNEL_H

#ifndef RUNNEL_WORLD
#error "#define RUNNEL_WORLD (interceptor_plugin, parser_plugin, ...) before including runnel.h"
#endif

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RN_CAT_(a, b) a##b
#define RN_CAT(a, b) RN_CAT_(a, b)
/* The world's own string and list types (the bindings prefix them with the world). */
#define RN_STRING_T RN_CAT(RUNNEL_WORLD, _string_t)
#define RN_LIST_U8_T RN_CAT(RUNNEL_WORLD, _list_u8_t)

typedef runnel_plugin_types_event_t rn_event;
typedef runnel_plugin_types_range_t rn_range;
typedef runnel_plugin_types_span_t rn_span;
typedef runnel_plugin_types_patch_t rn_patch;
typedef runnel_plugin_types_tag_t rn_tag_t;
typedef runnel_plugin_types_level_t rn_level;

/* Node kinds (wit/runnel.wit, `record nodes`). */
enum {
    RN_NULL = 0,
    RN_BOOL = 1,
    RN_INT = 2,
    RN_UINT = 3,
    RN_FLOAT = 4,
    RN_STR = 5,
    RN_BYTES = 6,
    RN_ARRAY = 7,
    RN_OBJECT = 8,
    /* Not a kind: what rn_kind says of a node index past the end. */
    RN_NONE = 255,
};

/* ------------------------------------------------------------------------------------
 * Bytes and text
 * ---------------------------------------------------------------------------------- */

/* Bytes borrowed from an arena (UTF-8 text for names, keys and strings). Not
 * NUL-terminated: print with "%.*s", (int)b.len, (const char *)b.ptr. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} rn_bytes;

static inline rn_bytes rn_cstr(const char *s) {
    rn_bytes b = {(const uint8_t *)s, strlen(s)};
    return b;
}

static inline bool rn_eq(rn_bytes b, const char *s) {
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

/* Whether the bytes are valid UTF-8 (strings and keys must be; the host checks and
 * refuses an output that is not). */
static inline bool rn_utf8(rn_bytes b) {
    size_t i = 0;
    while (i < b.len) {
        uint8_t c = b.ptr[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 0;
        if (n == 0 || c > 0xf4 || b.len - i <= n) return false;
        uint8_t c1 = b.ptr[i + 1];
        if ((c1 & 0xc0) != 0x80) return false;
        /* No overlong forms, no surrogates, nothing past U+10FFFF. */
        if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
            (c == 0xf4 && c1 > 0x8f))
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((b.ptr[i + k] & 0xc0) != 0x80) return false;
        i += n + 1;
    }
    return true;
}

static inline uint64_t rn_pack(uint32_t offset, uint32_t len) {
    return (uint64_t)offset << 32 | len;
}

/* Traps with a message in the agent's log (see "Errors" above). */
static _Noreturn void rn_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------------------------
 * Reading: a batch's (or tree's) arena and node columns
 * ---------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *arena;
    size_t arena_len;
    const uint8_t *kinds;
    const uint64_t *keys;
    const uint64_t *payloads;
    /* The number of nodes (the shortest of the three columns). */
    size_t len;
} rn_nodes;

static inline rn_nodes rn_nodes_from(const uint8_t *arena, size_t arena_len, const uint8_t *kinds,
                                     size_t kinds_len, const uint64_t *keys, size_t keys_len,
                                     const uint64_t *payloads, size_t payloads_len) {
    size_t n = kinds_len < keys_len ? kinds_len : keys_len;
    rn_nodes v = {arena, arena_len, kinds, keys, payloads, n < payloads_len ? n : payloads_len};
    return v;
}

/* The view of anything with `.arena` and `.nodes`: a batch or a config tree (pointer). */
#define rn_nodes_of(x)                                                                      \
    rn_nodes_from((x)->arena.ptr, (x)->arena.len, (x)->nodes.kinds.ptr, (x)->nodes.kinds.len, \
                  (x)->nodes.keys.ptr, (x)->nodes.keys.len, (x)->nodes.payloads.ptr,         \
                  (x)->nodes.payloads.len)

/* The bytes a packed span names; false when it runs past the arena. */
static inline bool rn_arena_span(const uint8_t *arena, size_t arena_len, uint64_t packed,
                                 rn_bytes *out) {
    uint64_t offset = packed >> 32, len = packed & 0xffffffffu;
    if (offset > arena_len || len > arena_len - offset) return false;
    out->ptr = arena + offset;
    out->len = (size_t)len;
    return true;
}

/* The bytes of a `span` record (an event's name or body, a tag's key or value); empty
 * when it runs past the arena. */
static inline rn_bytes rn_text(const rn_nodes *v, rn_span span) {
    rn_bytes b = {0, 0};
    rn_arena_span(v->arena, v->arena_len, rn_pack(span.offset, span.len), &b);
    return b;
}

static inline uint8_t rn_kind(const rn_nodes *v, size_t at) {
    return at < v->len ? v->kinds[at] : (uint8_t)RN_NONE;
}

/* The index just past the whole subtree that starts at `at` (`v->len` when the tree is
 * malformed). Reads only kinds and payloads: a container's payload is its child count,
 * and each child is a whole subtree. */
static inline size_t rn_skip(const rn_nodes *v, size_t at) {
    uint64_t pending = 1;
    size_t i = at;
    while (pending > 0) {
        if (i >= v->len) return v->len;
        uint8_t kind = v->kinds[i];
        uint64_t children = (kind == RN_ARRAY || kind == RN_OBJECT) ? v->payloads[i] : 0;
        i++;
        pending = pending - 1 + children;
        if (pending > v->len - i) return v->len;
    }
    return i;
}

/* Children of an array or object node, in order. */
typedef struct {
    size_t next;      /* index of the next child */
    uint64_t left;    /* children not yet visited */
    bool object;      /* whether children have keys */
} rn_iter;

static inline rn_iter rn_children(const rn_nodes *v, size_t at) {
    uint8_t kind = rn_kind(v, at);
    rn_iter it = {at + 1, (kind == RN_ARRAY || kind == RN_OBJECT) ? v->payloads[at] : 0,
                  kind == RN_OBJECT};
    return it;
}

/* The next child: its node index in *at and, for an object's member, its name in *key
 * (pass NULL when not wanted). False when there are no more. */
static inline bool rn_next(const rn_nodes *v, rn_iter *it, rn_bytes *key, size_t *at) {
    if (it->left == 0 || it->next >= v->len) return false;
    *at = it->next;
    if (key) {
        key->ptr = 0;
        key->len = 0;
        if (it->object) rn_arena_span(v->arena, v->arena_len, v->keys[it->next], key);
    }
    it->left--;
    it->next = rn_skip(v, it->next);
    return true;
}

/* The member `name` of the object at `object`: its node index in *at. */
static inline bool rn_get(const rn_nodes *v, size_t object, const char *name, size_t *at) {
    if (rn_kind(v, object) != RN_OBJECT) return false;
    rn_iter it = rn_children(v, object);
    rn_bytes key;
    size_t child;
    while (rn_next(v, &it, &key, &child)) {
        if (rn_eq(key, name)) {
            *at = child;
            return true;
        }
    }
    return false;
}

/* The top-level field `name` of an event (of a batch viewed by `v`). */
static inline bool rn_event_get(const rn_nodes *v, const rn_event *e, const char *name,
                                size_t *at) {
    return e->fields.len > 0 && rn_get(v, e->fields.start, name, at);
}

static inline bool rn_as_bool(const rn_nodes *v, size_t at, bool *out) {
    if (rn_kind(v, at) != RN_BOOL) return false;
    *out = v->payloads[at] != 0;
    return true;
}

/* An integer in the s64 range (the `int` kind). */
static inline bool rn_as_int(const rn_nodes *v, size_t at, int64_t *out) {
    if (rn_kind(v, at) != RN_INT) return false;
    *out = (int64_t)v->payloads[at];
    return true;
}

/* A non-negative integer (`int` ≥ 0, or `uint` above the s64 range). */
static inline bool rn_as_uint(const rn_nodes *v, size_t at, uint64_t *out) {
    uint8_t kind = rn_kind(v, at);
    if (kind == RN_UINT || (kind == RN_INT && (int64_t)v->payloads[at] >= 0)) {
        *out = v->payloads[at];
        return true;
    }
    return false;
}

/* Any number, as a double (`int`, `uint` or `float`). */
static inline bool rn_as_number(const rn_nodes *v, size_t at, double *out) {
    switch (rn_kind(v, at)) {
    case RN_INT: *out = (double)(int64_t)v->payloads[at]; return true;
    case RN_UINT: *out = (double)v->payloads[at]; return true;
    case RN_FLOAT: memcpy(out, &v->payloads[at], sizeof *out); return true;
    default: return false;
    }
}

/* A string's UTF-8 text. */
static inline bool rn_as_str(const rn_nodes *v, size_t at, rn_bytes *out) {
    return rn_kind(v, at) == RN_STR && rn_arena_span(v->arena, v->arena_len, v->payloads[at], out);
}

/* A byte string's or a string's bytes. */
static inline bool rn_as_bytes(const rn_nodes *v, size_t at, rn_bytes *out) {
    uint8_t kind = rn_kind(v, at);
    return (kind == RN_STR || kind == RN_BYTES) &&
           rn_arena_span(v->arena, v->arena_len, v->payloads[at], out);
}

/* ------------------------------------------------------------------------------------
 * Levels
 * ---------------------------------------------------------------------------------- */

static const char *const rn_level_names[] = {"trace", "debug", "info", "warn",
                                             "error", "fatal", "unknown"};

static inline const char *rn_level_name(rn_level level) {
    return level <= RUNNEL_PLUGIN_TYPES_LEVEL_UNKNOWN ? rn_level_names[level] : "unknown";
}

/* A level from its name (as in the contract: "trace" … "fatal", "unknown"). */
static inline bool rn_level_from(rn_bytes name, rn_level *out) {
    for (rn_level l = 0; l <= RUNNEL_PLUGIN_TYPES_LEVEL_UNKNOWN; l++) {
        if (rn_eq(name, rn_level_names[l])) {
            *out = l;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------------------
 * Config and errors
 * ---------------------------------------------------------------------------------- */

/* An error message for `create` (the agent shows it with the plugin's config key). */
typedef struct {
    char message[256];
} rn_error;

/* Sets the message; returns false, so `return rn_error_set(err, ...)` reads well. */
static inline bool rn_error_set(rn_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline bool rn_error_set(rn_error *err, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, args);
    va_end(args);
    return false;
}

/* The message as the world's string (malloc'd: hand it to the bindings as `err`). */
static inline void rn_error_into(const rn_error *err, RN_STRING_T *out) {
    RN_CAT(RUNNEL_WORLD, _string_dup)(out, err->message);
}

/* The plugin's config: the `config` table of its section in the agent config. */
typedef rn_nodes rn_config;

/* Refuses members not named in `known` (NULL-terminated): a misspelt key is an error,
 * not a silent default. */
static inline bool rn_config_check_keys(const rn_config *c, const char *const known[],
                                        rn_error *err) {
    rn_iter it = rn_children(c, 0);
    rn_bytes key;
    size_t at;
    while (rn_next(c, &it, &key, &at)) {
        bool found = false;
        for (size_t i = 0; known[i]; i++) found = found || rn_eq(key, known[i]);
        if (!found)
            return rn_error_set(err, "unknown key `%.*s`", (int)key.len, (const char *)key.ptr);
    }
    return true;
}

static inline bool rn_config_int(const rn_config *c, const char *key, int64_t fallback,
                                 int64_t *out, rn_error *err) {
    size_t at;
    *out = fallback;
    if (!rn_get(c, 0, key, &at)) return true;
    return rn_as_int(c, at, out) || rn_error_set(err, "`%s` must be an integer", key);
}

static inline bool rn_config_float(const rn_config *c, const char *key, double fallback,
                                   double *out, rn_error *err) {
    size_t at;
    *out = fallback;
    if (!rn_get(c, 0, key, &at)) return true;
    return rn_as_number(c, at, out) || rn_error_set(err, "`%s` must be a number", key);
}

static inline bool rn_config_bool(const rn_config *c, const char *key, bool fallback, bool *out,
                                  rn_error *err) {
    size_t at;
    *out = fallback;
    if (!rn_get(c, 0, key, &at)) return true;
    return rn_as_bool(c, at, out) || rn_error_set(err, "`%s` must be true or false", key);
}

/* A string setting, copied into a new NUL-terminated string (the config tree is freed
 * when `create` returns); the caller frees it. */
static inline bool rn_config_str(const rn_config *c, const char *key, const char *fallback,
                                 char **out, rn_error *err) {
    size_t at;
    rn_bytes text = rn_cstr(fallback);
    if (rn_get(c, 0, key, &at) && !rn_as_str(c, at, &text))
        return rn_error_set(err, "`%s` must be a string", key);
    char *copy = malloc(text.len + 1);
    if (!copy) rn_fail("out of memory");
    memcpy(copy, text.ptr, text.len);
    copy[text.len] = 0;
    *out = copy;
    return true;
}

/* ------------------------------------------------------------------------------------
 * Writing: the output data a call returns
 * ---------------------------------------------------------------------------------- */

/* The arena, nodes and tags that patches, parse results and new events point into.
 * Start with RN_OUTPUT_INIT; end with rn_output_finish, which hands the buffers to the
 * bindings. */
typedef struct {
    uint8_t *arena;
    size_t arena_len, arena_cap;
    uint8_t *kinds;
    uint64_t *keys;
    uint64_t *payloads;
    size_t len, cap;
    rn_tag_t *tags;
    size_t tags_len, tags_cap;
} rn_output;

#define RN_OUTPUT_INIT {0}

static inline void *rn_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) rn_fail("out of memory");
    return p;
}

/* Makes room for `need` elements of `size` bytes in *buf (capacity *cap, doubling). */
static inline void rn_reserve(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(*buf, cap2 * size);
    if (!p) rn_fail("out of memory");
    *buf = p;
    *cap = cap2;
}

/* Copies bytes into the arena; returns their packed span. */
static inline uint64_t rn_write(rn_output *out, const void *bytes, size_t len) {
    if (out->arena_len + len > UINT32_MAX) rn_fail("output arena over 4 GiB");
    rn_reserve((void **)&out->arena, &out->arena_cap, out->arena_len + len, 1);
    if (len) memcpy(out->arena + out->arena_len, bytes, len);
    uint64_t packed = rn_pack((uint32_t)out->arena_len, (uint32_t)len);
    out->arena_len += len;
    return packed;
}

/* Copies bytes into the arena; returns them as a `span` record (a new event's name or
 * body, a patch's name or body). */
static inline rn_span rn_write_span(rn_output *out, const void *bytes, size_t len) {
    uint64_t packed = rn_write(out, bytes, len);
    rn_span span = {(uint32_t)(packed >> 32), (uint32_t)len};
    return span;
}

/* An object or array being written. Write a container's children before anything that
 * follows it (the tree is stored in pre-order), then rn_end it. */
typedef struct {
    size_t node;
} rn_obj;

static inline size_t rn_node(rn_output *out, rn_obj *parent, const char *key, uint8_t kind,
                             uint64_t payload) {
    size_t need = out->len + 1;
    if (need > out->cap) {
        size_t cap = out->cap;
        rn_reserve((void **)&out->kinds, &cap, need, sizeof *out->kinds);
        cap = out->cap;
        rn_reserve((void **)&out->keys, &cap, need, sizeof *out->keys);
        cap = out->cap;
        rn_reserve((void **)&out->payloads, &cap, need, sizeof *out->payloads);
        out->cap = cap;
    }
    uint64_t packed_key = 0;
    if (parent) {
        if (out->kinds[parent->node] == RN_OBJECT) {
            if (!key) rn_fail("a member of an object needs a key");
            packed_key = rn_write(out, key, strlen(key));
        }
        out->payloads[parent->node]++;
    }
    size_t at = out->len++;
    out->kinds[at] = kind;
    out->keys[at] = packed_key;
    out->payloads[at] = payload;
    return at;
}

/* A new top-level object (fields to merge or replace, a parse result, a new event's
 * fields). */
static inline rn_obj rn_object(rn_output *out) {
    rn_obj o = {rn_node(out, NULL, NULL, RN_OBJECT, 0)};
    return o;
}

/* Members of `obj` (`key` is ignored, pass NULL, when `obj` is an array). */
static inline void rn_put_null(rn_output *out, rn_obj *obj, const char *key) {
    rn_node(out, obj, key, RN_NULL, 0);
}
static inline void rn_put_bool(rn_output *out, rn_obj *obj, const char *key, bool value) {
    rn_node(out, obj, key, RN_BOOL, value ? 1 : 0);
}
static inline void rn_put_int(rn_output *out, rn_obj *obj, const char *key, int64_t value) {
    rn_node(out, obj, key, RN_INT, (uint64_t)value);
}
static inline void rn_put_uint(rn_output *out, rn_obj *obj, const char *key, uint64_t value) {
    rn_node(out, obj, key, value > INT64_MAX ? RN_UINT : RN_INT, value);
}
static inline void rn_put_float(rn_output *out, rn_obj *obj, const char *key, double value) {
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    rn_node(out, obj, key, RN_FLOAT, bits);
}
/* A string from bytes (UTF-8: the host checks). */
static inline void rn_put_strn(rn_output *out, rn_obj *obj, const char *key, const void *text,
                               size_t len) {
    size_t at = rn_node(out, obj, key, RN_STR, 0);
    out->payloads[at] = rn_write(out, text, len);
}
static inline void rn_put_str(rn_output *out, rn_obj *obj, const char *key, const char *text) {
    rn_put_strn(out, obj, key, text, strlen(text));
}
static inline void rn_put_bytes(rn_output *out, rn_obj *obj, const char *key, const void *bytes,
                                size_t len) {
    size_t at = rn_node(out, obj, key, RN_BYTES, 0);
    out->payloads[at] = rn_write(out, bytes, len);
}
/* A nested object or array: write its children, then rn_end it. */
static inline rn_obj rn_put_object(rn_output *out, rn_obj *obj, const char *key) {
    rn_obj o = {rn_node(out, obj, key, RN_OBJECT, 0)};
    return o;
}
static inline rn_obj rn_put_array(rn_output *out, rn_obj *obj, const char *key) {
    rn_obj o = {rn_node(out, obj, key, RN_ARRAY, 0)};
    return o;
}

/* Ends a container; returns its range of nodes (what patches and results point to). */
static inline rn_range rn_end(rn_output *out, rn_obj *obj) {
    rn_range r = {(uint32_t)obj->node, (uint32_t)(out->len - obj->node)};
    return r;
}

/* Adds a tag; returns its index (a patch's or new event's tags are a range of them:
 * rn_tags_since). */
static inline uint32_t rn_tag(rn_output *out, const char *key, const char *value) {
    rn_reserve((void **)&out->tags, &out->tags_cap, out->tags_len + 1, sizeof *out->tags);
    rn_tag_t tag = {rn_write_span(out, key, strlen(key)), rn_write_span(out, value, strlen(value))};
    out->tags[out->tags_len] = tag;
    return (uint32_t)out->tags_len++;
}

/* The tags added since index `start`. */
static inline rn_range rn_tags_since(const rn_output *out, uint32_t start) {
    rn_range r = {start, (uint32_t)(out->tags_len - start)};
    return r;
}

/* A patch that merges the object `fields` into the event's fields. */
static inline rn_patch rn_merge(rn_range fields) {
    rn_patch p;
    memset(&p, 0, sizeof p);
    p.fields.is_some = true;
    p.fields.val.tag = RUNNEL_PLUGIN_TYPES_FIELDS_UPDATE_MERGE;
    p.fields.val.val.merge = fields;
    return p;
}

/* A patch that replaces the event's fields with the object `fields`. */
static inline rn_patch rn_replace(rn_range fields) {
    rn_patch p = rn_merge(fields);
    p.fields.val.tag = RUNNEL_PLUGIN_TYPES_FIELDS_UPDATE_REPLACE;
    return p;
}

/* Hands the buffers to `data` (an export's output data; the bindings free them after the
 * call) and resets `out` to empty. */
static inline void rn_output_finish(rn_output *out, runnel_plugin_types_output_data_t *data) {
    data->arena.ptr = out->arena;
    data->arena.len = out->arena_len;
    data->nodes.kinds.ptr = out->kinds;
    data->nodes.kinds.len = out->len;
    data->nodes.keys.ptr = out->keys;
    data->nodes.keys.len = out->len;
    data->nodes.payloads.ptr = out->payloads;
    data->nodes.payloads.len = out->len;
    data->tags.ptr = out->tags;
    data->tags.len = out->tags_len;
    memset(out, 0, sizeof *out);
}

/* Frees what `out` holds (when a call ends without handing it over). */
static inline void rn_output_free(rn_output *out) {
    free(out->arena);
    free(out->kinds);
    free(out->keys);
    free(out->payloads);
    free(out->tags);
    memset(out, 0, sizeof *out);
}

/* Gives `list` (any generated list type) `n` zeroed elements from calloc. */
#define RN_ALLOC_LIST(list, n)                                                  \
    do {                                                                        \
        (list).len = (n);                                                       \
        (list).ptr = rn_calloc((list).len, sizeof *(list).ptr);                 \
    } while (0)

/* Fills `list` (the `reads` and `routes` answers: the world's list<string>) with copies
 * of the `n` strings `names` (malloc'd). */
#define rn_strings(list, names, n)                                                    \
    do {                                                                              \
        RN_ALLOC_LIST(*(list), (n));                                                  \
        for (size_t rn_i_ = 0; rn_i_ < (list)->len; rn_i_++)                          \
            RN_CAT(RUNNEL_WORLD, _string_dup)(&(list)->ptr[rn_i_], (names)[rn_i_]);   \
    } while (0)

/* ------------------------------------------------------------------------------------
 * The host
 * ---------------------------------------------------------------------------------- */

static inline void rn_log_text(rn_level level, const char *text, size_t len) {
    RN_STRING_T s = {(uint8_t *)text, len};
    runnel_plugin_host_log(level, &s);
}

/* Writes to the agent's log, under the plugin's name (printf format). */
static inline void rn_log(rn_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void rn_log(rn_level level, const char *fmt, ...) {
    char buf[1024];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    if (n < 0) return;
    rn_log_text(level, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static _Noreturn void rn_fail(const char *fmt, ...) {
    char buf[1024];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    if (n > 0) rn_log_text(RUNNEL_PLUGIN_TYPES_LEVEL_ERROR, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    abort();
}

/* Adds `delta` to the plugin's counter `name` (once per batch, not per event). */
static inline void rn_counter(const char *name, uint64_t delta) {
    RN_STRING_T s = {(uint8_t *)name, strlen(name)};
    runnel_plugin_host_counter(&s, delta);
}

/* The wall-clock time the host grants, nanoseconds since the Unix epoch. */
static inline int64_t rn_now(void) { return runnel_plugin_host_now(); }

/* The value stored under `key`: *value is malloc'd, the caller frees it
 * (free((void *)value->ptr)). False when there is none. */
static inline bool rn_state_get(const void *key, size_t key_len, rn_bytes *value) {
    RN_LIST_U8_T k = {(uint8_t *)key, key_len};
    RN_LIST_U8_T v;
    if (!runnel_plugin_state_get(&k, &v)) return false;
    value->ptr = v.ptr;
    value->len = v.len;
    return true;
}

/* Stores `value` under `key`; false (with the host's reason in *err) when the state
 * would grow past its cap. */
static inline bool rn_state_set(const void *key, size_t key_len, const void *value,
                                size_t value_len, rn_error *err) {
    RN_LIST_U8_T k = {(uint8_t *)key, key_len};
    RN_LIST_U8_T v = {(uint8_t *)value, value_len};
    RN_STRING_T reason;
    if (runnel_plugin_state_set(&k, &v, &reason)) return true;
    rn_error_set(err, "%.*s", (int)reason.len, (const char *)reason.ptr);
    RN_CAT(RUNNEL_WORLD, _string_free)(&reason);
    return false;
}

static inline void rn_state_delete(const void *key, size_t key_len) {
    RN_LIST_U8_T k = {(uint8_t *)key, key_len};
    runnel_plugin_state_delete(&k);
}

#endif /* RUNNEL_H */
