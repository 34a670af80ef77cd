/*
 * A Runnel interceptor in C: keeps the events whose `status` field is at least
 * `min_status` (default 400) and adds `class` = "client" (4xx) or "server" (5xx and up).
 * The same plugin as the Rust, Python and JavaScript templates', so they can be compared.
 *
 * Build: ./build.sh. Try it: runnel plugin test {{NAME}}.wasm --after combined < access.log
 */
#include "interceptor_plugin.h"
#define RUNNEL_WORLD interceptor_plugin
#include "runnel.h"

/* The configured plugin: built once in `create`, used for every batch. */
struct exports_runnel_plugin_interceptor_instance_t {
    int64_t min_status;
};

bool exports_runnel_plugin_interceptor_static_instance_create(
    runnel_plugin_types_tree_t *config, exports_runnel_plugin_interceptor_own_instance_t *ret,
    interceptor_plugin_string_t *err) {
    rn_config c = rn_nodes_of(config);
    static const char *const known[] = {"min_status", NULL};
    rn_error e;
    int64_t min_status;
    bool ok = rn_config_check_keys(&c, known, &e) &&
              rn_config_int(&c, "min_status", 400, &min_status, &e);
    runnel_plugin_types_tree_free(config);
    if (!ok) {
        rn_error_into(&e, err);
        return false;
    }
    exports_runnel_plugin_interceptor_instance_t *self = rn_calloc(1, sizeof *self);
    self->min_status = min_status;
    *ret = exports_runnel_plugin_interceptor_instance_new(self);
    return true;
}

void exports_runnel_plugin_interceptor_instance_destructor(
    exports_runnel_plugin_interceptor_instance_t *self) {
    free(self);
}

/* The fields this plugin reads, so the host sends only those (return false: all). */
bool exports_runnel_plugin_interceptor_method_instance_reads(
    exports_runnel_plugin_interceptor_instance_t *self, interceptor_plugin_list_string_t *ret) {
    (void)self;
    static const char *const reads[] = {"status"};
    rn_strings(ret, reads, 1);
    return true;
}

/* The object {"class": value}, written once per batch: every patch points at one. */
static rn_range class_object(rn_output *out, const char *value) {
    rn_obj o = rn_object(out);
    rn_put_str(out, &o, "class", value);
    return rn_end(out, &o);
}

/* One action per input event, in order. */
void exports_runnel_plugin_interceptor_method_instance_intercept(
    exports_runnel_plugin_interceptor_instance_t *self, runnel_plugin_types_batch_t *input,
    exports_runnel_plugin_interceptor_intercept_output_t *ret) {
    rn_nodes v = rn_nodes_of(input);
    rn_output out = RN_OUTPUT_INIT;
    rn_range client = class_object(&out, "client");
    rn_range server = class_object(&out, "server");
    RN_ALLOC_LIST(ret->actions, input->events.len);
    for (size_t i = 0; i < input->events.len; i++) {
        exports_runnel_plugin_interceptor_action_t *action = &ret->actions.ptr[i];
        size_t at;
        int64_t status;
        if (rn_event_get(&v, &input->events.ptr[i], "status", &at) && rn_as_int(&v, at, &status) &&
            status >= self->min_status) {
            action->tag = EXPORTS_RUNNEL_PLUGIN_INTERCEPTOR_ACTION_PATCH;
            action->val.patch = rn_merge(status < 500 ? client : server);
        } else {
            action->tag = EXPORTS_RUNNEL_PLUGIN_INTERCEPTOR_ACTION_DROP;
        }
    }
    rn_output_finish(&out, &ret->data);
    runnel_plugin_types_batch_free(input);
}
