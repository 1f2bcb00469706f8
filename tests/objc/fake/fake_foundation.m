/*
 * fake_foundation.m -- the Foundation of mps_declarations.h for the tests:
 * the root class NSObject, strings, NSError, NSException, arrays, and
 * libdispatch's dispatch_once_f. Memory management is the runtime's (ARC's
 * retain counts live in libobjc2); every object is counted in live_objects,
 * so a test can see one leak.
 */
#include "fake.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MPSNORM_FAKE_METAL_TRACE=1 prints every allocation and deallocation, to
 * find what a leak test counted. */
static int trace_objects(void)
{
    static int trace = -1;
    if (trace < 0) {
        const char *setting = getenv("MPSNORM_FAKE_METAL_TRACE");
        trace = setting != NULL && strcmp(setting, "1") == 0;
    }
    return trace;
}

@implementation NSObject {
    Class isa;
}

+ (instancetype)alloc
{
    fake_count(FAKE_COUNT_live_objects, 1);
    id object = class_createInstance(self, 0);
    if (trace_objects())
        fprintf(stderr, "fake alloc %s %p\n", class_getName(self), (__bridge void *)object);
    return object;
}

- (instancetype)init
{
    return self;
}

- (BOOL)respondsToSelector:(SEL)aSelector
{
    return class_respondsToSelector(object_getClass(self), aSelector);
}

- (void)dealloc
{
    if (trace_objects())
        fprintf(stderr, "fake dealloc %s %p\n", class_getName(object_getClass(self)),
                (__bridge void *)self);
    fake_count(FAKE_COUNT_live_objects, -1);
    object_dispose(self);
}

@end

/* ---- strings -------------------------------------------------------------- */

@implementation NSString

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    return self; /* immutable */
}

@end

@implementation NSString (NSStringExtensionMethods)

- (const char *)UTF8String
{
    return NULL; /* the concrete subclasses answer */
}

@end

/* What clang emits for @"..." with -fobjc-runtime=gnustep-2.0 (the runtime's
 * constant string layout); never allocated. */
@interface NSConstantString : NSString
@end

@implementation NSConstantString {
    uint32_t flags;
    uint32_t length;
    uint32_t size;
    uint32_t hash;
    const char *data;
}

- (const char *)UTF8String
{
    return data;
}

@end

/* A string made at run time (fake_string). */
@interface FakeString : NSString
- (instancetype)initWithText:(char *)text; /* takes ownership of a malloc'd text */
@end

@implementation FakeString {
    char *_text;
}

- (instancetype)initWithText:(char *)text
{
    self = [super init];
    _text = text;
    return self;
}

- (void)dealloc
{
    free(_text);
}

- (const char *)UTF8String
{
    return _text;
}

@end

static char *format_text(const char *format, va_list args)
{
    va_list again;
    va_copy(again, args);
    int length = vsnprintf(NULL, 0, format, args);
    char *text = malloc(length > 0 ? (size_t)length + 1 : 1);
    if (text == NULL)
        abort(); /* the fake does not model out-of-memory */
    vsnprintf(text, (size_t)length + 1, format, again);
    va_end(again);
    return text;
}

NSString *fake_string(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char *text = format_text(format, args);
    va_end(args);
    return [[FakeString alloc] initWithText:text];
}

/* ---- errors and exceptions ------------------------------------------------ */

@interface NSError ()
- (instancetype)initWithDescription:(NSString *)description;
@end

@implementation NSError {
    NSString *_description;
}

- (instancetype)initWithDescription:(NSString *)description
{
    self = [super init];
    _description = description;
    return self;
}

- (NSString *)localizedDescription
{
    return _description;
}

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    return self; /* immutable */
}

@end

NSError *fake_error(NSString *description)
{
    return [[NSError alloc] initWithDescription:description];
}

@interface NSException ()
- (instancetype)initWithReason:(NSString *)reason;
@end

@implementation NSException {
    NSString *_reason;
}

- (instancetype)initWithReason:(NSString *)reason
{
    self = [super init];
    _reason = reason;
    return self;
}

- (NSString *)reason
{
    return _reason;
}

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    return self; /* immutable */
}

@end

void fake_raise(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char *text = format_text(format, args);
    va_end(args);
    @throw [[NSException alloc] initWithReason:[[FakeString alloc] initWithText:text]];
}

/* ---- arrays --------------------------------------------------------------- */

/* Storage outside ARC's view: each slot holds one retain of its object. */
@implementation NSArray {
@protected
    void **_items;
    NSUInteger _count;
    NSUInteger _capacity;
}

- (void)dealloc
{
    for (NSUInteger i = 0; i < _count; i++) {
        id released = (__bridge_transfer id)_items[i];
        (void)released;
    }
    free(_items);
}

- (NSUInteger)count
{
    return _count;
}

- (id)objectAtIndex:(NSUInteger)index
{
    if (index >= _count)
        fake_raise("-[NSArray objectAtIndex:]: index %lu beyond bounds [0 .. %lu]",
                   (unsigned long)index, (unsigned long)_count);
    return (__bridge id)_items[index];
}

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    return self; /* the fakes never mutate an NSArray they hand out as immutable */
}

@end

@implementation NSMutableArray

- (void)addObject:(id)object
{
    if (object == nil)
        fake_raise("-[NSMutableArray addObject:]: object cannot be nil");
    if (_count == _capacity) {
        NSUInteger capacity = _capacity > 0 ? 2 * _capacity : 4;
        void **items = realloc(_items, capacity * sizeof *items);
        if (items == NULL)
            abort();
        _items = items;
        _capacity = capacity;
    }
    _items[_count++] = (__bridge_retained void *)object;
}

@end

@implementation NSMutableArray (NSMutableArrayCreation)

+ (instancetype)arrayWithCapacity:(NSUInteger)numItems
{
    NSMutableArray *array = [[self alloc] init];
    (void)numItems; /* a hint (NSArray.h); storage grows as needed */
    return array;
}

@end

/* ---- libdispatch ---------------------------------------------------------- */

/* dispatch/once.h: runs function once per predicate; later callers wait for it
 * and then see everything it wrote. */
void dispatch_once_f(dispatch_once_t *predicate, void *context, void (*function)(void *))
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    if (__atomic_load_n(predicate, __ATOMIC_ACQUIRE) == ~0l)
        return;
    pthread_mutex_lock(&lock);
    if (__atomic_load_n(predicate, __ATOMIC_ACQUIRE) != ~0l) {
        function(context);
        __atomic_store_n(predicate, ~0l, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
}
