/*
 * Unit tests of runnel.h, run natively (the host's cc, with AddressSanitizer and
 * UBSan) by tests/e2e/plugin_sdks.rs against the bindings of a `runnel plugin new
 * --lang c` project:
 *
 *     cc -std=c11 -Wall -Wextra -Werror -fsanitize=address,undefined \
 *        -I PROJECT/gen -I PROJECT test_runnel.c -o test_runnel && ./test_runnel
 *
 * The host's functions are stand-ins here: log lines are kept to be checked, state is
 * one slot.
 */
#include "interceptor_plugin.h"
#define RUNNEL_WORLD interceptor_plugin
#include "runnel.h"

static int failures;
#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* ---- stand-ins for the host and the generated helpers this test uses ---- */

static char last_log[2048];
static runnel_plugin_host_level_t last_level;

void runnel_plugin_host_log(runnel_plugin_host_level_t level, interceptor_plugin_string_t *message) {
    last_level = level;
    snprintf(last_log, sizeof last_log, "%.*s", (int)message->len, (const char *)message->ptr);
}
void runnel_plugin_host_counter(interceptor_plugin_string_t *name, uint64_t delta) {
    (void)name;
    (void)delta;
}
int64_t runnel_plugin_host_now(void) { return 42; }

static uint8_t state_value[64];
static size_t state_len;
static bool state_set;

bool runnel_plugin_state_get(interceptor_plugin_list_u8_t *key, interceptor_plugin_list_u8_t *ret) {
    (void)key;
    if (!state_set) return false;
    ret->ptr = malloc(state_len ? state_len : 1);
    memcpy(ret->ptr, state_value, state_len);
    ret->len = state_len;
    return true;
}
bool runnel_plugin_state_set(interceptor_plugin_list_u8_t *key, interceptor_plugin_list_u8_t *value,
                             interceptor_plugin_string_t *err) {
    (void)key;
    if (value->len > sizeof state_value) {
        interceptor_plugin_string_dup(err, "state over its cap");
        return false;
    }
    memcpy(state_value, value->ptr, value->len);
    state_len = value->len;
    state_set = true;
    return true;
}
void runnel_plugin_state_delete(interceptor_plugin_list_u8_t *key) {
    (void)key;
    state_set = false;
}
void interceptor_plugin_string_dup(interceptor_plugin_string_t *ret, const char *s) {
    ret->len = strlen(s);
    ret->ptr = malloc(ret->len + 1);
    memcpy(ret->ptr, s, ret->len);
}
void interceptor_plugin_string_free(interceptor_plugin_string_t *ret) {
    free(ret->ptr);
    ret->ptr = NULL;
    ret->len = 0;
}

/* The output's tree, viewed as a plugin would view an input. */
static rn_nodes view(const runnel_plugin_types_output_data_t *d) {
    return rn_nodes_from(d->arena.ptr, d->arena.len, d->nodes.kinds.ptr, d->nodes.kinds.len,
                         d->nodes.keys.ptr, d->nodes.keys.len, d->nodes.payloads.ptr,
                         d->nodes.payloads.len);
}

static void free_data(runnel_plugin_types_output_data_t *d) {
    free(d->arena.ptr);
    free(d->nodes.kinds.ptr);
    free(d->nodes.keys.ptr);
    free(d->nodes.payloads.ptr);
    free(d->tags.ptr);
}

