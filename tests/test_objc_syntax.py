"""Compile-time checks of the Metal backend (objc/) on machines without macOS.

The Objective-C files can only run on a Mac with a GPU. Here clang type-checks
them against tests/objc/mps_declarations.h, a header of declarations
transcribed from Apple's SDK headers (objc/metal_imports.h includes it instead
of the frameworks when MPSNORM_OBJC_DECLARATIONS is defined):

* test_objc_syntax: every objc/*.m compiles with -fobjc-arc -Werror -Wall -Wextra,
  so a misspelt selector, a wrong argument type, a missing protocol method or
  an ARC error fails here.
* test_objc_availability: the same files, checked for a macOS 10.13 target
  with -Wunguarded-availability: every use of an API newer than 10.13 sits
  inside @available(macOS 10.13.4, *) (and nothing newer than 10.13.4 is used
  at all).
* test_check_has_teeth: copies of a file with a misspelt selector, a wrong
  argument type, a message to the wrong class, or a removed @available guard
  must FAIL, proving the checks above can fail.
* test_selectors_in_apple_api / test_declarations_match_apple_api: every
  selector the .m files send, and every member, superclass and protocol the
  declarations header declares, is listed in shared/apple_api.txt (the API
  facts read from Apple's headers), except a short list of extras named with
  the header they were read in.

clang is required when CI is set (CI installs it: apt-get install -y clang);
elsewhere its absence skips the compile checks with a reason.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBJC = os.path.join(ROOT, "objc")
DECLARATIONS = os.path.join(ROOT, "tests", "objc", "mps_declarations.h")
APPLE_API = os.path.join(os.path.dirname(ROOT), "shared", "apple_api.txt")
M_FILES = sorted(glob.glob(os.path.join(OBJC, "*.m")))
EXPECTED_M_FILES = {"metal_context.m", "metal_instance_norm.m", "metal_lcn.m", "metal_pool.m",
                    "metal_run.m"}

SYNTAX_FLAGS = [
    "-fsyntax-only", "-x", "objective-c", "-fobjc-arc", "-fobjc-runtime=macosx-13.0",
    "-Werror", "-Wall", "-Wextra",
    "-DMPSNORM_OBJC_DECLARATIONS",
    "-I", os.path.join(ROOT, "tests", "objc"),
    "-I", os.path.join(ROOT, "mpsnorm", "include"),
    "-I", os.path.join(ROOT, "mpsnorm", "core"),
    "-I", OBJC,  # for copies compiled outside objc/
]

# Declarations an Apple target needs from libc, for the availability pass
# (the host's glibc headers do not parse for an Apple target). They only have
# to type-check the calls objc/ makes.
LIBC_SHIMS = {
    "pthread.h": """
typedef struct { long opaque[8]; } pthread_mutex_t;
typedef struct { long opaque[2]; } pthread_mutexattr_t;
int pthread_mutex_init(pthread_mutex_t *mutex, const pthread_mutexattr_t *attr);
int pthread_mutex_lock(pthread_mutex_t *mutex);
int pthread_mutex_unlock(pthread_mutex_t *mutex);
int pthread_mutex_destroy(pthread_mutex_t *mutex);
""",
    "stdio.h": """
#include <stdarg.h>
#include <stddef.h>
int snprintf(char *s, size_t n, const char *format, ...);
int vsnprintf(char *s, size_t n, const char *format, va_list args);
""",
    "stdlib.h": """
#include <stddef.h>
void *malloc(size_t size);
void *calloc(size_t count, size_t size);
void *realloc(void *pointer, size_t size);
void free(void *pointer);
""",
    "string.h": """
