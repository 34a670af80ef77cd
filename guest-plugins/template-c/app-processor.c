/*
 * A Runnel processor in C: passes every event on and counts them by level; every
 * `tick_ms` (set it in the plugin's section of the agent config) and when the agent
 * stops, it emits one `level-counts` event with the counts of the window.
 * The same plugin as the Rust, Python and JavaScript templates'.
 *
 * Build: ./build.sh. Try it: runnel plugin test {{NAME}}.wasm --after combined < access.log
 */
#include "processor_plugin.h"
#define RUNNEL_WORLD processor_plugin
#include "runnel.h"

#define LEVELS (RUNNEL_PLUGIN_TYPES_LEVEL_UNKNOWN + 1)

struct exports_runnel_plugin_processor_instance_t {
    uint64_t counts[LEVELS]; /* events per level in this window */
};

bool exports_runnel_plugin_processor_static_instance_create(
    runnel_plugin_types_tree_t *config, exports_runnel_plugin_processor_own_instance_t *ret,
    processor_plugin_string_t *err) {
    rn_config c = rn_nodes_of(config);
    static const char *const known[] = {NULL};
    rn_error e;
    bool ok = rn_config_check_keys(&c, known, &e);
    runnel_plugin_types_tree_free(config);
    if (!ok) {
        rn_error_into(&e, err);
        return false;
    }
    *ret = exports_runnel_plugin_processor_instance_new(rn_calloc(1, sizeof(exports_runnel_plugin_processor_instance_t)));
    return true;
}

void exports_runnel_plugin_processor_instance_destructor(exports_runnel_plugin_processor_instance_t *self) {
    free(self);
}

/* No fields: the level travels anyway. */
bool exports_runnel_plugin_processor_method_instance_reads(exports_runnel_plugin_processor_instance_t *self,
                                                            processor_plugin_list_string_t *ret) {
    RN_ALLOC_LIST(*ret, 0); /* an empty list: no fields */
    return true;
}

void exports_runnel_plugin_processor_method_instance_process(
    exports_runnel_plugin_processor_instance_t *self, runnel_plugin_types_batch_t *input,
    exports_runnel_plugin_processor_process_output_t *ret) {
    RN_ALLOC_LIST(ret->events, input->events.len);
    for (size_t i = 0; i < input->events.len; i++) {
        rn_level level = input->events.ptr[i].level;
        self->counts[level < LEVELS ? level : RUNNEL_PLUGIN_TYPES_LEVEL_UNKNOWN]++;
        ret->events.ptr[i].tag = EXPORTS_RUNNEL_PLUGIN_PROCESSOR_EMIT_KEEP;
        ret->events.ptr[i].val.keep = (uint32_t)i;
    }
    rn_output out = RN_OUTPUT_INIT; /* nothing new: an empty output */
    rn_output_finish(&out, &ret->data);
    runnel_plugin_types_batch_free(input);
}

/* The window's counts as one new event (none when nothing came). */
void exports_runnel_plugin_processor_method_instance_tick(exports_runnel_plugin_processor_instance_t *self,
                                                           int64_t now,
                                                           exports_runnel_plugin_processor_process_output_t *ret) {
    rn_output out = RN_OUTPUT_INIT;
    rn_obj fields = rn_object(&out);
    for (rn_level l = 0; l < LEVELS; l++)
        if (self->counts[l]) rn_put_uint(&out, &fields, rn_level_name(l), self->counts[l]);
    if (out.payloads[fields.node] == 0) {
        rn_output_free(&out);
        RN_ALLOC_LIST(ret->events, 0);
        rn_output_finish(&out, &ret->data);
        return;
    }
    memset(self->counts, 0, sizeof self->counts);
    RN_ALLOC_LIST(ret->events, 1);
    exports_runnel_plugin_processor_emit_t *emit = &ret->events.ptr[0];
    emit->tag = EXPORTS_RUNNEL_PLUGIN_PROCESSOR_EMIT_NEW;
    runnel_plugin_types_event_t *event = &emit->val.new_;
    event->fields = rn_end(&out, &fields);
    event->name = rn_write_span(&out, "level-counts", 12);
    event->level = RUNNEL_PLUGIN_TYPES_LEVEL_INFO;
    event->timestamp.is_some = true;
    event->timestamp.val = now;
    rn_output_finish(&out, &ret->data);
}
