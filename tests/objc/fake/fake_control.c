/*
 * fake_control.c -- the settings and counters of fake_table.h: storage, the
 * MPSNORM_FAKE_METAL environment variable, and the C functions tests call
 * (through ctypes on the loaded libmpsnorm) to set, read and reset them.
 */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_table.h"
#include "metal_route.h"
#include "metal_selfcheck.h"

#define FAKE_CONTROL_API __attribute__((visibility("default")))
#define FAKE_TOTAL 1
#define FAKE_NOW 0

#define SETTING_ENUM(name, value, doc) FAKE_##name,
enum { FAKE_SETTINGS(SETTING_ENUM) SETTING_COUNT };
#undef SETTING_ENUM
#define COUNTER_ENUM(name, kind, doc) FAKE_COUNT_##name,
enum { FAKE_COUNTERS(COUNTER_ENUM) COUNTER_COUNT };
#undef COUNTER_ENUM

#define SETTING_NAME(name, value, doc) #name,
#define SETTING_DEFAULT(name, value, doc) value,
#define SETTING_DOC(name, value, doc) doc,
static const char *const setting_names[] = {FAKE_SETTINGS(SETTING_NAME)};
static const int64_t setting_defaults[] = {FAKE_SETTINGS(SETTING_DEFAULT)};
static const char *const setting_docs[] = {FAKE_SETTINGS(SETTING_DOC)};
#undef SETTING_NAME
#undef SETTING_DEFAULT
#undef SETTING_DOC

#define COUNTER_NAME(name, kind, doc) #name,
#define COUNTER_KIND(name, kind, doc) kind,
#define COUNTER_DOC(name, kind, doc) doc,
static const char *const counter_names[] = {FAKE_COUNTERS(COUNTER_NAME)};
static const int counter_resets[] = {FAKE_COUNTERS(COUNTER_KIND)};
static const char *const counter_docs[] = {FAKE_COUNTERS(COUNTER_DOC)};
#undef COUNTER_NAME
#undef COUNTER_KIND
#undef COUNTER_DOC

static int64_t settings[SETTING_COUNT];
static int64_t counters[COUNTER_COUNT];
static int64_t image_inits; /* MPSImage inits since the last reset, for image_init_fails_at */
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static int setting_index(const char *name, size_t length)
{
    for (int i = 0; i < SETTING_COUNT; i++)
        if (strlen(setting_names[i]) == length && strncmp(setting_names[i], name, length) == 0)
            return i;
    return -1;
}

/* Defaults, then MPSNORM_FAKE_METAL="name=value,name=value" (unknown names are ignored
 * here; tests/objc/fake_metal.py refuses them). */
static void load_settings(void)
{
    for (int i = 0; i < SETTING_COUNT; i++)
        __atomic_store_n(&settings[i], setting_defaults[i], __ATOMIC_SEQ_CST);
    const char *text = getenv("MPSNORM_FAKE_METAL");
    while (text != NULL && *text != '\0') {
        const char *end = strchr(text, ',');
        size_t length = end != NULL ? (size_t)(end - text) : strlen(text);
        const char *equals = memchr(text, '=', length);
        if (equals != NULL) {
            int index = setting_index(text, (size_t)(equals - text));
            if (index >= 0)
                __atomic_store_n(&settings[index], strtoll(equals + 1, NULL, 10),
                                 __ATOMIC_SEQ_CST);
        }
        text = end != NULL ? end + 1 : NULL;
    }
}

int64_t fake_setting_value(int setting)
{
    pthread_once(&settings_once, load_settings);
    return __atomic_load_n(&settings[setting], __ATOMIC_SEQ_CST);
}

void fake_count(int counter, int64_t delta)
{
    __atomic_add_fetch(&counters[counter], delta, __ATOMIC_SEQ_CST);
}

int64_t fake_counter_value(int counter)
{
    return __atomic_load_n(&counters[counter], __ATOMIC_SEQ_CST);
}

int fake_image_init_should_fail(void)
{
    int64_t fail_at = fake_setting_value(FAKE_image_init_fails_at);
    int64_t this_init = __atomic_add_fetch(&image_inits, 1, __ATOMIC_SEQ_CST);
    return fail_at > 0 && this_init == fail_at;
}

/* ---- what tests call ------------------------------------------------------ */

/* Sets a setting; 0, or -1 for an unknown name. */
FAKE_CONTROL_API int mpsnorm_fake_metal_set(const char *name, int64_t value)
{
    pthread_once(&settings_once, load_settings);
    int index = name != NULL ? setting_index(name, strlen(name)) : -1;
    if (index < 0)
        return -1;
    __atomic_store_n(&settings[index], value, __ATOMIC_SEQ_CST);
    return 0;
}

/* The value of a setting or counter; INT64_MIN for an unknown name. */
FAKE_CONTROL_API int64_t mpsnorm_fake_metal_get(const char *name)
{
    if (name == NULL)
        return INT64_MIN;
    int index = setting_index(name, strlen(name));
    if (index >= 0)
        return fake_setting_value(index);
    for (int i = 0; i < COUNTER_COUNT; i++)
        if (strcmp(counter_names[i], name) == 0)
            return __atomic_load_n(&counters[i], __ATOMIC_SEQ_CST);
    return INT64_MIN;
}

/* Every setting back to its default, every FAKE_TOTAL counter to 0. */
FAKE_CONTROL_API void mpsnorm_fake_metal_reset(void)
{
    pthread_once(&settings_once, load_settings);
    for (int i = 0; i < SETTING_COUNT; i++)
        __atomic_store_n(&settings[i], setting_defaults[i], __ATOMIC_SEQ_CST);
    for (int i = 0; i < COUNTER_COUNT; i++)
        if (counter_resets[i])
            __atomic_store_n(&counters[i], 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&image_inits, 0, __ATOMIC_SEQ_CST);
}

/* Forgets the Metal self-check's verdicts; enabled = 0 trusts every class from
 * now on (as MPSNORM_METAL_SELFCHECK=0 does), 1 checks each class again. */
FAKE_CONTROL_API void mpsnorm_fake_metal_selfcheck(int enabled)
{
    mpsnorm_metal_selfcheck_reset(enabled);
}

/* The bytes of one tensor below which backend="auto" keeps a call on the CPU
 * (metal_route.h; -1 restores the library's default). */
FAKE_CONTROL_API void mpsnorm_fake_metal_min_call_bytes(int64_t bytes)
{
    mpsnorm_metal_route_set_min_call_bytes(bytes < 0 ? MPSNORM_METAL_MIN_CALL_BYTES
                                                     : (uint64_t)bytes);
}

/* The i-th name of the table (settings first, then counters) and what it
 * means; NULL past the end. *is_setting says which kind it is. */
FAKE_CONTROL_API const char *mpsnorm_fake_metal_name(int i, int *is_setting, const char **doc)
{
    if (i < 0 || i >= SETTING_COUNT + COUNTER_COUNT)
        return NULL;
    int setting = i < SETTING_COUNT;
    if (is_setting != NULL)
        *is_setting = setting;
    if (doc != NULL)
        *doc = setting ? setting_docs[i] : counter_docs[i - SETTING_COUNT];
    return setting ? setting_names[i] : counter_names[i - SETTING_COUNT];
}
