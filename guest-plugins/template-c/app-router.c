/*
 * A Runnel router in C: sends events whose `status` field is at least `min_status`
 * (default 500) to the route `alerts` (give the route its channels in the source:
 * `routes = { alerts = [...] }`). The same plugin as the Rust, Python and JavaScript
 * templates'.
 *
 * Build: ./build.sh. Try it: runnel plugin test {{NAME}}.wasm --after combined < access.log
 */
#include "router_plugin.h"
#define RUNNEL_WORLD router_plugin
#include "runnel.h"

struct exports_runnel_plugin_router_instance_t {
    int64_t min_status;
};

bool exports_runnel_plugin_router_static_instance_create(
    runnel_plugin_types_tree_t *config, exports_runnel_plugin_router_own_instance_t *ret,
    router_plugin_string_t *err) {
    rn_config c = rn_nodes_of(config);
    static const char *const known[] = {"min_status", NULL};
    rn_error e;
    int64_t min_status;
    bool ok = rn_config_check_keys(&c, known, &e) &&
              rn_config_int(&c, "min_status", 500, &min_status, &e);
    runnel_plugin_types_tree_free(config);
    if (!ok) {
        rn_error_into(&e, err);
        return false;
    }
    exports_runnel_plugin_router_instance_t *self = rn_calloc(1, sizeof *self);
    self->min_status = min_status;
    *ret = exports_runnel_plugin_router_instance_new(self);
    return true;
}

void exports_runnel_plugin_router_instance_destructor(exports_runnel_plugin_router_instance_t *self) {
    free(self);
}

/* Route i is bit i of the masks `route` returns. */
void exports_runnel_plugin_router_method_instance_routes(exports_runnel_plugin_router_instance_t *self,
                                                          router_plugin_list_string_t *ret) {
    static const char *const routes[] = {"alerts"};
    rn_strings(ret, routes, 1);
}

bool exports_runnel_plugin_router_method_instance_reads(exports_runnel_plugin_router_instance_t *self,
                                                         router_plugin_list_string_t *ret) {
    static const char *const reads[] = {"status"};
    rn_strings(ret, reads, 1);
    return true;
}

/* One mask per event; 0 sends the event to the source's default channels. */
void exports_runnel_plugin_router_method_instance_route(exports_runnel_plugin_router_instance_t *self,
                                                         runnel_plugin_types_batch_t *input,
                                                         router_plugin_list_u64_t *ret) {
    rn_nodes v = rn_nodes_of(input);
    RN_ALLOC_LIST(*ret, input->events.len);
    for (size_t i = 0; i < input->events.len; i++) {
        size_t at;
        int64_t status;
        if (rn_event_get(&v, &input->events.ptr[i], "status", &at) && rn_as_int(&v, at, &status) &&
            status >= self->min_status)
            ret->ptr[i] = 1; /* bit 0: "alerts" */
    }
    runnel_plugin_types_batch_free(input);
}
