/*
 * A Runnel cleaner in C: masks the fields named in `fields` (default: `user` and
 * `password`), keeping their last `keep` characters (default 0).
 * The same plugin as the Rust, Python and JavaScript templates'.
 *
 * Build: ./build.sh. Try it: echo '{"fields":{"user":"ann","n":1}}' | runnel plugin test {{NAME}}.wasm --events-json
 */
#include "cleaner_plugin.h"
#define RUNNEL_WORLD cleaner_plugin
#include "runnel.h"

struct exports_runnel_plugin_cleaner_instance_t {
    char **fields; /* the names to mask */
    size_t n_fields;
    int64_t keep;
};

void exports_runnel_plugin_cleaner_instance_destructor(exports_runnel_plugin_cleaner_instance_t *self) {
    for (size_t i = 0; i < self->n_fields; i++) free(self->fields[i]);
    free(self->fields);
    free(self);
}

/* The `fields` setting: an array of strings. */
static bool field_names(const rn_config *c, exports_runnel_plugin_cleaner_instance_t *self,
                        rn_error *e) {
    size_t list;
    if (!rn_get(c, 0, "fields", &list)) {
        static const char *const defaults[] = {"user", "password"};
        self->n_fields = 2;
        self->fields = rn_calloc(2, sizeof *self->fields);
        for (size_t i = 0; i < 2; i++) self->fields[i] = strdup(defaults[i]);
        return true;
    }
    if (rn_kind(c, list) != RN_ARRAY) return rn_error_set(e, "`fields` must be an array of strings");
    self->fields = rn_calloc(c->payloads[list], sizeof *self->fields);
    rn_iter it = rn_children(c, list);
    size_t at;
    rn_bytes name;
    while (rn_next(c, &it, NULL, &at)) {
        if (!rn_as_str(c, at, &name)) return rn_error_set(e, "`fields` must be an array of strings");
        char *copy = rn_calloc(name.len + 1, 1);
        memcpy(copy, name.ptr, name.len);
        self->fields[self->n_fields++] = copy;
    }
    return true;
}

bool exports_runnel_plugin_cleaner_static_instance_create(
    runnel_plugin_types_tree_t *config, exports_runnel_plugin_cleaner_own_instance_t *ret,
    cleaner_plugin_string_t *err) {
    rn_config c = rn_nodes_of(config);
    static const char *const known[] = {"fields", "keep", NULL};
    exports_runnel_plugin_cleaner_instance_t *self = rn_calloc(1, sizeof *self);
    rn_error e;
    bool ok = rn_config_check_keys(&c, known, &e) && field_names(&c, self, &e) &&
              rn_config_int(&c, "keep", 0, &self->keep, &e) &&
              (self->keep >= 0 || rn_error_set(&e, "`keep` must not be negative"));
    runnel_plugin_types_tree_free(config);
    if (!ok) {
        exports_runnel_plugin_cleaner_instance_destructor(self);
        rn_error_into(&e, err);
        return false;
    }
    *ret = exports_runnel_plugin_cleaner_instance_new(self);
    return true;
}

/* The host sends only these fields. */
bool exports_runnel_plugin_cleaner_method_instance_reads(exports_runnel_plugin_cleaner_instance_t *self,
                                                          cleaner_plugin_list_string_t *ret) {
    rn_strings(ret, (const char *const *)self->fields, self->n_fields);
    return true;
}

/* `text` with all but its last `keep` characters (not bytes) replaced by `*`. */
static void put_masked(rn_output *out, rn_obj *obj, const char *key, rn_bytes text, int64_t keep) {
    size_t chars = 0, tail = text.len;
    for (size_t i = 0; i < text.len; i++) chars += (text.ptr[i] & 0xc0) != 0x80;
    size_t masked = chars > (uint64_t)keep ? chars - (size_t)keep : 0;
    /* The tail starts at the character after the first `masked` ones. */
    for (size_t i = 0, seen = 0; i < text.len; i++) {
        if ((text.ptr[i] & 0xc0) != 0x80 && seen++ == masked) {
            tail = i;
            break;
        }
    }
    size_t len = masked + (text.len - tail);
    char *buf = rn_calloc(len, 1);
    memset(buf, '*', masked);
    memcpy(buf + masked, text.ptr + tail, text.len - tail);
    rn_put_strn(out, obj, key, buf, len);
    free(buf);
}

void exports_runnel_plugin_cleaner_method_instance_clean(
    exports_runnel_plugin_cleaner_instance_t *self, runnel_plugin_types_batch_t *input,
    exports_runnel_plugin_cleaner_clean_output_t *ret) {
    rn_nodes v = rn_nodes_of(input);
    rn_output out = RN_OUTPUT_INIT;
    RN_ALLOC_LIST(ret->patches, input->events.len);
    for (size_t i = 0; i < input->events.len; i++) {
        rn_obj masked = rn_object(&out);
        for (size_t f = 0; f < self->n_fields; f++) {
            size_t at;
            rn_bytes text;
            if (rn_event_get(&v, &input->events.ptr[i], self->fields[f], &at) && rn_as_str(&v, at, &text))
                put_masked(&out, &masked, self->fields[f], text, self->keep);
        }
        if (out.payloads[masked.node] == 0) {
            out.len = masked.node; /* nothing to mask: no patch (the event stays as it was) */
            continue;
        }
        ret->patches.ptr[i].is_some = true;
        ret->patches.ptr[i].val = rn_merge(rn_end(&out, &masked));
    }
    rn_output_finish(&out, &ret->data);
    runnel_plugin_types_batch_free(input);
}
