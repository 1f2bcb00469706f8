"""How the C sources hang together: the quoted includes of mpsnorm/ form no cycle, each kernel
template header included on its own stops with its own message naming what it needs, and the
templates that are instantiated more than once undefine every macro their includer defines
for them."""
import os
import re
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(os.path.dirname(HERE), "mpsnorm")
FOLDERS = ("include", "core", "cpu")
COMPILER = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

# header -> what its "needs" message names (the includer provides it)
TEMPLATES = ["kernels_impl.h", "simd.h", "kern_box.h", "kern_lcn.h", "kern_lcn_state.h",
             "kern_lcn_typed.h", "kern_instance_norm.h"]
# instantiated once per element or compute type
REINSTANTIATED = ["kern_box.h", "kern_lcn_typed.h"]


def _includes_graph():
    graph = {}
    for folder in FOLDERS:
        directory = os.path.join(SOURCE, folder)
        for name in sorted(os.listdir(directory)):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            targets = []
            for included in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
                for candidate in [directory] + [os.path.join(SOURCE, d) for d in FOLDERS]:
                    full = os.path.normpath(os.path.join(candidate, included))
                    if os.path.exists(full):
                        targets.append(full)
                        break
                else:
                    pytest.fail("%s includes %s, which is in none of %s"
                                % (path, included, FOLDERS))
            graph[os.path.normpath(path)] = targets
    return graph


def test_the_includes_form_no_cycle():
    graph = _includes_graph()
    assert len(graph) > 30, "the sources were not found"
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in graph.get(node, []):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target] if target in path else [node, target]
                pytest.fail("include cycle: " + " -> ".join(os.path.relpath(p, SOURCE)
                                                              for p in cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])


@pytest.mark.skipif(COMPILER is None, reason="no C compiler (cc, gcc or clang)")
@pytest.mark.parametrize("header", TEMPLATES)
def test_a_template_alone_names_what_it_needs(header, tmp_path):
    source = tmp_path / "alone.c"
    source.write_text('#include "%s"\n' % header)
    command = [COMPILER, "-fsyntax-only", "-std=c99"] + \
              ["-I" + os.path.join(SOURCE, d) for d in FOLDERS] + [str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, "%s compiled without what it needs" % header
    assert "%s needs" % header in done.stderr, done.stderr[-2000:]


def _template_text(header):
    with open(os.path.join(SOURCE, "cpu", header), encoding="utf-8") as f:
        return f.read()


def _needs(text):
    check = re.search(r"#if (!defined\(\w+\)[\s|\\]*)+\n#error", text)
    return re.findall(r"defined\((\w+)\)", check.group(0)) if check else []


@pytest.mark.parametrize("header", REINSTANTIATED)
def test_a_reinstantiated_template_undefines_its_inputs_and_its_own_macros(header):
    text = _template_text(header)
    needed = _needs(text)
    assert len(needed) >= 5, "%s does not check what it needs" % header
    undefined = set(re.findall(r"^\s*#\s*undef\s+(\w+)", text, re.M))
    assert [name for name in needed if name not in undefined] == []
    # what it defines for a template it includes, that template undefines
    for included in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
        if included in REINSTANTIATED:
            undefined |= set(_needs(_template_text(included)))
    defined = re.findall(r"^\s*#\s*define\s+(\w+)", text, re.M)
    assert [name for name in defined if name not in undefined] == []
