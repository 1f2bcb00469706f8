/*
 * metal_imports.h -- the one place the Objective-C files of objc/ get their
 * system declarations from.
 *
 * A normal (macOS) build includes Apple's framework headers. The syntax
 * check in tests/test_objc_syntax.py defines MPSNORM_OBJC_DECLARATIONS and
 * puts tests/objc on the include path; the declarations transcribed from
 * Apple's headers in tests/objc/mps_declarations.h then stand in for the
 * frameworks, so clang type-checks every selector on machines without the
 * macOS SDK. Nothing else differs between the two builds.
 */
#ifndef MPSNORM_OBJC_METAL_IMPORTS_H
#define MPSNORM_OBJC_METAL_IMPORTS_H

#if defined(MPSNORM_OBJC_DECLARATIONS)
#include "mps_declarations.h"
#else
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>
#include <dispatch/dispatch.h>
#endif

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#endif /* MPSNORM_OBJC_METAL_IMPORTS_H */
