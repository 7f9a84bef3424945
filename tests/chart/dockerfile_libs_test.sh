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
#   - Priority: required (part of every debian:*-slim base image: libc6, libstdc++6, zlib1g...).
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

# --- What dpkg knows -------------------------------------------------------------------------------
def dpkg_field(pkg, field):
    r = subprocess.run(["dpkg-query", "-W", "-f", "${" + field + "}", pkg],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None

def deps_of(pkg):
    out = []
    for field in ("Depends", "Pre-Depends"):
        val = dpkg_field(pkg, field) or ""
        for clause in filter(None, (c.strip() for c in val.split(","))):
            for alt in clause.split("|"):
                name = re.sub(r"\(.*?\)", "", alt).strip().split(":")[0]
                if name:
                    out.append(name)
    return out

closure, todo = set(), list(listed)
while todo:
    p = todo.pop()
    if p in closure:
        continue
    closure.add(p)
    if dpkg_field(p, "Status") and "installed" in dpkg_field(p, "Status"):
        todo.extend(deps_of(p))

def package_of(path):
    candidates = [path, os.path.realpath(path)]
    # usrmerge: dpkg may have recorded /lib/... for a file found at /usr/lib/... or the reverse.
    for c in list(candidates):
        if c.startswith("/usr/lib/"):
            candidates.append(c[len("/usr"):])
        elif c.startswith("/lib/"):
            candidates.append("/usr" + c)
    for c in candidates:
        r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
        if r.returncode == 0:
            # "pkg:arch: /path" (diversions aside): first line, first field.
            return r.stdout.splitlines()[0].split(": ")[0].split(":")[0]
    return None

failures, seen = [], {}
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
        m = re.match(r"(\S+) => (/\S+)", line) or re.match(r"(/\S+) \(", line)
        if not m:
            continue  # linux-vdso
        path = m.group(2) if m.lastindex == 2 else m.group(1)
        pkg = package_of(path)
        if pkg is None:
            failures.append(f"{binary}: {path} belongs to no Debian package")
            continue
        if pkg in listed:
            why = "listed"
        elif pkg in closure:
            why = "dependency of a listed package"
        elif dpkg_field(pkg, "Priority") == "required":
            why = "Priority: required (in the slim base)"
        else:
            why = None
            failures.append(f"{os.path.basename(binary)}: {os.path.basename(path)} is in package {pkg}, "
                            f"which the runtime stage does not install")
        if why:
            seen.setdefault(pkg, (os.path.basename(path), why))

for pkg, (lib, why) in sorted(seen.items()):
    print(f"ok   {pkg:32} {lib:40} {why}")
for f in failures:
    print("FAIL " + f)
print(f"{len(seen)} packages checked, {len(failures)} problem(s)")
sys.exit(1 if failures else 0)
EOF
