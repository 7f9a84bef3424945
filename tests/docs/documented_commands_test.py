#!/usr/bin/env python3
"""Runs every single-machine command that README.md and docs/*.md show, against a real plugin.

The commands are read from the docs themselves: every line of a ```sh or ```console block (a
console line starts with "$ ") that calls stratactl, strata-csi or a tools/ script. Chains
(`a; b`, `a && b`) are split and trailing comments dropped. Each command runs in document order,
with the docs' example values replaced by real ones (PLACEHOLDERS below: a volume id made by
the setup instead of `vol-6158c1d2d1ad275d`, a temp folder instead of /var/lib/strata, ...), and
must exit 0 (or as EXPECTED_EXIT says). Where a console block shows output, its first line is
checked against the real one: a table's header words, or a message's first word. A documented
command that no longer works, a renamed column, or a new example whose values the setup does not
provide fails this test.

Usage: documented_commands_test.py SOURCE_DIR BUILD_DIR
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SOURCE, BUILD = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
BIN = {
    "strata-csi": os.path.join(BUILD, "cmd", "strata-csi"),
    "stratactl": os.path.join(BUILD, "cmd", "stratactl"),
    "csi-walk": os.path.join(BUILD, "cmd", "csi-walk"),
}
# Single-machine docs; docs/cluster-install.md runs stratactl through kubectl exec.
DOC_FILES = ["README.md"] + sorted(
    os.path.join("docs", name)
    for name in os.listdir(os.path.join(SOURCE, "docs"))
    if name.endswith(".md") and name != "cluster-install.md"
) + sorted(
    os.path.join("docs", "drivers", name)
    for name in os.listdir(os.path.join(SOURCE, "docs", "drivers"))
    if name.endswith(".md")
)
PROGRAMS = ("stratactl", "strata-csi", "./tools/")

# Documented commands not run here, each with the reason and where it is tested instead.
NOT_RUN = {
    "./tools/test.sh": "the test command itself (CI runs it)",
    "stratactl quarantine restore": "needs quarantined content: tests/e2e/recovery_e2e_test.cc",
    "stratactl quarantine purge": "needs quarantined content: tests/e2e/recovery_e2e_test.cc",
    "stratactl inspect pvc-": "inspect by volume name is not built yet (issue 14, open)",
}
# Building or running a benchmark (any bench/ target): they run on demand, never under ctest, so
# a new benchmark in the docs needs no entry above.
BENCHMARK = re.compile(r"(?:^|\s)(?:build/bench/|bench_\w+(?:\s|$))")
EXPECTED_EXIT = {"stratactl check": {0, 3}}  # 3: problems found (docs/stratactl.md)


def blocks(path):
    """Yields (line number, kind, lines) for each fenced sh/console block of `path`."""
    with open(os.path.join(SOURCE, path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)", lines[i])
        if not m:
            i += 1
            continue
        kind, start, body = m.group(1), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if kind in ("sh", "console"):
            yield start + 1, kind, body


def strip_comment(command):
    # A '#' outside quotes that starts a word begins a comment.
    quote = None
    for i, c in enumerate(command):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or command[i - 1] == " "):
            return command[:i].rstrip()
    return command.rstrip()


def split_chain(command):
    return [part.strip() for part in re.split(r"\s*(?:;|&&)\s*", command) if part.strip()]


def documented_commands():
    """(where, command, shown output lines) in document order."""
    found = []
    for path in DOC_FILES:
        for line_no, kind, body in blocks(path):
            j = 0
            while j < len(body):
                line, where = body[j], f"{path}:{line_no + j}"
                if kind == "console":
                    if not line.startswith("$ "):
                        j += 1
                        continue
                    text, output = line[2:], []
                    j += 1
                    while j < len(body) and not body[j].startswith("$ "):
                        if body[j].strip():
                            output.append(body[j])
                        j += 1
                else:
                    text, output = line, []
                    j += 1
                    while text.endswith("\\") and j < len(body):
                        text = text[:-1] + " " + body[j].strip()
                        j += 1
                text = strip_comment(text.strip())
                if not text.startswith(PROGRAMS):
                    continue
                parts = split_chain(text)
                for k, part in enumerate(parts):
                    found.append((where, part, output if k == len(parts) - 1 else []))
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv, env, check=True, timeout=120):
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"setup step failed: {' '.join(argv)}\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def main():
    failures = []
    temp = tempfile.mkdtemp(prefix="strata-docs-test-")
    root, out = os.path.join(temp, "root"), os.path.join(temp, "out")
    os.makedirs(out)
    os.makedirs(os.path.join(temp, "backup"))
    csi_socket = os.path.join(temp, "csi.sock")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(p) for p in BIN.values()] + [env["PATH"]])
    env["STRATA_ADMIN_ENDPOINT"] = "unix://" + os.path.join(root, "admin.sock")
    env["CSI_ENDPOINT"] = "unix://" + csi_socket
    env["NODE_NAME"] = "docs-node"
    plugin = None
    try:
        commands = documented_commands()
        # The plugin is started by the README's own command (its first strata-csi line).
        start = next(c for w, c, _ in commands if c.startswith("strata-csi --endpoint"))
        values = {
            "unix:///csi/csi.sock": "unix://" + csi_socket,
            "/var/lib/strata": root,
            "127.0.0.1:9810": "127.0.0.1:0",
        }

        def substitute(command):
            for doc_value, real in sorted(values.items(), key=lambda kv: -len(kv[0])):
                command = command.replace(doc_value, real)
            return command

        log = open(os.path.join(temp, "strata-csi.log"), "w")
        plugin = subprocess.Popen(["bash", "-c", "exec " + substitute(start)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while run([BIN["stratactl"], "version"], env, check=False) == "" or not os.path.exists(
                csi_socket):
            if plugin.poll() is not None or time.time() > deadline:
                raise SystemExit("the README's strata-csi command did not start:\n" +
                                 open(log.name).read())
            time.sleep(0.2)
        while subprocess.run([BIN["csi-walk"], "info"], env=env, capture_output=True).returncode:
            if time.time() > deadline:
                raise SystemExit("the plugin never became ready")
            time.sleep(0.2)

        # What the examples assume exists: images busybox:1.36 (a docker-save archive),
        # demo:v2 and web:1; a volume made from web:1 with a snapshot named nightly.
        layout = os.path.join(temp, "sample")
        run([os.path.join(SOURCE, "tools", "make-sample-image.sh"), layout, "v1"], env)
        busybox = os.path.join(temp, "busybox.tar")
        run(["skopeo", "copy", "-q", f"oci:{layout}:v1",
             f"docker-archive:{busybox}:busybox:1.36"], env)
        for name in ("demo:v2", "web:1"):
            run([BIN["stratactl"], "import", layout, "--name", name], env)
        volume = run([BIN["csi-walk"], "create", "pvc-docs", "--image", "web:1"], env)
        staging = os.path.join(temp, "staging")
        run([BIN["csi-walk"], "stage", volume, staging], env)
        with open(os.path.join(staging, "app.conf"), "w") as f:
            f.write("written by the pod\n")
        snapshot = run([BIN["csi-walk"], "snapshot", volume, "nightly"], env)
        run([BIN["csi-walk"], "unstage", volume, staging], env)
        layers = json.loads(run([BIN["stratactl"], "layers", "-o", "json"], env))
        layer = layers[0]["chain_id"][: len("sha256:") + 12]
        values.update({
            "VOLUME": volume,
            "SNAPSHOT": snapshot,
            "vol-6158c1d2d1ad275d": volume,
            "pvc-0c3e…": "pvc-docs",
            "sha256:8e2d4c1ab3f0": layer,
            "./busybox.tar": busybox,
            "/srv/images/busybox.tar": busybox,
            "/var/tmp/": out + "/",
            "/backup/": os.path.join(temp, "backup") + "/",
        })

        ran = 0
        for where, command, shown in commands:
            if command == start:
                continue  # already running
            skipped = next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)),
                           None)
            if not skipped and BENCHMARK.search(command):
                skipped = "benchmarks run on demand (bench/), never under ctest"
            if skipped:
                print(f"not run: {where}: {command} ({skipped})")
                continue
            real = substitute(command)
            command_env, cwd = env, temp
            if command.startswith("./tools/"):  # README's two commands run from the checkout
                cwd = SOURCE
                command_env = dict(env, STRATA_BUILD_DIR=BUILD,
                                   STRATA_DEMO_DIR=os.path.join(temp, "demo"),
                                   STRATA_DEMO_METRICS_PORT=str(free_port()))
            result = subprocess.run(["bash", "-c", real], env=command_env, cwd=cwd,
                                    capture_output=True, text=True, timeout=600)
            ran += 1
            allowed = next((codes for prefix, codes in EXPECTED_EXIT.items()
                            if command.startswith(prefix)), {0})
            if result.returncode not in allowed:
                failures.append(f"{where}: `{command}` (run as `{real}`) exited "
                                f"{result.returncode}:\n{result.stdout}{result.stderr}")
                continue
            if shown:
                documented, actual = shown[0], (result.stdout.split("\n") or [""])[0]
                if re.fullmatch(r"[A-Z][A-Z ]+", documented.strip()):  # a table header
                    if documented.split() != actual.split():
                        failures.append(f"{where}: `{command}` header is\n  {actual}\n"
                                        f"the docs show\n  {documented}")
                elif re.match(r"[A-Z][a-z]{2,} ", documented) and (
                        documented.split()[0] != (actual.split() or [""])[0]):  # a message
                    failures.append(f"{where}: `{command}` printed\n  {actual}\n"
                                    f"the docs show\n  {documented}")
            print(f"ok: {where}: {command}")
        print(f"{ran} documented commands run, {len(failures)} failed")
    finally:
        if plugin is not None and plugin.poll() is None:
            plugin.send_signal(signal.SIGTERM)
            try:
                plugin.wait(timeout=60)
            except subprocess.TimeoutExpired:
                plugin.kill()
        subprocess.run(["umount", "-R", "-l", os.path.join(temp, "staging")],
                       capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
    for failure in failures:
        print("FAILED " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
