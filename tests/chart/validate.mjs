// Validates Kubernetes manifests (helm template output, deploy/examples) offline.
//
//   node validate.mjs --modules DIR [--chart-facts] [--expect-arg CONTAINER:ARG]...
//                     [--expect-env CONTAINER:NAME=fieldRef:PATH | CONTAINER:!NAME]...
//                     [--expect-kind [!]KIND]... [--expect-field KIND:PATH=JSON]...
//                     [--print-plugin-flags] [--refs FILE]... FILE...
//
// --expect-field: every rendered object of KIND has the JSON value JSON at PATH (and there is at
// least one such object). PATH is dotted; `[name=X]` picks the list element named X, e.g.
// `DaemonSet:spec.template.spec.containers[name=strata].startupProbe.failureThreshold=180`.
// A JSON of `undefined` means the field must be absent.
//
// Every document must be a kind we know: kinds kubernetes-models has a schema for are checked with
// `new Kind(doc).validate()`; CRD kinds it lacks (ServiceMonitor, VolumeSnapshotClass,
// VolumeSnapshot) get a hand-written structural check; anything else fails the run.
// --chart-facts additionally asserts what the Strata chart promises (CSIDriver fields, privileged
// plugin with Bidirectional mounts, sidecar flags, RBAC, pinned images...).
// --print-plugin-flags prints the distinct --flag names passed to the plugin container.
// --refs FILE: objects the FILEs may refer to (e.g. the chart's rendered StorageClasses): every
// storageClassName, volumeSnapshotClassName, PVC claimName and CSI driver named by the FILEs must
// exist in the refs or in the FILEs themselves.
// Exit status: 0 when every check passed, 1 otherwise (each failure is printed).

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const argv = process.argv.slice(2);
let modules = null;
let chartFacts = false;
let printPluginFlags = false;
const expectArgs = [];
const expectEnvs = [];
const refFiles = [];
const expectKinds = [];
const expectFields = [];
const files = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--modules") modules = argv[++i];
  else if (a === "--chart-facts") chartFacts = true;
  else if (a === "--print-plugin-flags") printPluginFlags = true;
  else if (a === "--expect-arg") expectArgs.push(argv[++i]);
  else if (a === "--expect-env") expectEnvs.push(argv[++i]);
  else if (a === "--refs") refFiles.push(argv[++i]);
  else if (a === "--expect-kind") expectKinds.push(argv[++i]);
  else if (a === "--expect-field") expectFields.push(argv[++i]);
  else files.push(a);
}
if (!modules || files.length === 0) {
  console.error("usage: validate.mjs --modules DIR [--chart-facts] [--expect-arg C:ARG] FILE...");
  process.exit(2);
}

const yaml = await import(pathToFileURL(path.join(modules, "js-yaml", "dist", "js-yaml.mjs")));

const failures = [];
const fail = (where, msg) => failures.push(`${where}: ${msg}`);
const check = (cond, where, msg) => {
  if (!cond) fail(where, msg);
  return !!cond;
};
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const nonEmptyString = (v) => typeof v === "string" && v.length > 0;
// DNS-1123 subdomain: the rule for most object names.
const dnsSubdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

// --- Hand-written checks for kinds kubernetes-models has no schema for -------------------------

function onlyKeys(obj, allowed, where) {
  for (const k of Object.keys(obj)) check(allowed.includes(k), where, `unknown field "${k}"`);
}

function checkObjectMeta(doc, where, namespaced) {
  if (!check(isObj(doc.metadata), where, "metadata must be an object")) return;
  check(nonEmptyString(doc.metadata.name) && dnsSubdomain.test(doc.metadata.name), where,
        `metadata.name "${doc.metadata.name}" is not a DNS-1123 subdomain`);
  if (doc.metadata.namespace !== undefined)
    check(namespaced && nonEmptyString(doc.metadata.namespace), where,
          "metadata.namespace on a cluster-scoped kind, or empty");
  for (const f of ["labels", "annotations"]) {
    if (doc.metadata[f] === undefined) continue;
    if (!check(isObj(doc.metadata[f]), where, `metadata.${f} must be a map`)) continue;
    for (const [k, v] of Object.entries(doc.metadata[f]))
      check(typeof v === "string", where, `metadata.${f}.${k} must be a string`);
  }
}

