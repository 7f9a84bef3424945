#!/usr/bin/env bash
# The container image must carry every shared library the binaries load.
#
#   dockerfile_libs_test.sh DOCKERFILE BINARY...
#
# For each BINARY: ldd → each library's real path → its Debian package (dpkg -S). That package must
# be present in the Dockerfile's runtime (last) stage, i.e. one of:
#   - named in the stage's `apt-get install` list;
#   - a dependency (recursively) of a named package, as this machine's dpkg knows them
#     (e.g. libgrpc29 comes with libgrpc++1.51);
#   - in the slim base image: Priority: required packages, apt, and their dependencies
#     (libc6, libstdc++6, zlib1g, liblzma5...).
# Fails on a library dpkg does not know (a self-built library that would be missing in the image).
set -euo pipefail

dockerfile="${1:?Dockerfile}"
shift
[[ $# -gt 0 ]] || { echo "usage: $0 DOCKERFILE BINARY..." >&2; exit 2; }

python3 - "$dockerfile" "$@" <<'EOF'
import os, re, subprocess, sys

dockerfile, binaries = sys.argv[1], sys.argv[2:]

# --- The runtime stage's install list --------------------------------------------------------------
text = open(dockerfile).read().replace("\\\n", " ")
stages = re.split(r"(?mi)^FROM\s", text)
runtime = stages[-1]
listed = set()
for line in runtime.splitlines():
    if not re.match(r"\s*RUN\s", line):
        continue
    for cmd in re.split(r"&&|;|\|\|", line):
        words = cmd.split()
        if "apt-get" in words and "install" in words:
            for w in words[words.index("install") + 1:]:
                if not w.startswith("-"):
                    listed.add(w.split("=")[0])
if not listed:
    sys.exit(f"FAIL: no apt-get install list in the last stage of {dockerfile}")

# --- What dpkg knows (one query for every installed package) -----------------------------------
info = {}
out = subprocess.run(["dpkg-query", "-W", "-f",
                      "${Package}\t${Status}\t${Priority}\t${Depends}\t${Pre-Depends}\n"],
                     capture_output=True, text=True, check=True).stdout
for row in out.splitlines():
    pkg, status, priority, depends, predepends = (row.split("\t") + [""] * 5)[:5]
    if "installed" not in status.split():
        continue
    deps = []
    for clause in filter(None, (c.strip() for c in (depends + "," + predepends).split(","))):
        for alt in clause.split("|"):
            name = re.sub(r"\(.*?\)", "", alt).strip().split(":")[0]
            if name:
                deps.append(name)
    info[pkg] = (priority, deps)

def dep_closure(roots):
    done, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p not in done:
            done.add(p)
            todo.extend(info.get(p, ("", []))[1])
    return done

closure = dep_closure(listed)
# debian:*-slim is a minbase debootstrap: every Priority: required package, apt, and their
# dependencies.
base = dep_closure([p for p, (prio, _) in info.items() if prio == "required"] + ["apt"])

def candidates(path):
    c = {path, os.path.realpath(path)}
    # usrmerge: dpkg may have recorded /lib/... for a file found at /usr/lib/... or the reverse.
    for x in list(c):
        c.add(x[len("/usr"):] if x.startswith("/usr/lib/") else "/usr" + x if x.startswith("/lib/") else x)
    return c

# Every library of every binary, then one `dpkg -S` for all of them.
libs = {}  # path -> binary
failures = []
for binary in binaries:
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"ldd {binary} failed: {r.stderr.strip()}")
        continue
    for line in r.stdout.splitlines():
        line = line.strip()
        if "=> not found" in line:
            failures.append(f"{binary}: {line}")
            continue
        m = re.match(r"\S+ => (/\S+)", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.setdefault(m.group(1), binary)  # else: linux-vdso
all_paths = sorted(set().union(*(candidates(p) for p in libs))) if libs else []
owner = {}
if all_paths:
    r = subprocess.run(["dpkg", "-S"] + all_paths, capture_output=True, text=True)
    for row in r.stdout.splitlines():
        if ": " in row and not row.startswith("diversion"):
            pkgs, path = row.split(": ", 1)
            owner[path] = pkgs.split(",")[0].strip().split(":")[0]

seen = {}
for path, binary in sorted(libs.items()):
    pkg = next((owner[c] for c in candidates(path) if c in owner), None)
    if pkg is None:
        failures.append(f"{binary}: {path} belongs to no Debian package")
        continue
    if pkg in listed:
        why = "listed"
    elif pkg in closure:
        why = "dependency of a listed package"
    elif pkg in base:
        why = "in the slim base (required packages and their dependencies)"
    else:
        failures.append(f"{os.path.basename(binary)}: {os.path.basename(path)} is in package {pkg}, "
                        f"which the runtime stage does not install")
        continue
    seen.setdefault(pkg, (os.path.basename(path), why))

for pkg, (lib, why) in sorted(seen.items()):
    print(f"ok   {pkg:32} {lib:40} {why}")
for f in failures:
    print("FAIL " + f)
print(f"{len(seen)} packages checked, {len(failures)} problem(s)")
sys.exit(1 if failures else 0)
EOF