#include <stddef.h>
void *memcpy(void *to, const void *from, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memset(void *s, int c, size_t n);
size_t strlen(const char *s);
""",
    "time.h": """
typedef long time_t;
struct timespec { time_t tv_sec; long tv_nsec; };
typedef enum { CLOCK_MONOTONIC = 6 } clockid_t;
int clock_gettime(clockid_t clock_id, struct timespec *tp)
    __attribute__((availability(macos, introduced = 10.12)));
""",
}
AVAILABILITY_TARGET = "x86_64-apple-macos10.13"

# Selectors and declarations read in Apple's headers that shared/apple_api.txt
# does not list (it has no NSException and no NSFastEnumeration entries).
EXTRA_API = {
    ("NSException", "reason"): "Foundation.framework/Versions/C/Headers/NSException.h",
}
EXTRA_DECLARATIONS = {
    "NSException": "NSObject <NSCopying, NSSecureCoding> (Foundation NSException.h)",
    "NSFastEnumeration": "(Foundation NSEnumerator.h)",
}


# ---- clang ---------------------------------------------------------------------

def find_clang():
    clang = os.environ.get("MPSNORM_CLANG") or shutil.which("clang")
    if clang:
        return clang
    if os.environ.get("CI"):
        pytest.fail("clang is not installed; CI must install it (apt-get install -y clang)")
    pytest.skip("clang is not installed (apt-get install -y clang); the Objective-C "
                "syntax check needs it")


def compile_objc(clang, path, extra=()):
    command = [clang] + SYNTAX_FLAGS + list(extra) + [path]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def shim_dir(tmp_path):
    folder = tmp_path / "libc_shims"
    folder.mkdir(exist_ok=True)
    for name, text in LIBC_SHIMS.items():
        (folder / name).write_text(text)
    return str(folder)


def availability_flags(clang, tmp_path):
    if sys.platform == "darwin":
        # The shims stand in for glibc headers that do not parse for an Apple
        # target; on a Mac the Linux CI's run of this pass is the one that counts.
        pytest.skip("the availability pass runs on Linux (libc shims for an Apple target)")
    flags = ["-target", AVAILABILITY_TARGET, "-ffreestanding", "-nostdlibinc",
             "-isystem", shim_dir(tmp_path), "-Wunguarded-availability"]
    probe = subprocess.run([clang, "-target", AVAILABILITY_TARGET, "-x", "objective-c",
                            "-fsyntax-only", "-"], input="int x;\n", capture_output=True,
                           text=True)
    if probe.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("clang cannot target %s: %s" % (AVAILABILITY_TARGET, probe.stderr))
        pytest.skip("this clang cannot target %s" % AVAILABILITY_TARGET)
    return flags


def test_objc_files_present():
    names = {os.path.basename(p) for p in M_FILES}
    assert EXPECTED_M_FILES <= names, "objc/ is missing %s" % sorted(EXPECTED_M_FILES - names)


@pytest.mark.parametrize("path", M_FILES, ids=[os.path.basename(p) for p in M_FILES])
def test_objc_syntax(path):
    clang = find_clang()
    result = compile_objc(clang, path)
    assert result.returncode == 0, "clang rejected %s:\n%s" % (path, result.stderr)
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("path", M_FILES, ids=[os.path.basename(p) for p in M_FILES])
def test_objc_availability(path, tmp_path):
    clang = find_clang()
    result = compile_objc(clang, path, availability_flags(clang, tmp_path))
    assert result.returncode == 0, "unguarded API use in %s:\n%s" % (path, result.stderr)


# ---- teeth ---------------------------------------------------------------------

MUTATIONS = [
    # (file, original text, replacement, what clang must say, availability pass?)
    ("metal_lcn.m", "[kernel setAlpha:(params)->alpha];", "[kernel setAlfa:(params)->alpha];",
     "setAlfa", False),
    ("metal_lcn.m", "kernelWidth:(NSUInteger)params->kernel_width", "kernelWidth:params",
     "incompatible pointer to integer conversion", False),
    ("metal_instance_norm.m", "[kernel setEpsilon:params->epsilon];",
     "[kernel setEpsilon:params];", "float", False),
    ("metal_lcn.m", "[kernel setPrimaryEdgeMode:MPSImageEdgeModeZero];",
     "[forward_kernel(cache, device, params) setPrimaryEdgeMode:MPSImageEdgeModeZero];",
     "setPrimaryEdgeMode", False),
    ("metal_pool.m", "[images addObject:image];", "[images addObject:image count:1];",
     "addObject:count:", False),
    ("metal_run.m", "destinationSlice:(NSUInteger)s", "destinationSlice:texture",
     "incompatible pointer to integer conversion", False),
    ("metal_instance_norm.m", "- (NSUInteger)numberOfFeatureChannels\n",
     "- (NSUInteger)numberOfFeatureChannel\n", "numberOfFeatureChannels", False),
    ("metal_lcn.m", "    if (@available(macOS 10.13.4, *)) {\n        lcn_call call",
     "    if (1) {\n        lcn_call call", "only available on macOS 10.13.4", True),
    ("metal_context.m", "        if (@available(macOS 10.14, *))\n"
     "            *max_buffer_length = [device maxBufferLength];",
     "        *max_buffer_length = [device maxBufferLength];",
     "only available on macOS 10.14", True),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m[3] for m in MUTATIONS])
def test_check_has_teeth(mutation, tmp_path):
    clang = find_clang()
    name, original, replacement, expected, availability = mutation
    text = open(os.path.join(OBJC, name)).read()
    assert text.count(original) >= 1, "mutation target %r not found in %s" % (original, name)
    extra = availability_flags(clang, tmp_path) if availability else []

    control = tmp_path / "control" / name
    control.parent.mkdir()
    control.write_text(text)
    result = compile_objc(clang, str(control), extra)
    assert result.returncode == 0, "the unmutated copy must compile:\n" + result.stderr

    mutant = tmp_path / "mutant" / name
    mutant.parent.mkdir()
    mutant.write_text(text.replace(original, replacement, 1))
    result = compile_objc(clang, str(mutant), extra)
    assert result.returncode != 0, "clang accepted %s with %r -> %r" % (name, original,
                                                                         replacement)
    assert expected in result.stderr, result.stderr


# ---- selectors against shared/apple_api.txt -------------------------------------

def load_apple_api():
    if not os.path.exists(APPLE_API):
        pytest.skip("shared/apple_api.txt is not beside the checkout (%s)" % APPLE_API)
    entries, declarations = set(), {}
    with open(APPLE_API) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("# @interface ") or line.startswith("# @protocol "):
                kind, rest = line[2:].split(" ", 1)
                name = re.match(r"[\w()]+", rest).group(0)
                declarations[(kind[1:], name)] = rest.strip()
                continue
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) >= 3:
                entries.add((fields[0], fields[1].replace(" ", ""), fields[2]))
    return entries, declarations


def strip_code(text):
    """Source without comments, string and character literals."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'@?"(?:\\.|[^"\\\n])*"', ' "" ', text)
    text = re.sub(r"'(?:\\.|[^'\\\n])'", " 0 ", text)
    return text


def top_level(text):
    """text with every parenthesized group emptied (casts, calls, conditions)."""
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\([^()]*\)", "()", text)
    return text


def message_selectors(text):
    """Selectors of the Objective-C message sends in `text` (rough parse: the
    innermost brackets first; a bracket is a message when it reads
    `receiver selector` or `receiver key:arg ...`)."""
    text = strip_code(text)
    found = set()
    pattern = re.compile(r"\[([^\[\]]*)\]")
    while True:
        match = pattern.search(text)
        if match is None:
            return found
        body = top_level(match.group(1)).strip()
        keywords = re.findall(r"([A-Za-z_]\w*)\s*:", body)
        selector = None
        if keywords:
            receiver = body[:body.find(keywords[0])].strip()
            if receiver and re.search(r"[\w)]$", receiver):
                selector = "".join(k + ":" for k in keywords)
        else:
            unary = re.match(r"^(.+?)\s+([A-Za-z_]\w*)$", body)
            if unary and re.search(r"[\w)]$", unary.group(1)):
                selector = unary.group(2)
        if selector:
            found.add(selector)
        text = text[:match.start()] + ("_M_" if selector else "_S_") + text[match.end():]


def own_selectors(text):
    """Selectors declared by the classes the .m files define themselves."""
    own = set()
    for block in re.findall(r"@interface\s+\w+\s*:.*?@end", strip_code(text), flags=re.S):
        for declaration in re.findall(r"^\s*[-+]\s*\([^;{]*", block, flags=re.M):
            own.add(method_selector(declaration))
    return own


def method_selector(declaration):
    body = top_level(re.sub(r"__attribute__\s*\(\(.*?\)\)", "", declaration, flags=re.S))
    body = re.sub(r"\bMPSDECL_\w+(\(\S*?\))?", "", body)
    body = body.lstrip("-+ \n").replace("()", " ", 1)
    keywords = re.findall(r"([A-Za-z_]\w*)\s*:", body)
    if keywords:
        return "".join(k + ":" for k in keywords)
    return re.search(r"[A-Za-z_]\w*", body).group(0)


def test_selector_parser_finds_known_sends():
    sample = """
        MPSImage *image = [[MPSImage alloc] initWithDevice:device imageDescriptor:d];
        x = buffers[k] + values[i * 2];
        return [command_buffer status];
        n = (unsigned long)[buffer length];
        [blit synchronizeResource:buffers[k]];
        /* [commented out:1] */ s = "[not a message]";
    """
    assert message_selectors(sample) == {"alloc", "initWithDevice:imageDescriptor:", "status",
                                         "length", "synchronizeResource:"}


def test_selectors_in_apple_api():
    entries, _ = load_apple_api()
    known = {name for (_, _, name) in entries} | {name for (_, name) in EXTRA_API}
    used, own = set(), set()
    for path in M_FILES:
        text = open(path).read()
        used |= message_selectors(text)
        own |= own_selectors(text)
    # The parse must see the core of the backend, or it proves nothing.
    for selector in ("encodeBatchToCommandBuffer:sourceImages:destinationStates:destinationImages:",
                     "encodeBatchToCommandBuffer:sourceGradients:sourceImages:gradientStates:"
                     "destinationGradients:",
                     "resultStateForSourceImage:sourceStates:destinationImage:",
                     "initWithDevice:kernelWidth:kernelHeight:", "setAlpha:", "setPs:",
                     "copyFromBuffer:sourceOffset:sourceBytesPerRow:sourceBytesPerImage:"
                     "sourceSize:toTexture:destinationSlice:destinationLevel:destinationOrigin:",
                     "copyFromTexture:sourceSlice:sourceLevel:sourceOrigin:sourceSize:toBuffer:"
                     "destinationOffset:destinationBytesPerRow:destinationBytesPerImage:",
                     "temporaryImageWithCommandBuffer:imageDescriptor:", "setReadCount:",
                     "texture", "pixelSize", "newBufferWithLength:options:",
                     "respondsToSelector:", "setStorageMode:", "commit", "waitUntilCompleted",
                     "status", "gradientForGamma", "setEpsilon:", "initWithDevice:dataSource:"):
        assert selector in used, "the selector parse missed %s" % selector
    unknown = sorted(used - own - known)
    assert not unknown, ("selectors used in objc/ but absent from shared/apple_api.txt: %s"
                         % unknown)


def declaration_blocks(text):
    """(kind, head, body) of each @interface/@protocol ... @end (forward
    declarations such as `@protocol X;` skipped)."""
    blocks, current = [], None
    for line in strip_code(text).splitlines():
        stripped = line.strip()
        start = re.match(r"@(interface|protocol)\s+(.*)$", stripped)
        if current is None and start and not stripped.endswith(";"):
            current = [start.group(1), start.group(2).strip(), []]
        elif current is not None and stripped == "@end":
            blocks.append((current[0], current[1], "\n".join(current[2])))
            current = None
        elif current is not None:
            current[2].append(line)
    return blocks


def declared_members(text):
    """(kind, owner, name) of every member in the declarations header, and
    (kind, owner, head) of every class and protocol it declares."""
    members, headers = set(), []
    for kind, head, body in declaration_blocks(text):
        if kind == "protocol":
            owner = head.split("<")[0].strip()
        else:
            owner = re.sub(r"<[^>]*>", "", head.split(":")[0]).replace(" ", "")
        headers.append((kind, owner, head))
        for sign, rest in re.findall(r"^\s*([-+])\s*(\([^;]*);", body, flags=re.M | re.S):
            members.add((sign + "method", owner, method_selector(sign + rest)))
        for attributes, rest in re.findall(r"^\s*@property\s*\(([^)]*)\)([^;]*);", body,
                                           flags=re.M):
            rest = re.sub(r"__attribute__\s*\(\(.*?\)\)|\bMPSDECL_\w+(\([^)]*\))?", "", rest)
            name = re.findall(r"[A-Za-z_]\w*", rest)[-1]
            members.add(("property", owner, name))
            if "readonly" not in attributes:
                members.add(("setter", owner, "set" + name[0].upper() + name[1:] + ":"))
    return members, headers


def declared_constants_and_functions(text):
    """Enumerators and C functions (Metal/MPS ones) of the declarations header."""
    text = strip_code(text)
    constants = set()
    for body in re.findall(r"typedef\s+enum\s+\w+\s*:\s*\w+\s*\{(.*?)\}", text, flags=re.S):
        constants |= set(re.findall(r"^\s*([A-Za-z_]\w*)", body, flags=re.M))
    functions = set(re.findall(r"^(?:extern\s+)?[\w<>\s*]*?\b((?:MTL|MPS)[A-Za-z]+)\s*\(",
                               text, flags=re.M))
    return constants, functions


def test_declarations_match_apple_api():
    entries, declarations = load_apple_api()
    text = open(DECLARATIONS).read()
    constants, functions = declared_constants_and_functions(text)
    assert {"MTLCreateSystemDefaultDevice", "MPSSupportsMTLDevice"} <= functions, functions
    assert {"MTLCommandBufferStatusCompleted", "MTLResourceStorageModeShared",
            "MPSImageFeatureChannelFormatFloat16", "MTLStorageModePrivate"} <= constants, constants
    unknown = sorted([("constant", c) for c in constants if ("constant", "-", c) not in entries] +
                     [("function", f) for f in functions if ("function", "-", f) not in entries])
    assert not unknown, "not in shared/apple_api.txt: %s" % unknown
    members, headers = declared_members(text)
    assert len(members) > 40, "the declarations parse found too little: %d" % len(members)
    missing = sorted(m for m in members if m not in entries and (m[1], m[2]) not in EXTRA_API)
    assert not missing, ("declared in mps_declarations.h but not in shared/apple_api.txt "
                         "(kind, owner, name): %s" % missing)
    for kind, owner, head in headers:
        if "(" in owner or owner in EXTRA_DECLARATIONS:
            continue
        apple = declarations.get((kind, owner))
        assert apple is not None, "%s %s is not declared in shared/apple_api.txt" % (kind, owner)
        ours = re.sub(r"<\s*__covariant\s+\w+\s*>|<\s*ObjectType\s*>", "", head)
        normalize = lambda s: re.sub(r"\s+", " ", s.replace(" ,", ",")).strip()
        assert normalize(ours) == normalize(apple), (
            "%s %s: declared as %r, Apple declares %r" % (kind, owner, ours, apple))