const handChecks = {
  "monitoring.coreos.com/v1/ServiceMonitor"(doc, where) {
    onlyKeys(doc, ["apiVersion", "kind", "metadata", "spec"], where);
    checkObjectMeta(doc, where, true);
    const s = doc.spec;
    if (!check(isObj(s), where, "spec must be an object")) return;
    onlyKeys(s, ["selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels",
                 "podTargetLabels", "sampleLimit"], where + " spec");
    check(isObj(s.selector) && (isObj(s.selector.matchLabels) || Array.isArray(s.selector.matchExpressions)),
          where, "spec.selector needs matchLabels or matchExpressions");
    if (s.namespaceSelector !== undefined) {
      check(isObj(s.namespaceSelector), where, "spec.namespaceSelector must be an object");
      onlyKeys(s.namespaceSelector, ["any", "matchNames"], where + " namespaceSelector");
    }
    if (!check(Array.isArray(s.endpoints) && s.endpoints.length > 0, where, "spec.endpoints must be a non-empty list")) return;
    const duration = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;
    s.endpoints.forEach((e, i) => {
      const w = `${where} endpoints[${i}]`;
      onlyKeys(e, ["port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                   "relabelings", "metricRelabelings", "params", "tlsConfig"], w);
      check(nonEmptyString(e.port) || e.targetPort !== undefined, w, "needs port or targetPort");
      if (e.path !== undefined) check(/^\//.test(e.path), w, "path must start with /");
      for (const d of ["interval", "scrapeTimeout"])
        if (e[d] !== undefined) check(typeof e[d] === "string" && duration.test(e[d]), w, `${d} is not a Prometheus duration`);
      for (const r of e.relabelings ?? []) {
        onlyKeys(r, ["sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"], w + " relabeling");
        if (r.action !== undefined)
          check(["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                 "lowercase", "uppercase", "keepequal", "dropequal"].includes(r.action.toLowerCase()), w, `bad relabel action ${r.action}`);
      }
    });
  },
  "snapshot.storage.k8s.io/v1/VolumeSnapshotClass"(doc, where) {
    onlyKeys(doc, ["apiVersion", "kind", "metadata", "driver", "deletionPolicy", "parameters"], where);
    checkObjectMeta(doc, where, false);
    check(nonEmptyString(doc.driver), where, "driver is required");
    check(["Delete", "Retain"].includes(doc.deletionPolicy), where, "deletionPolicy must be Delete or Retain");
    if (doc.parameters !== undefined)
      check(isObj(doc.parameters) && Object.values(doc.parameters).every((v) => typeof v === "string"),
            where, "parameters must be a string map");
  },
  "snapshot.storage.k8s.io/v1/VolumeSnapshot"(doc, where) {
    onlyKeys(doc, ["apiVersion", "kind", "metadata", "spec"], where);
    checkObjectMeta(doc, where, true);
    const s = doc.spec;
    if (!check(isObj(s), where, "spec must be an object")) return;
    onlyKeys(s, ["source", "volumeSnapshotClassName"], where + " spec");
    if (!check(isObj(s.source), where, "spec.source is required")) return;
    onlyKeys(s.source, ["persistentVolumeClaimName", "volumeSnapshotContentName"], where + " source");
    check(nonEmptyString(s.source.persistentVolumeClaimName) !== nonEmptyString(s.source.volumeSnapshotContentName),
          where, "spec.source needs exactly one of persistentVolumeClaimName / volumeSnapshotContentName");
  },
  // external-snapshotter v8's group snapshot API (CRDs kubernetes-models does not have).
  "groupsnapshot.storage.k8s.io/v1beta1/VolumeGroupSnapshotClass"(doc, where) {
    handChecks["snapshot.storage.k8s.io/v1/VolumeSnapshotClass"](doc, where);
  },
  "groupsnapshot.storage.k8s.io/v1beta1/VolumeGroupSnapshot"(doc, where) {
    onlyKeys(doc, ["apiVersion", "kind", "metadata", "spec"], where);
    checkObjectMeta(doc, where, true);
    const s = doc.spec;
    if (!check(isObj(s), where, "spec must be an object")) return;
    onlyKeys(s, ["source", "volumeGroupSnapshotClassName"], where + " spec");
    if (!check(isObj(s.source), where, "spec.source is required")) return;
    onlyKeys(s.source, ["selector", "volumeGroupSnapshotContentName"], where + " source");
    check(isObj(s.source.selector) !== nonEmptyString(s.source.volumeGroupSnapshotContentName),
          where, "spec.source needs exactly one of selector / volumeGroupSnapshotContentName");
    if (isObj(s.source.selector))
      check(isObj(s.source.selector.matchLabels) || Array.isArray(s.source.selector.matchExpressions),
            where, "spec.source.selector needs matchLabels or matchExpressions");
  },
};

// --- Schema validation ---------------------------------------------------------------------------

async function validateWithModels(doc, where) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  if (handChecks[key]) {
    handChecks[key](doc, where);
    return;
  }
  // kubernetes-models lays kinds out as <apiVersion>/<Kind>.js ("v1/Pod.js", "apps/v1/DaemonSet.js").
  const file = path.join(modules, "kubernetes-models", doc.apiVersion, `${doc.kind}.js`);
  if (!/^[A-Za-z0-9.\/-]+$/.test(doc.apiVersion) || !/^[A-Za-z0-9]+$/.test(doc.kind) || !fs.existsSync(file)) {
    fail(where, `unknown kind ${key}: no kubernetes-models schema and no hand-written check`);
    return;
  }
  const mod = await import(pathToFileURL(file));
  const Kind = mod[doc.kind];
  if (!check(typeof Kind === "function", where, `kubernetes-models has no class ${doc.kind}`)) return;
  try {
    new Kind(doc).validate();
  } catch (e) {
    fail(where, `schema: ${e.message}`);
  }
  checkObjectMeta(doc, where, true);
}

// --- Load ------------------------------------------------------------------------------------------

const docs = [];
for (const f of files) {
  let parsed;
  try {
    parsed = yaml.loadAll(fs.readFileSync(f, "utf8"));
  } catch (e) {
    fail(f, `YAML: ${e.message}`);
    continue;
  }
  parsed.forEach((doc, i) => {
    if (doc === null || doc === undefined) return;
    const where = `${path.basename(f)}#${i} ${doc?.kind ?? "?"}/${doc?.metadata?.name ?? "?"}`;
    if (!isObj(doc) || !nonEmptyString(doc.apiVersion) || !nonEmptyString(doc.kind)) {
      fail(where, "not a Kubernetes object (apiVersion and kind required)");
      return;
    }
    docs.push({ doc, where });
  });
}
check(docs.length > 0, "input", "no Kubernetes objects found");
for (const { doc, where } of docs) await validateWithModels(doc, where);

// --- Chart facts -------------------------------------------------------------------------------------

const byKind = (kind) => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);
const daemonSets = byKind("DaemonSet");
const pluginContainer = () => daemonSets[0]?.spec?.template?.spec?.containers?.find((c) => c.name === "strata");

function argValue(container, flag) {
  // "--flag=value" → value; "--flag" → "" ; absent → undefined.
  for (const a of container?.args ?? []) {
    if (a === flag) return "";
    if (a.startsWith(flag + "=")) return a.slice(flag.length + 1);
  }
  return undefined;
}

function rulesAllow(rules, group, resource, verbs) {
  return verbs.every((v) => rules.some((r) =>
    (r.apiGroups ?? []).includes(group) && (r.resources ?? []).includes(resource) &&
    ((r.verbs ?? []).includes(v) || (r.verbs ?? []).includes("*"))));
}

function chartFactChecks() {
  const W = "chart";
  // CSIDriver.
  const drivers = byKind("CSIDriver");
  if (check(drivers.length === 1, W, `want exactly one CSIDriver, got ${drivers.length}`)) {
    const s = drivers[0].spec ?? {};
    check(s.attachRequired === false, W, "CSIDriver.attachRequired must be false");
    check(s.podInfoOnMount === true, W, "CSIDriver.podInfoOnMount must be true");
    check(s.storageCapacity === true, W, "CSIDriver.storageCapacity must be true");
    check(s.fsGroupPolicy === "File", W, "CSIDriver.fsGroupPolicy must be File");
    check(JSON.stringify([...(s.volumeLifecycleModes ?? [])].sort()) === JSON.stringify(["Ephemeral", "Persistent"]),
          W, "CSIDriver.volumeLifecycleModes must be [Persistent, Ephemeral]");
  }
  const driverName = drivers[0]?.metadata?.name;

  // DaemonSet.
  if (!check(daemonSets.length === 1, W, `want exactly one DaemonSet, got ${daemonSets.length}`)) return;
  const ds = daemonSets[0];
  const pod = ds.spec.template.spec;
  const containers = pod.containers ?? [];
  const byName = Object.fromEntries(containers.map((c) => [c.name, c]));
  check(pod.priorityClassName === "system-node-critical", W, "priorityClassName must be system-node-critical");
  check(Array.isArray(pod.tolerations) && pod.tolerations.length > 0, W, "the node plugin must have tolerations");
  check(Number.isInteger(pod.terminationGracePeriodSeconds), W, "terminationGracePeriodSeconds must be set");
  check(["OnDelete", "RollingUpdate"].includes(ds.spec.updateStrategy?.type), W, "updateStrategy.type must be set");
  for (const name of ["strata", "node-driver-registrar", "liveness-probe", "csi-provisioner"])
    check(byName[name], W, `container ${name} missing`);
  // Labels: the selector must select the template.
  for (const [k, v] of Object.entries(ds.spec.selector.matchLabels ?? {}))
    check(ds.spec.template.metadata?.labels?.[k] === v, W, `DaemonSet selector label ${k} not on the pod template`);

  // Images: pinned everywhere.
  for (const c of [...containers, ...(pod.initContainers ?? [])]) {
    const img = c.image ?? "";
    const tag = img.includes("@") ? "digest" : img.slice(img.lastIndexOf("/") + 1).split(":")[1];
    check(tag && tag !== "latest", W, `container ${c.name} image "${img}" is not pinned to a tag`);
    if (img.startsWith("registry.k8s.io/sig-storage/"))
      check(/(:v\d+\.\d+\.\d+|@sha256:[a-f0-9]{64})$/.test(img), W, `sidecar ${c.name} image "${img}" is not a vX.Y.Z release or a digest`);
  }

  // Volumes and mounts.
  const volumes = Object.fromEntries((pod.volumes ?? []).map((v) => [v.name, v]));
  for (const c of containers)
    for (const m of c.volumeMounts ?? [])
      check(volumes[m.name], W, `container ${c.name} mounts undefined volume ${m.name}`);
  for (const v of Object.values(volumes))
    if (v.hostPath) check(/^\//.test(v.hostPath.path), W, `hostPath ${v.name} is not absolute`);

  // SELinux: on enforcing nodes a container may connect to the socket the privileged plugin
  // created only if it runs privileged too (spc_t), as upstream csi-driver-host-path does.
  for (const c of containers.filter((c) => (c.volumeMounts ?? []).some((m) => m.mountPath === "/csi")))
    check(c.securityContext?.privileged === true, W, `container ${c.name} uses the plugin socket but is not privileged`);
  // Two plugin pods on one node deadlock on the root lock: never surge a rollout.
  check(ds.spec.updateStrategy?.rollingUpdate?.maxSurge === undefined, W, "updateStrategy must not set maxSurge");

  const plugin = byName.strata;
  if (plugin) {
    check(plugin.securityContext?.privileged === true, W, "plugin container must be privileged");
    // A long start-up recovery must not be killed by the liveness probe: a startupProbe on the
    // same endpoint holds the liveness probe off until the plugin first answers.
    const sp = plugin.startupProbe;
    check(sp?.httpGet?.path === plugin.livenessProbe?.httpGet?.path && sp?.httpGet?.port === plugin.livenessProbe?.httpGet?.port,
          W, "plugin startupProbe must probe the liveness endpoint");
    check((sp?.failureThreshold ?? 0) * (sp?.periodSeconds ?? 0) >= 600, W,
          "plugin startupProbe must allow at least 10 minutes of start-up");
    const bidir = (plugin.volumeMounts ?? []).filter((m) => m.mountPropagation === "Bidirectional");
    const kubelet = bidir.find((m) => volumes[m.name]?.hostPath && m.mountPath === volumes[m.name].hostPath.path &&
                                       byName["node-driver-registrar"] && argValue(byName["node-driver-registrar"], "--kubelet-registration-path")?.startsWith(m.mountPath + "/"));
    check(kubelet, W, "plugin must mount the kubelet dir (same path as on the host) with Bidirectional propagation");
    const root = argValue(plugin, "--root");
    check(nonEmptyString(root), W, "plugin needs --root");
    check(bidir.some((m) => m.mountPath === root && volumes[m.name]?.hostPath?.path === root), W,
          `plugin must mount its --root ${root} from the same hostPath with Bidirectional propagation`);
    check((plugin.volumeMounts ?? []).some((m) => m.mountPath === "/dev" && volumes[m.name]?.hostPath?.path === "/dev"),
          W, "plugin must mount the host's /dev");
    check(argValue(plugin, "--driver-name") === driverName, W, "plugin --driver-name must match the CSIDriver");
    check(argValue(plugin, "--endpoint") === "unix:///csi/csi.sock", W, "plugin --endpoint must be unix:///csi/csi.sock");
    const socketMount = (plugin.volumeMounts ?? []).find((m) => m.mountPath === "/csi");
    const socketHost = volumes[socketMount?.name]?.hostPath?.path;
    check(socketHost && socketHost.endsWith(`/plugins/${driverName}`), W, "socket dir must be <kubeletDir>/plugins/<driverName>");
    const reg = byName["node-driver-registrar"];
    if (reg) {
      check(argValue(reg, "--kubelet-registration-path") === `${socketHost}/csi.sock`, W,
            "node-driver-registrar --kubelet-registration-path must be the socket's host path");
      check((reg.volumeMounts ?? []).some((m) => m.mountPath === "/registration" &&
                                               volumes[m.name]?.hostPath?.path?.endsWith("/plugins_registry")),
            W, "node-driver-registrar must mount <kubeletDir>/plugins_registry at /registration");
    }
    // Liveness: the plugin's probe must hit the livenessprobe sidecar's port.
    const lp = byName["liveness-probe"];
    const probePort = plugin.livenessProbe?.httpGet?.port;
    const portNum = typeof probePort === "number" ? probePort :
      (plugin.ports ?? []).find((p) => p.name === probePort)?.containerPort;
    check(lp && portNum !== undefined && String(portNum) === argValue(lp, "--health-port"), W,
          "plugin livenessProbe must target the livenessprobe sidecar's --health-port");
    check(plugin.livenessProbe?.httpGet?.path === "/healthz", W, "plugin livenessProbe path must be /healthz");
    // Port names unique across the pod (a named probe port must be unambiguous).
    const names = containers.flatMap((c) => (c.ports ?? []).map((p) => p.name).filter(Boolean));
    check(new Set(names).size === names.length, W, `duplicate port names: ${names}`);
    check(names.every((n) => n.length <= 15), W, "port names must be at most 15 characters");
  }

  // Provisioner.
  const prov = byName["csi-provisioner"];
  if (prov) {
    for (const a of ["--node-deployment", "--feature-gates", "--enable-capacity", "--capacity-ownerref-level"])
      check(argValue(prov, a) !== undefined, W, `csi-provisioner needs ${a}`);
    check(["", "true"].includes(argValue(prov, "--node-deployment")), W, "csi-provisioner --node-deployment must be on");
    check(/(^|,)Topology=true(,|$)/.test(argValue(prov, "--feature-gates") ?? ""), W, "csi-provisioner needs Topology=true");
    check(argValue(prov, "--capacity-ownerref-level") === "0", W, "csi-provisioner --capacity-ownerref-level must be 0");
    const env = Object.fromEntries((prov.env ?? []).map((e) => [e.name, e]));
    check(env.NODE_NAME?.valueFrom?.fieldRef?.fieldPath === "spec.nodeName", W, "csi-provisioner needs NODE_NAME from spec.nodeName");
    check(env.POD_NAME?.valueFrom?.fieldRef?.fieldPath === "metadata.name", W, "csi-provisioner needs POD_NAME");
    check(env.NAMESPACE?.valueFrom?.fieldRef?.fieldPath === "metadata.namespace", W, "csi-provisioner needs NAMESPACE");
    check(argValue(prov, "--leader-election") === undefined, W, "node-deployment provisioners must not leader-elect");
  }
  const snap = byName["csi-snapshotter"];
  if (snap) {
    check(["", "true"].includes(argValue(snap, "--node-deployment")), W, "csi-snapshotter must run with --node-deployment");
    check((snap.env ?? []).some((e) => e.name === "NODE_NAME"), W, "csi-snapshotter needs NODE_NAME");
  }
  for (const c of containers.filter((c) => c.name !== "strata"))
    check(argValue(c, "--csi-address") === "/csi/csi.sock" && (c.volumeMounts ?? []).some((m) => m.mountPath === "/csi"),
          W, `sidecar ${c.name} must talk to /csi/csi.sock`);

  // RBAC: the pod's ServiceAccount exists, bindings point at real roles and that account.
  const sa = pod.serviceAccountName;
  const sas = byKind("ServiceAccount").map((s) => s.metadata.name);
  check(sas.includes(sa), W, `serviceAccountName ${sa} is not rendered`);
  const clusterRoles = Object.fromEntries(byKind("ClusterRole").map((r) => [r.metadata.name, r]));
  const roles = Object.fromEntries(byKind("Role").map((r) => [r.metadata.name, r]));
  const boundRules = { cluster: [], ns: [] };
  for (const b of [...byKind("ClusterRoleBinding"), ...byKind("RoleBinding")]) {
    const table = b.roleRef.kind === "ClusterRole" ? clusterRoles : roles;
    check(table[b.roleRef.name], W, `${b.kind} ${b.metadata.name} refers to missing ${b.roleRef.kind} ${b.roleRef.name}`);
    for (const s of b.subjects ?? [])
      check(s.kind === "ServiceAccount" && sas.includes(s.name), W, `${b.kind} ${b.metadata.name} binds unknown subject ${s.name}`);
    if (table[b.roleRef.name]) (b.kind === "ClusterRoleBinding" ? boundRules.cluster : boundRules.ns).push(...table[b.roleRef.name].rules);
  }
  const C = boundRules.cluster, N = boundRules.ns;
  const need = [
    [C, "", "persistentvolumes", ["get", "list", "watch", "create", "delete"]],
    [C, "", "persistentvolumeclaims", ["get", "list", "watch", "update"]],
    [C, "storage.k8s.io", "storageclasses", ["get", "list", "watch"]],
    [C, "", "events", ["create", "patch"]],
    [C, "storage.k8s.io", "csinodes", ["get", "list", "watch"]],
    [C, "", "nodes", ["get", "list", "watch"]],
    [C, "storage.k8s.io", "volumeattachments", ["get", "list", "watch"]],
    [C, "snapshot.storage.k8s.io", "volumesnapshots", ["get", "list"]],
    [C, "snapshot.storage.k8s.io", "volumesnapshotcontents", ["get", "list"]],
    [N, "storage.k8s.io", "csistoragecapacities", ["get", "list", "watch", "create", "update", "delete"]],
    [N, "coordination.k8s.io", "leases", ["get", "create", "update"]],
    [N, "", "pods", ["get"]],
    [N, "apps", "replicasets", ["get"]],
  ];
  if (snap) need.push(
    [C, "snapshot.storage.k8s.io", "volumesnapshotclasses", ["get", "list", "watch"]],
    [C, "snapshot.storage.k8s.io", "volumesnapshotcontents", ["get", "list", "watch", "update", "patch"]],
    [C, "snapshot.storage.k8s.io", "volumesnapshotcontents/status", ["update", "patch"]]);
  if (byName["csi-resizer"]) need.push(
    [C, "", "persistentvolumes", ["patch"]],
    [C, "", "persistentvolumeclaims/status", ["patch"]]);
  for (const [rules, g, r, verbs] of need)
    check(rulesAllow(rules, g, r, verbs), W, `RBAC does not grant ${verbs} on ${g || "core"}/${r} (${rules === C ? "cluster" : "namespace"})`);

  // StorageClasses and snapshot class.
  for (const sc of byKind("StorageClass")) {
    check(sc.provisioner === driverName, W, `StorageClass ${sc.metadata.name} provisioner must be ${driverName}`);
    check(sc.volumeBindingMode === "WaitForFirstConsumer", W, `StorageClass ${sc.metadata.name} must be WaitForFirstConsumer`);
    // Expansion needs csi-resizer to mark the PVC: offered exactly when it runs.
    check(sc.allowVolumeExpansion === Boolean(byName["csi-resizer"]), W,
          `StorageClass ${sc.metadata.name} allowVolumeExpansion=${sc.allowVolumeExpansion} but csi-resizer ${byName["csi-resizer"] ? "runs" : "does not run"}`);
    // The plugin rejects unknown parameters; the provisioner strips csi.storage.k8s.io/* keys.
    for (const [k, v] of Object.entries(sc.parameters ?? {})) {
      check(k === "image" || k === "enforceCapacity" || k.startsWith("csi.storage.k8s.io/"), W, `StorageClass ${sc.metadata.name} parameter ${k} is unknown to the plugin`);
      if (k === "enforceCapacity")
        check(v === "true" || v === "false", W, `StorageClass ${sc.metadata.name} enforceCapacity must be "true" or "false", not ${JSON.stringify(v)}`);
    }
  }
  for (const vsc of byKind("VolumeSnapshotClass")) check(vsc.driver === driverName, W, "VolumeSnapshotClass driver mismatch");
  if (byKind("VolumeSnapshotClass").length) check(snap, W, "a VolumeSnapshotClass without a csi-snapshotter");

  // Metrics Service / ServiceMonitor / dashboard.
  const podLabels = ds.spec.template.metadata.labels ?? {};
  for (const svc of byKind("Service")) {
    for (const [k, v] of Object.entries(svc.spec.selector ?? {}))
      check(podLabels[k] === v, W, `Service ${svc.metadata.name} selector ${k}=${v} does not select the plugin pods`);
    for (const p of svc.spec.ports ?? []) {
      if (typeof p.targetPort === "string")
        check(containers.some((c) => (c.ports ?? []).some((cp) => cp.name === p.targetPort)), W,
              `Service ${svc.metadata.name} targetPort ${p.targetPort} is no container port`);
    }
    check((svc.spec.ports ?? []).some((p) => p.name === "metrics"), W, `Service ${svc.metadata.name} needs a port named metrics`);
    if (plugin) check(argValue(plugin, "--metrics-address")?.endsWith(`:${svc.spec.ports[0].port}`), W, "metrics port mismatch");
  }
  // Kubernetes expands $(VAR) in args only from the container's own env; an undefined one reaches
  // the plugin literally (and "$(POD_IP):9810" is no address it can bind).
  for (const c of containers) {
    const names = new Set((c.env ?? []).map((e) => e.name));
    for (const a of c.args ?? []) {
      for (const m of a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
        check(names.has(m[1]), W, `container ${c.name} argument ${a} uses $(${m[1]}), which its env does not define`);
    }
  }
  // A Service means Prometheus scrapes through the pod network: a loopback bind cannot answer it.
  const metricsHost = (argValue(plugin, "--metrics-address") ?? "").replace(/:[0-9]+$/, "");
  if (byKind("Service").length)
    check(!/^(127\.|\[?::1\]?$)/.test(metricsHost), W, `metrics bound to loopback (${metricsHost}) cannot be scraped through the Service`);
  // The metrics NetworkPolicy: selects the plugin pods, names only real container ports, and lets
  // the metrics port be reached only from named peers (a rule without `from` admits everyone).
  for (const np of byKind("NetworkPolicy")) {
    for (const [k, v] of Object.entries(np.spec.podSelector?.matchLabels ?? {}))
      check(podLabels[k] === v, W, `NetworkPolicy ${np.metadata.name} selector ${k}=${v} does not select the plugin pods`);
    check((np.spec.policyTypes ?? []).includes("Ingress"), W, `NetworkPolicy ${np.metadata.name} must restrict Ingress`);
    const containerPorts = containers.flatMap((c) => c.ports ?? []);
    for (const rule of np.spec.ingress ?? []) {
      for (const p of rule.ports ?? []) {
        check(containerPorts.some((cp) => (typeof p.port === "string" ? cp.name : cp.containerPort) === p.port), W,
              `NetworkPolicy ${np.metadata.name} port ${p.port} is no container port`);
        if (p.port === "metrics")
          check((rule.from ?? []).length > 0, W, `NetworkPolicy ${np.metadata.name} admits everyone to the metrics port`);
      }
    }
    check((np.spec.ingress ?? []).some((r) => (r.ports ?? []).some((p) => p.port === "metrics")), W,
          `NetworkPolicy ${np.metadata.name} lets no one scrape metrics`);
  }
  for (const sm of byKind("ServiceMonitor")) {
    const svcs = byKind("Service").filter((svc) =>
      Object.entries(sm.spec.selector.matchLabels ?? {}).every(([k, v]) => svc.metadata.labels?.[k] === v));
    check(svcs.length === 1, W, `ServiceMonitor ${sm.metadata.name} must select exactly the metrics Service`);
    check(sm.spec.endpoints.every((e) => svcs[0]?.spec.ports.some((p) => p.name === e.port)), W, "ServiceMonitor port name mismatch");
  }
  for (const cm of byKind("ConfigMap").filter((c) => c.metadata.labels?.grafana_dashboard !== undefined)) {
    check(cm.metadata.labels.grafana_dashboard === "1", W, "dashboard ConfigMap label grafana_dashboard must be \"1\"");
    let dash = null;
    try { dash = JSON.parse(cm.data?.["strata.json"] ?? ""); } catch (e) { fail(W, `dashboard JSON: ${e.message}`); }
    if (dash) {
      const panels = (dash.panels ?? []).filter((p) => p.type !== "row");
      check(panels.length >= 8, W, "dashboard has too few panels");
      for (const p of panels)
        check((p.targets ?? []).length > 0 && p.targets.every((t) => /strata_/.test(t.expr ?? "")), W,
              `dashboard panel "${p.title}" has no strata_ query`);
      const titles = panels.map((p) => p.title.toLowerCase()).join("|");
      for (const want of ["publish", "error", "commit", "shared", "free", "pool"])
        check(titles.includes(want), W, `dashboard lacks a panel about "${want}"`);
    }
  }
}

if (chartFacts) chartFactChecks();

// --- References between objects (examples against the rendered chart) ---------------------------

if (refFiles.length) {
  const all = [...docs.map((d) => d.doc)];
  for (const f of refFiles) all.push(...yaml.loadAll(fs.readFileSync(f, "utf8")).filter(isObj));
  const names = (kind) => new Set(all.filter((d) => d.kind === kind).map((d) => d.metadata?.name));
  const scs = names("StorageClass"), vscs = names("VolumeSnapshotClass"), pvcs = names("PersistentVolumeClaim");
  const vss = names("VolumeSnapshot"), csiDrivers = names("CSIDriver");
  for (const { doc, where } of docs) {
    const spec = doc.spec ?? {};
    if (doc.kind === "PersistentVolumeClaim") {
      check(scs.has(spec.storageClassName), where, `storageClassName ${spec.storageClassName} does not exist`);
      if (spec.dataSource?.kind === "VolumeSnapshot")
        check(vss.has(spec.dataSource.name), where, `dataSource VolumeSnapshot ${spec.dataSource.name} does not exist`);
    }
    if (doc.kind === "StorageClass") check(csiDrivers.has(doc.provisioner), where, `provisioner ${doc.provisioner} is no CSIDriver`);
    if (doc.kind === "VolumeSnapshot") {
      check(vscs.has(spec.volumeSnapshotClassName), where, `VolumeSnapshotClass ${spec.volumeSnapshotClassName} does not exist`);
      check(pvcs.has(spec.source?.persistentVolumeClaimName), where, "source PVC does not exist");
    }
    if (doc.kind === "Pod")
      for (const v of spec.volumes ?? []) {
        if (v.persistentVolumeClaim) check(pvcs.has(v.persistentVolumeClaim.claimName), where, `claim ${v.persistentVolumeClaim.claimName} does not exist`);
        if (v.csi) {
          check(csiDrivers.has(v.csi.driver), where, `inline volume driver ${v.csi.driver} is no CSIDriver`);
          check(nonEmptyString(v.csi.volumeAttributes?.image), where, "inline Strata volume needs volumeAttributes.image");
        }
      }
  }
}

for (const spec of expectArgs) {
  const i = spec.indexOf(":");
  const [cname, arg] = [spec.slice(0, i), spec.slice(i + 1)];
  const c = daemonSets[0]?.spec?.template?.spec?.containers?.find((x) => x.name === cname);
  check(c && (c.args ?? []).includes(arg), "expect-arg", `container ${cname} lacks argument ${arg}`);
}

for (const spec of expectEnvs) {
  // "C:NAME=fieldRef:PATH": C's env NAME comes from the downward API field PATH; "C:!NAME": unset.
  const i = spec.indexOf(":");
  const [cname, rest] = [spec.slice(0, i), spec.slice(i + 1)];
  const c = daemonSets[0]?.spec?.template?.spec?.containers?.find((x) => x.name === cname);
  if (rest.startsWith("!")) {
    check(c && !(c.env ?? []).some((e) => e.name === rest.slice(1)), "expect-env", `container ${cname} must not set ${rest.slice(1)}`);
    continue;
  }
  const [name, source] = [rest.slice(0, rest.indexOf("=")), rest.slice(rest.indexOf("=") + 1)];
  const env = (c?.env ?? []).find((e) => e.name === name);
  check(source.startsWith("fieldRef:") && env?.valueFrom?.fieldRef?.fieldPath === source.slice("fieldRef:".length),
        "expect-env", `container ${cname} lacks env ${name} from ${source}`);
}

for (const spec of expectKinds) {
  // "Kind" must be rendered; "!Kind" must not be.
  const [neg, kind] = spec.startsWith("!") ? [true, spec.slice(1)] : [false, spec];
  check(byKind(kind).length > 0 !== neg, "expect-kind", `${kind} ${neg ? "must not" : "must"} be rendered`);
}

// PATH "a.b[name=x].c" → the value there, or undefined.
const getPath = (obj, p) => {
  let v = obj;
  for (const seg of p.match(/[^.\[\]]+|\[[^\]]*\]/g) ?? []) {
    if (v === undefined || v === null) return undefined;
    const sel = /^\[(\w+)=(.*)\]$/.exec(seg);
    v = sel ? (Array.isArray(v) ? v.find((e) => String(e?.[sel[1]]) === sel[2]) : undefined) : v[seg];
  }
  return v;
};
// JSON with sorted keys: a rendered object's key order is not the values file's.
const canon = (v) => JSON.stringify(v, (k, x) =>
  isObj(x) ? Object.fromEntries(Object.keys(x).sort().map((key) => [key, x[key]])) : x);
for (const spec of expectFields) {
  const i = spec.indexOf(":"), j = spec.indexOf("=", spec.lastIndexOf("]") + 1 || i);
  const [kind, p, raw] = [spec.slice(0, i), spec.slice(i + 1, j), spec.slice(j + 1)];
  const want = raw === "undefined" ? undefined : JSON.parse(raw);
  const objs = byKind(kind);
  check(objs.length > 0, "expect-field", `no ${kind} rendered for ${p}`);
  for (const o of objs) {
    const got = getPath(o, p);
    check(canon(got) === canon(want), "expect-field",
          `${kind} ${o.metadata?.name} ${p} is ${JSON.stringify(got)}, want ${raw}`);
  }
}

if (printPluginFlags) {
  const flags = new Set((pluginContainer()?.args ?? []).filter((a) => a.startsWith("--")).map((a) => a.split("=")[0]));
  for (const f of flags) console.log(f);
}

if (failures.length) {
  for (const f of failures) console.error("FAIL " + f);
  console.error(`${failures.length} check(s) failed over ${docs.length} object(s)`);
  process.exit(1);
}
if (!printPluginFlags) console.log(`ok: ${docs.length} object(s) valid${chartFacts ? ", chart facts hold" : ""}`);