static void writes_a_tree_the_reader_reads_back(void) {
    rn_output out = RN_OUTPUT_INIT;
    rn_obj before = rn_object(&out); /* a tree before the one tested: ranges are absolute */
    rn_put_int(&out, &before, "x", 1);
    rn_end(&out, &before);

    rn_obj root = rn_object(&out);
    rn_put_int(&out, &root, "a", -7);
    rn_put_str(&out, &root, "b", "zoë");
    rn_obj c = rn_put_object(&out, &root, "c");
    rn_obj d = rn_put_array(&out, &c, "d");
    rn_put_uint(&out, &d, NULL, UINT64_MAX);
    rn_put_uint(&out, &d, NULL, 5);
    rn_obj e = rn_put_object(&out, &d, NULL);
    rn_put_bool(&out, &e, "e", true);
    rn_end(&out, &e);
    rn_end(&out, &d);
    rn_put_null(&out, &c, "f");
    rn_end(&out, &c);
    rn_put_float(&out, &root, "g", 1.5);
    rn_put_bytes(&out, &root, "h", "\xff\x00", 2);
    rn_range range = rn_end(&out, &root);
    uint32_t first_tag = rn_tag(&out, "host", "gw-7");
    rn_tag(&out, "zone", "b");
    rn_range tags = rn_tags_since(&out, first_tag);
    rn_patch patch = rn_merge(range);

    runnel_plugin_types_output_data_t data;
    rn_output_finish(&out, &data);
    CHECK(out.arena == NULL && out.len == 0); /* handed over */
    rn_nodes v = view(&data);

    CHECK(range.start == 2 && range.len == v.len - 2);
    CHECK(patch.fields.is_some && patch.fields.val.tag == RUNNEL_PLUGIN_TYPES_FIELDS_UPDATE_MERGE);
    CHECK(patch.fields.val.val.merge.start == 2 && !patch.level.is_some && patch.tags.len == 0);
    CHECK(rn_replace(range).fields.val.tag == RUNNEL_PLUGIN_TYPES_FIELDS_UPDATE_REPLACE);
    CHECK(tags.start == 0 && tags.len == 2 && data.tags.len == 2);
    CHECK(rn_eq(rn_text(&v, data.tags.ptr[1].key), "zone"));
    CHECK(rn_eq(rn_text(&v, data.tags.ptr[0].value), "gw-7"));

    size_t at;
    int64_t i;
    uint64_t u;
    double f;
    bool b;
    rn_bytes s;
    CHECK(rn_skip(&v, 0) == 2);
    CHECK(rn_skip(&v, range.start) == v.len);
    CHECK(rn_get(&v, range.start, "a", &at) && rn_as_int(&v, at, &i) && i == -7);
    CHECK(!rn_as_uint(&v, at, &u)); /* negative */
    CHECK(rn_get(&v, range.start, "b", &at) && rn_as_str(&v, at, &s) && rn_eq(s, "zoë"));
    CHECK(rn_get(&v, range.start, "g", &at) && rn_as_number(&v, at, &f) && f == 1.5);
    CHECK(rn_get(&v, range.start, "h", &at) && !rn_as_str(&v, at, &s) && rn_as_bytes(&v, at, &s) &&
          s.len == 2 && s.ptr[0] == 0xff);
    CHECK(!rn_get(&v, range.start, "x", &at)); /* in the other tree */
    CHECK(!rn_get(&v, range.start, "e", &at)); /* nested, not a member */

    size_t cat, dat;
    CHECK(rn_get(&v, range.start, "c", &cat) && rn_kind(&v, cat) == RN_OBJECT);
    CHECK(rn_get(&v, cat, "f", &at) && rn_kind(&v, at) == RN_NULL);
    CHECK(rn_get(&v, cat, "d", &dat) && rn_kind(&v, dat) == RN_ARRAY);
    rn_iter it = rn_children(&v, dat);
    rn_bytes key;
    CHECK(rn_next(&v, &it, &key, &at) && key.len == 0 && rn_kind(&v, at) == RN_UINT &&
          rn_as_uint(&v, at, &u) && u == UINT64_MAX && !rn_as_int(&v, at, &i));
    CHECK(rn_next(&v, &it, NULL, &at) && rn_kind(&v, at) == RN_INT && rn_as_uint(&v, at, &u) && u == 5);
    CHECK(rn_next(&v, &it, NULL, &at) && rn_get(&v, at, "e", &at) && rn_as_bool(&v, at, &b) && b);
    CHECK(!rn_next(&v, &it, NULL, &at));
    CHECK(rn_kind(&v, v.len) == RN_NONE);
    free_data(&data);
}

static void refuses_malformed_trees_and_spans(void) {
    /* An object that claims five members and has one. */
    uint8_t kinds[] = {RN_OBJECT, RN_INT};
    uint64_t keys[] = {0, rn_pack(0, 1)};
    uint64_t payloads[] = {5, 1};
    const uint8_t arena[] = "k";
    rn_nodes v = rn_nodes_from(arena, 1, kinds, 2, keys, 2, payloads, 2);
    CHECK(rn_skip(&v, 0) == v.len);
    size_t at;
    CHECK(rn_get(&v, 0, "k", &at) && at == 1);
    CHECK(!rn_get(&v, 0, "missing", &at)); /* stops at the end, reads nothing past it */

    /* A key span past the arena is no key; a string span past it is no string. */
    uint64_t bad_keys[] = {0, rn_pack(1, 5)};
    uint8_t str_kinds[] = {RN_OBJECT, RN_STR};
    uint64_t str_payloads[] = {1, rn_pack(0, 2)};
    rn_nodes w = rn_nodes_from(arena, 1, str_kinds, 2, bad_keys, 2, str_payloads, 2);
    rn_bytes s;
    CHECK(!rn_get(&w, 0, "k", &at));
    CHECK(!rn_as_str(&w, 1, &s));
    /* Columns of different lengths: the shortest counts. */
    CHECK(rn_nodes_from(arena, 1, kinds, 2, keys, 1, payloads, 2).len == 1);
}

