/*
 * A Runnel parser in C: splits the `key=value` words of a line into fields (a value of
 * digits becomes an integer); a line without any is a parse error (the event keeps its
 * body and gets the `parse_error` tag). A `level` pair sets the event's level.
 * The same plugin as the Rust, Python and JavaScript templates'.
 *
 * Build: ./build.sh. Try it: printf 'user=ann level=warn\nnothing here\n' | runnel plugin test {{NAME}}.wasm
 */
#include "parser_plugin.h"
#define RUNNEL_WORLD parser_plugin
#include "runnel.h"

struct exports_runnel_plugin_parser_instance_t {
    char *separator;
    size_t separator_len;
};

bool exports_runnel_plugin_parser_static_instance_create(
    runnel_plugin_types_tree_t *config, exports_runnel_plugin_parser_own_instance_t *ret,
    parser_plugin_string_t *err) {
    rn_config c = rn_nodes_of(config);
    static const char *const known[] = {"separator", NULL};
    rn_error e;
    char *separator = NULL;
    bool ok = rn_config_check_keys(&c, known, &e) &&
              rn_config_str(&c, "separator", "=", &separator, &e) &&
              (separator[0] != 0 || rn_error_set(&e, "`separator` must not be empty"));
    runnel_plugin_types_tree_free(config);
    if (!ok) {
        free(separator);
        rn_error_into(&e, err);
        return false;
    }
    exports_runnel_plugin_parser_instance_t *self = rn_calloc(1, sizeof *self);
    self->separator = separator;
    self->separator_len = strlen(separator);
    *ret = exports_runnel_plugin_parser_instance_new(self);
    return true;
}

void exports_runnel_plugin_parser_instance_destructor(exports_runnel_plugin_parser_instance_t *self) {
    free(self->separator);
    free(self);
}

static bool is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Where `needle` starts in `hay`, or hay.len. */
static size_t find(rn_bytes hay, const char *needle, size_t needle_len) {
    for (size_t i = 0; i + needle_len <= hay.len; i++)
        if (memcmp(hay.ptr + i, needle, needle_len) == 0) return i;
    return hay.len;
}

/* A value of ASCII digits that fits an s64. */
static bool digits(rn_bytes v, int64_t *out) {
    if (v.len == 0 || v.len > 18) return false;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') return false;
        n = n * 10 + (v.ptr[i] - '0');
    }
    *out = n;
    return true;
}

/* Adds key=value to the fields object (a repeated key: the last value wins). */
static void put_pair(rn_output *out, rn_obj *fields, rn_bytes key, rn_bytes value) {
    char name[256];
    if (key.len >= sizeof name || !rn_utf8(key)) return;
    memcpy(name, key.ptr, key.len);
    name[key.len] = 0;
    int64_t n;
    size_t node = out->len;
    /* The members are scalars, one node each: a repeated key's node is overwritten. */
    for (size_t at = fields->node + 1; at < out->len; at++) {
        rn_bytes seen = {out->arena + (out->keys[at] >> 32), (size_t)(out->keys[at] & 0xffffffff)};
        if (seen.len == key.len && memcmp(seen.ptr, key.ptr, key.len) == 0) node = at;
    }
    if (node == out->len) {
        if (digits(value, &n)) rn_put_int(out, fields, name, n);
        else if (rn_utf8(value)) rn_put_strn(out, fields, name, value.ptr, value.len);
        else rn_put_bytes(out, fields, name, value.ptr, value.len);
    } else if (digits(value, &n)) {
        out->kinds[node] = RN_INT;
        out->payloads[node] = (uint64_t)n;
    } else {
        out->kinds[node] = rn_utf8(value) ? RN_STR : RN_BYTES;
        out->payloads[node] = rn_write(out, value.ptr, value.len);
    }
}

void exports_runnel_plugin_parser_method_instance_parse(
    exports_runnel_plugin_parser_instance_t *self, runnel_plugin_types_lines_t *input,
    exports_runnel_plugin_parser_parse_output_t *ret) {
    rn_output out = RN_OUTPUT_INIT;
    rn_span no_pairs = rn_write_span(&out, "no key=value pairs", 18);
    RN_ALLOC_LIST(ret->results, input->bodies.len);
    for (size_t i = 0; i < input->bodies.len; i++) {
        exports_runnel_plugin_parser_parse_result_t *result = &ret->results.ptr[i];
        rn_bytes line = {0, 0};
        rn_arena_span(input->arena.ptr, input->arena.len, input->bodies.ptr[i], &line);
        rn_obj fields = rn_object(&out);
        rn_level level = 0;
        bool has_level = false;
        for (size_t at = 0; at < line.len;) {
            while (at < line.len && is_space(line.ptr[at])) at++;
            size_t start = at;
            while (at < line.len && !is_space(line.ptr[at])) at++;
            rn_bytes word = {line.ptr + start, at - start};
            size_t sep = find(word, self->separator, self->separator_len);
            if (word.len == 0 || sep == word.len) continue;
            rn_bytes key = {word.ptr, sep};
            rn_bytes value = {word.ptr + sep + self->separator_len, word.len - sep - self->separator_len};
            put_pair(&out, &fields, key, value);
            if (rn_eq(key, "level")) has_level = rn_level_from(value, &level);
        }
        if (out.payloads[fields.node] == 0) {
            out.len = fields.node; /* take the empty object back */
            result->tag = EXPORTS_RUNNEL_PLUGIN_PARSER_PARSE_RESULT_ERROR;
            result->val.error = no_pairs;
            continue;
        }
        result->tag = EXPORTS_RUNNEL_PLUGIN_PARSER_PARSE_RESULT_OK;
        result->val.ok.fields = rn_end(&out, &fields);
        result->val.ok.level.is_some = has_level;
        result->val.ok.level.val = level;
    }
    rn_output_finish(&out, &ret->data);
    runnel_plugin_types_lines_free(input);
}