static void checks_utf8(void) {
    const char *good[] = {"", "plain", "zoë", "日本", "😀", "\xf4\x8f\xbf\xbf"};
    const char *bad[] = {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80",
                         "a\x80", "\xf0\x9f\x98"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) CHECK(rn_utf8(rn_cstr(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(!rn_utf8(rn_cstr(bad[i])));
}

/* A config tree {min_status: 450, name: "gw", on: true, ratio: 2} written with the
 * writer, as the host sends it. */
static void reads_config_and_names_what_is_wrong(void) {
    rn_output out = RN_OUTPUT_INIT;
    rn_obj root = rn_object(&out);
    rn_put_int(&out, &root, "min_status", 450);
    rn_put_str(&out, &root, "name", "gw");
    rn_put_bool(&out, &root, "on", true);
    rn_put_int(&out, &root, "ratio", 2);
    rn_end(&out, &root);
    runnel_plugin_types_output_data_t data;
    rn_output_finish(&out, &data);
    rn_config c = view(&data);

    rn_error err;
    static const char *const known[] = {"min_status", "name", "on", "ratio", NULL};
    static const char *const fewer[] = {"min_status", "name", NULL};
    CHECK(rn_config_check_keys(&c, known, &err));
    CHECK(!rn_config_check_keys(&c, fewer, &err) && strcmp(err.message, "unknown key `on`") == 0);

    int64_t i;
    double f;
    bool b;
    char *s;
    CHECK(rn_config_int(&c, "min_status", 400, &i, &err) && i == 450);
    CHECK(rn_config_int(&c, "absent", 400, &i, &err) && i == 400);
    CHECK(!rn_config_int(&c, "name", 400, &i, &err) && strcmp(err.message, "`name` must be an integer") == 0);
    CHECK(rn_config_float(&c, "ratio", 1.0, &f, &err) && f == 2.0);
    CHECK(rn_config_bool(&c, "on", false, &b, &err) && b);
    CHECK(!rn_config_bool(&c, "ratio", false, &b, &err));
    CHECK(rn_config_str(&c, "name", "x", &s, &err) && strcmp(s, "gw") == 0);
    free(s);
    CHECK(rn_config_str(&c, "absent", "dflt", &s, &err) && strcmp(s, "dflt") == 0);
    free(s);
    CHECK(!rn_config_str(&c, "on", "x", &s, &err) && strcmp(err.message, "`on` must be a string") == 0);

    interceptor_plugin_string_t message;
    rn_error_into(&err, &message);
    CHECK(message.len == strlen(err.message) && memcmp(message.ptr, err.message, message.len) == 0);
    interceptor_plugin_string_free(&message);
    free_data(&data);
}

static void talks_to_the_host(void) {
    rn_log(RUNNEL_PLUGIN_TYPES_LEVEL_WARN, "%d events, %s", 3, "late");
    CHECK(last_level == RUNNEL_PLUGIN_TYPES_LEVEL_WARN && strcmp(last_log, "3 events, late") == 0);
    CHECK(rn_now() == 42);

    rn_bytes value;
    rn_error err;
    CHECK(!rn_state_get("k", 1, &value));
    CHECK(rn_state_set("k", 1, "v1", 2, &err));
    CHECK(rn_state_get("k", 1, &value) && value.len == 2 && memcmp(value.ptr, "v1", 2) == 0);
    free((void *)value.ptr);
    char big[100] = {0};
    CHECK(!rn_state_set("k", 1, big, sizeof big, &err) && strcmp(err.message, "state over its cap") == 0);
    rn_state_delete("k", 1);
    CHECK(!rn_state_get("k", 1, &value));

    rn_level level;
    CHECK(rn_level_from(rn_cstr("warn"), &level) && level == RUNNEL_PLUGIN_TYPES_LEVEL_WARN);
    CHECK(!rn_level_from(rn_cstr("loud"), &level));
    CHECK(strcmp(rn_level_name(RUNNEL_PLUGIN_TYPES_LEVEL_FATAL), "fatal") == 0);

    interceptor_plugin_list_string_t list;
    static const char *const names[] = {"status", "host"};
    rn_strings(&list, names, 2);
    CHECK(list.len == 2 && list.ptr[1].len == 4 && memcmp(list.ptr[1].ptr, "host", 4) == 0);
    for (size_t i = 0; i < list.len; i++) interceptor_plugin_string_free(&list.ptr[i]);
    free(list.ptr);
}

int main(void) {
    writes_a_tree_the_reader_reads_back();
    refuses_malformed_trees_and_spans();
    checks_utf8();
    reads_config_and_names_what_is_wrong();
    talks_to_the_host();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("runnel.h: all checks passed\n");
    return 0;
}
