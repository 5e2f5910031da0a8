#!/usr/bin/env node
// Offline validation of meshguard's Kubernetes manifests (deploy/k8s).
//
//   node validate_manifests.js --k8s-dir deploy/k8s --config-proto proto/config.proto
//       Expands deploy/k8s/kustomization.yaml (resources, recursively; images),
//       also loads bootstrap/ (the placeholders kubectl-created objects follow),
//       and checks every object:
//         1. against the Kubernetes API schema (kubernetes-models, by
//            apiVersion/kind; an unknown kind is an error),
//         2. against meshguard's own rules (see CheckWorkload and friends).
//   node validate_manifests.js --files a.yaml [b.yaml ...] [--config-proto P]
//       The same checks on loose files (the negative self-tests).
//
// Prints one line per problem ("FILE: Kind/ns/name: problem") and exits 1 if
// there is any, else prints a summary and exits 0. Needs NODE_PATH (or the
// working directory) to reach js-yaml and kubernetes-models.
"use strict";

const fs = require("fs");
const path = require("path");
const yaml = require("js-yaml");

const errors = [];
function fail(where, message) {
  errors.push(`${where}: ${message}`);
}

// ---------------------------------------------------------------- loading

function loadDocs(file) {
  let docs;
  try {
    docs = yaml.loadAll(fs.readFileSync(file, "utf8"));
  } catch (e) {
    fail(file, `not valid YAML: ${e.message.split("\n")[0]}`);
    return [];
  }
  return docs
    .filter((d) => d !== null && d !== undefined)
    .map((obj) => ({ file, obj }));
}

const KUSTOMIZATION_FIELDS = new Set(["apiVersion", "kind", "resources", "images"]);

// Resources of a kustomization, recursively, with its images applied. Any
// kustomize feature this validator does not model is an error, so that what
// is validated is what `kubectl apply -k` would send.
function expandKustomization(dir, reached) {
  const kfile = path.join(dir, "kustomization.yaml");
  if (!fs.existsSync(kfile)) {
    fail(dir, "no kustomization.yaml");
    return [];
  }
  reached.add(path.resolve(kfile));
  const k = yaml.load(fs.readFileSync(kfile, "utf8")) || {};
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_FIELDS.has(key)) {
      fail(kfile, `kustomization field "${key}" is not modeled by tests/deploy/validate_manifests.js; extend the validator before using it`);
    }
  }
  if (k.apiVersion !== "kustomize.config.k8s.io/v1beta1" || k.kind !== "Kustomization") {
    fail(kfile, "want apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization");
  }
  let out = [];
  for (const r of k.resources || []) {
    const p = path.join(dir, r);
    if (!fs.existsSync(p)) {
      fail(kfile, `resource "${r}" does not exist`);
    } else if (fs.statSync(p).isDirectory()) {
      out = out.concat(expandKustomization(p, reached));
    } else {
      reached.add(path.resolve(p));
      out = out.concat(loadDocs(p));
    }
  }
  for (const img of k.images || []) {
    for (const { obj } of out) {
      for (const c of allContainers(podSpecOf(obj))) {
        const { name } = splitImage(c.image || "");
        if (name !== img.name) continue;
        const newName = img.newName || name;
        if (img.digest) c.image = `${newName}@${img.digest}`;
        else c.image = `${newName}:${img.newTag || splitImage(c.image).tag}`;
      }
    }
  }
  return out;
}

function walk(dir) {
  let out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out = out.concat(walk(p));
    else out.push(p);
  }
  return out;
}

// ---------------------------------------------------------------- schema

function where(doc) {
  const o = doc.obj || {};
  const m = o.metadata || {};
  return `${doc.file}: ${o.kind || "?"}/${m.namespace ? m.namespace + "/" : ""}${m.name || "?"}`;
}

function validateSchema(doc) {
  const o = doc.obj;
  if (typeof o !== "object" || Array.isArray(o)) {
    fail(doc.file, "a YAML document that is not an object");
    return false;
  }
  if (!o.apiVersion || !o.kind) {
    fail(where(doc), "apiVersion and kind are required");
    return false;
  }
  let mod;
  try {
    mod = require(`kubernetes-models/${o.apiVersion}`);
  } catch (e) {
    fail(where(doc), `unknown apiVersion "${o.apiVersion}" (not in kubernetes-models)`);
    return false;
  }
  const Model = mod[o.kind];
  if (typeof Model !== "function") {
    fail(where(doc), `unknown kind "${o.kind}" in ${o.apiVersion}`);
    return false;
  }
  try {
    new Model(JSON.parse(JSON.stringify(o))).validate();
  } catch (e) {
    fail(where(doc), `schema: ${e.message}`);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- helpers

function podSpecOf(o) {
  if (!o || typeof o !== "object") return null;
  if (o.kind === "Pod") return o.spec || null;
  if (o.kind === "CronJob") return (((o.spec || {}).jobTemplate || {}).spec || {}).template?.spec || null;
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(o.kind)) {
    return ((o.spec || {}).template || {}).spec || null;
  }
  return null;
}

function allContainers(spec) {
  if (!spec) return [];
  return [...(spec.initContainers || []), ...(spec.containers || [])];
}

function splitImage(image) {
  let rest = image;
  let digest = "";
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  let tag = "";
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { name: rest, tag, digest };
}

const isInitImage = (c) => splitImage(c.image || "").name.endsWith("meshguard-init");
const isSidecarImage = (c) => splitImage(c.image || "").name.endsWith("meshguard-sidecar");
const isCaImage = (c) => splitImage(c.image || "").name.endsWith("meshguard-ca");

function effective(spec, c, field) {
  const cs = c.securityContext || {};
  if (cs[field] !== undefined) return cs[field];
  return (spec.securityContext || {})[field];
}

function portNumber(c, port) {
  if (typeof port === "number") return port;
  for (const p of c.ports || []) if (p.name === port) return p.containerPort;
  return undefined;
}

function configFlag(c) {
  for (const a of [...(c.command || []), ...(c.args || [])]) {
    const m = /^--config=(.+)$/.exec(a);
    if (m) return m[1];
  }
  return null;
}

function hostPort(addr) {
  const m = /^(.*):(\d+)$/.exec(addr || "");
  return m ? { host: m[1], port: Number(m[2]) } : null;
}

// ---------------------------------------------------------------- the config schema (proto/config.proto)

function parseProto(file) {
  const text = fs.readFileSync(file, "utf8").replace(/\/\/.*$/gm, "");
  const messages = {};
  const re = /message\s+(\w+)\s*\{([^}]*)\}/g;
  let m;
  while ((m = re.exec(text))) {
    const fields = {};
    const fre = /(repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*\d+\s*;/g;
    let f;
    while ((f = fre.exec(m[2]))) fields[f[3]] = { repeated: !!f[1], type: f[2] };
    messages[m[1]] = fields;
  }
  return messages;
}

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

function checkMessage(messages, type, value, at, report) {
  const fields = messages[type];
  if (!fields) return report(`${at}: no message ${type} in config.proto`);
  if (value === null || value === undefined) return;
  if (typeof value !== "object" || Array.isArray(value)) return report(`${at}: want a mapping (${type})`);
  for (const [key, v] of Object.entries(value)) {
    const name = Object.keys(fields).find((n) => n === key || camel(n) === key);
    if (!name) {
      report(`${at ? at + "." : ""}${key}: unknown field of ${type} (meshguard refuses unknown fields)`);
      continue;
    }
    const f = fields[name];
    const here = at ? `${at}.${name}` : name;
    const items = f.repeated ? (Array.isArray(v) ? v : (report(`${here}: want a list`), [])) : [v];
    items.forEach((item, i) => checkScalar(messages, f.type, item, f.repeated ? `${here}[${i}]` : here, report));
  }
}

function checkScalar(messages, type, v, at, report) {
  switch (type) {
    case "string":
      if (typeof v !== "string") report(`${at}: want a string`);
      return;
    case "bool":
      if (typeof v !== "boolean") report(`${at}: want true or false`);
      return;
    case "uint32":
    case "int32":
    case "int64":
    case "uint64":
    case "double":
    case "float":
      if (typeof v !== "number") report(`${at}: want a number`);
      return;
    case "google.protobuf.Duration":
      if (typeof v !== "string" || !/^-?\d+(\.\d+)?s$/.test(v)) report(`${at}: want a duration such as "3600s"`);
      return;
    default:
      checkMessage(messages, type, v, at, report);
  }
}

// ---------------------------------------------------------------- cross-object lookups

class Index {
  constructor(docs) {
    this.docs = docs;
  }
  find(kind, ns, name) {
    return this.docs.find(
      (d) => d.obj && d.obj.kind === kind && (d.obj.metadata || {}).name === name && (d.obj.metadata || {}).namespace === ns,
    );
  }
}

// The cluster's CA certificate, which Kubernetes publishes as this ConfigMap
// (key ca.crt) in every namespace.
const CLUSTER_CA_CONFIGMAP = "kube-root-ca.crt";
// Where automountServiceAccountToken puts a pod's token and the cluster CA.
const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

// What a file path inside container c refers to: {volume, key, source}.
function resolvePath(index, ns, spec, c, file) {
  const mounts = (c.volumeMounts || [])
    .filter((m) => file === m.mountPath || file.startsWith(m.mountPath.replace(/\/$/, "") + "/"))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  if (mounts.length === 0) return { error: `${file} is not under any volumeMount of container ${c.name}` };
  const m = mounts[0];
  const rel = file.slice(m.mountPath.replace(/\/$/, "").length + 1);
  const vol = (spec.volumes || []).find((v) => v.name === m.name);
  if (!vol) return { error: `volumeMount ${m.name} has no volume` };
  const lookup = (kind, name, field) => {
    const d = index.find(kind, ns, name);
    if (!d) return { error: `${file}: ${kind} ${ns}/${name} is in neither the kustomization nor bootstrap/` };
    const keys = Object.keys({ ...(d.obj.data || {}), ...(d.obj.stringData || {}), ...(d.obj.binaryData || {}) });
    const wanted = field.items ? (field.items.find((i) => i.path === rel) || {}).key : rel;
    if (!wanted || !keys.includes(wanted)) return { error: `${file}: ${kind} ${name} has no key "${rel}" (keys: ${keys.join(", ")})` };
    return { volume: vol, key: wanted, doc: d };
  };
  if (vol.configMap) return lookup("ConfigMap", vol.configMap.name, vol.configMap);
  if (vol.secret) return lookup("Secret", vol.secret.secretName, vol.secret);
  if (vol.projected) {
    for (const s of vol.projected.sources || []) {
      if (s.serviceAccountToken && s.serviceAccountToken.path === rel) return { volume: vol, token: s.serviceAccountToken };
      if (s.configMap) {
        const item = (s.configMap.items || []).find((i) => i.path === rel);
        if (s.configMap.items && !item) continue;
        const key = item ? item.key : rel;
        if (s.configMap.name === CLUSTER_CA_CONFIGMAP) {
          // Published by Kubernetes in every namespace; never in the repository.
          if (key === "ca.crt") return { volume: vol, clusterCa: true };
          return { error: `${file}: ConfigMap ${CLUSTER_CA_CONFIGMAP} has only the key "ca.crt" (not "${key}")` };
        }
        const d = index.find("ConfigMap", ns, s.configMap.name);
        if (!d) return { error: `${file}: ConfigMap ${ns}/${s.configMap.name} is in neither the kustomization nor bootstrap/` };
        if (Object.keys({ ...(d.obj.data || {}), ...(d.obj.binaryData || {}) }).includes(key)) return { volume: vol, key, doc: d };
        if (item) return { error: `${file}: ConfigMap ${s.configMap.name} has no key "${key}"` };
      }
    }
    return { error: `${file}: projected volume ${vol.name} has no source at "${rel}"` };
  }
  if (vol.emptyDir || vol.persistentVolumeClaim) return { volume: vol, writable: !m.readOnly };
  return { error: `${file}: volume ${vol.name} of an unexpected type` };
}

function loadConfigFile(index, ns, spec, c, where_, label) {
  const file = configFlag(c);
  if (!file) {
    fail(where_, `${label} container ${c.name} has no --config=FILE argument`);
    return null;
  }
  const r = resolvePath(index, ns, spec, c, file);
  if (r.error) {
    fail(where_, r.error);
    return null;
  }
  const text = (r.doc.obj.data || {})[r.key];
  try {
    return yaml.load(text) || {};
  } catch (e) {
    fail(where_, `${file} (ConfigMap key ${r.key}) is not valid YAML: ${e.message.split("\n")[0]}`);
    return null;
  }
}

// ---------------------------------------------------------------- meshguard's rules

function checkContainerSecurity(w, spec, c, isInit) {
  const sc = c.securityContext || {};
  const r = c.resources || {};
  for (const kind of ["requests", "limits"]) {
    for (const res of ["cpu", "memory"]) {
      if (!(r[kind] || {})[res]) fail(w, `container ${c.name}: resources.${kind}.${res} is missing`);
    }
  }
  if (sc.readOnlyRootFilesystem !== true) fail(w, `container ${c.name}: securityContext.readOnlyRootFilesystem must be true`);
  if (sc.allowPrivilegeEscalation !== false) fail(w, `container ${c.name}: securityContext.allowPrivilegeEscalation must be false`);
  if (sc.privileged) fail(w, `container ${c.name}: privileged is not allowed`);
  const caps = sc.capabilities || {};
  if (!(caps.drop || []).includes("ALL")) fail(w, `container ${c.name}: capabilities.drop must include ALL`);
  const seccomp = (sc.seccompProfile || (spec.securityContext || {}).seccompProfile || {}).type;
  if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") fail(w, `container ${c.name}: seccompProfile RuntimeDefault is required (pod or container)`);
  const { tag, digest } = splitImage(c.image || "");
  if (!digest && (!tag || tag === "latest")) fail(w, `container ${c.name}: image "${c.image}" must be pinned to a tag other than latest (or a digest)`);

  if (isInit && isInitImage(c)) {
    // The iptables step: root, with exactly NET_ADMIN and NET_RAW.
    const add = [...(caps.add || [])].sort();
    if (JSON.stringify(add) !== JSON.stringify(["NET_ADMIN", "NET_RAW"])) {
      fail(w, `container ${c.name}: the iptables init container may add only NET_ADMIN and NET_RAW (has ${add.join(", ") || "none"})`);
    }
    if (effective(spec, c, "runAsUser") !== 0) fail(w, `container ${c.name}: the iptables init container must set runAsUser 0 explicitly`);
    return;
  }
  if ((caps.add || []).length > 0) fail(w, `container ${c.name}: adds capabilities ${caps.add.join(", ")}; only the iptables init container may`);
  if (effective(spec, c, "runAsNonRoot") !== true) fail(w, `container ${c.name}: runAsNonRoot must be true (pod or container securityContext)`);
  if (effective(spec, c, "runAsUser") === 0) fail(w, `container ${c.name}: runs as uid 0`);
}

function checkVolumes(index, w, ns, spec) {
  const volumes = new Map((spec.volumes || []).map((v) => [v.name, v]));
  for (const c of allContainers(spec)) {
    for (const m of c.volumeMounts || []) {
      if (!volumes.has(m.name)) fail(w, `container ${c.name}: volumeMount ${m.name} names no volume`);
    }
  }
  for (const v of volumes.values()) {
    if (v.configMap && !index.find("ConfigMap", ns, v.configMap.name)) fail(w, `volume ${v.name}: ConfigMap ${ns}/${v.configMap.name} is in neither the kustomization nor bootstrap/`);
    if (v.secret && !index.find("Secret", ns, v.secret.secretName)) fail(w, `volume ${v.name}: Secret ${ns}/${v.secret.secretName} is in neither the kustomization nor bootstrap/`);
    if (v.persistentVolumeClaim && !index.find("PersistentVolumeClaim", ns, v.persistentVolumeClaim.claimName)) fail(w, `volume ${v.name}: PersistentVolumeClaim ${v.persistentVolumeClaim.claimName} not found`);
  }
}

function probeOn(c, probe, pathWanted, portWanted) {
  const p = c[probe];
  if (!p || !p.httpGet) return false;
  return p.httpGet.path === pathWanted && portNumber(c, p.httpGet.port) === portWanted;
}

// The projected token (audience meshguard-ca, short-lived, sidecar only)
// and the in-memory credentials directory.
function checkToken(w, spec, sidecar) {
  const tokenVols = (spec.volumes || []).filter((v) => v.projected && (v.projected.sources || []).some((s) => s.serviceAccountToken));
  const mounted = new Set((sidecar.volumeMounts || []).map((m) => m.name));
  if (!tokenVols.some((v) => mounted.has(v.name))) fail(w, "the sidecar mounts no projected serviceAccountToken volume");
  for (const v of tokenVols) {
    for (const s of v.projected.sources) {
      if (!s.serviceAccountToken) continue;
      if (s.serviceAccountToken.audience !== "meshguard-ca") fail(w, `volume ${v.name}: projected token audience must be meshguard-ca (is ${s.serviceAccountToken.audience})`);
      const exp = s.serviceAccountToken.expirationSeconds;
      if (!(exp >= 600 && exp <= 3600)) fail(w, `volume ${v.name}: expirationSeconds must be short: 600..3600 (is ${exp})`);
    }
  }
  for (const c of (spec.containers || []).filter((x) => x !== sidecar)) {
    for (const m of c.volumeMounts || []) {
      if (tokenVols.some((v) => v.name === m.name)) fail(w, `app container ${c.name} mounts the meshguard token`);
    }
  }
  if (!(spec.volumes || []).some((v) => v.emptyDir && v.emptyDir.medium === "Memory" && mounted.has(v.name))) {
    fail(w, "the sidecar mounts no memory emptyDir for credentials");
  }

}

function checkSidecarPod(index, messages, w, ns, spec) {
  const init = spec.initContainers || [];
  if ((spec.containers || []).some(isSidecarImage)) {
    fail(w, "meshguard-sidecar is a regular container; it must be a native sidecar (initContainers with restartPolicy: Always)");
  }
  const si = init.findIndex(isSidecarImage);
  const sidecar = si >= 0 ? init[si] : (spec.containers || []).find(isSidecarImage);
  if (!sidecar) return;
  checkToken(w, spec, sidecar);
  if (si < 0) return;
  if (sidecar.restartPolicy !== "Always") fail(w, `sidecar ${sidecar.name}: restartPolicy must be Always (native sidecar), so the app starts after it is ready`);
  if (!probeOn(sidecar, "startupProbe", "/readyz", 15000) && !probeOn(sidecar, "readinessProbe", "/readyz", 15000)) {
    fail(w, `sidecar ${sidecar.name}: needs a startupProbe or readinessProbe httpGet /readyz on port 15000`);
  }
  if (!probeOn(sidecar, "startupProbe", "/readyz", 15000)) fail(w, `sidecar ${sidecar.name}: without a startupProbe on /readyz the kubelet starts the app before the sidecar holds a certificate`);
  const ii = init.findIndex(isInitImage);
  if (ii < 0) fail(w, "a meshguard-sidecar pod without the meshguard-init (iptables) init container");
  else if (ii > si) fail(w, "meshguard-init must run before the sidecar");
  const sidecarUid = effective(spec, sidecar, "runAsUser");
  if (ii >= 0) {
    const env = Object.fromEntries((init[ii].env || []).map((e) => [e.name, e.value]));
    const proxyUid = Number(env.MESHGUARD_PROXY_UID || 1337);
    if (sidecarUid !== proxyUid) fail(w, `sidecar runs as uid ${sidecarUid} but meshguard-init exempts uid ${proxyUid}: its own traffic would loop`);
    for (const c of spec.containers || []) {
      if (effective(spec, c, "runAsUser") === proxyUid) fail(w, `app container ${c.name} runs as the sidecar's uid ${proxyUid}: its traffic would bypass the mesh`);
    }
  }

  // Its configuration (SidecarConfig) and the files it names.
  const cfg = loadConfigFile(index, ns, spec, sidecar, w, "sidecar");
  if (!cfg) return;
  if (messages) checkMessage(messages, "SidecarConfig", cfg, "", (m) => fail(w, `sidecar config: ${m}`));
  const ca = cfg.ca || {};
  if (!/^meshguard-ca\.meshguard-system\.svc(\.cluster\.local)?:15012$/.test(ca.address || "")) fail(w, `sidecar config: ca.address must be meshguard-ca.meshguard-system.svc:15012 (is ${ca.address})`);
  for (const [field, file] of [["ca.ca_bundle_file", ca.ca_bundle_file], ["ca.token_file", ca.token_file], ["policy_file", cfg.policy_file]]) {
    if (!file) {
      fail(w, `sidecar config: ${field} is not set`);
      continue;
    }
    const r = resolvePath(index, ns, spec, sidecar, file);
    if (r.error) fail(w, `sidecar config ${field}: ${r.error}`);
    else if (field === "ca.token_file" && !(r.token && r.token.audience === "meshguard-ca")) fail(w, `sidecar config: ca.token_file ${file} is not the projected meshguard-ca token`);
    else if (field === "ca.ca_bundle_file" && r.volume.configMap?.name !== "meshguard-trust-bundle") fail(w, `sidecar config: ca.ca_bundle_file should come from the meshguard-trust-bundle ConfigMap`);
  }
  if (cfg.transparent !== true) fail(w, "sidecar config: transparent must be true (meshguard-init redirects traffic)");
  const l = cfg.listeners || {};
  if (l.inbound !== "0.0.0.0:15006") fail(w, `sidecar config: listeners.inbound must be 0.0.0.0:15006 (is ${l.inbound})`);
  const admin = hostPort(l.admin || "127.0.0.1:15000");
  if (admin.port !== 15000 || admin.host.startsWith("127.") || admin.host === "localhost") {
    fail(w, `sidecar config: listeners.admin ${l.admin || "(default 127.0.0.1:15000)"} is not reachable by the kubelet's probes on port 15000`);
  }
  const app = hostPort(cfg.app_address || "");
  if (!app || app.host !== "127.0.0.1") fail(w, `sidecar config: app_address must be 127.0.0.1:<app port> (is ${cfg.app_address})`);
  else if (!(spec.containers || []).some((c) => (c.ports || []).some((p) => p.containerPort === app.port))) fail(w, `sidecar config: app_address port ${app.port} is no app container's port`);
}

function checkCaPod(index, messages, w, ns, spec) {
  const c = (spec.containers || []).find(isCaImage);
  if (!c) return;
  const cfg = loadConfigFile(index, ns, spec, c, w, "CA");
  if (!cfg) return;
  if (messages) checkMessage(messages, "CaConfig", cfg, "", (m) => fail(w, `CA config: ${m}`));
  for (const field of ["signing_cert_file", "signing_key_file", "trust_bundle_file"]) {
    const file = cfg[field];
    if (!file) {
      fail(w, `CA config: ${field} must point at the mounted Secret`);
      continue;
    }
    const r = resolvePath(index, ns, spec, c, file);
    if (r.error) fail(w, `CA config ${field}: ${r.error}`);
    else if (!r.volume.secret) fail(w, `CA config: ${field} ${file} is not in a Secret volume`);
  }
  const jwks = (cfg.kubernetes || {}).jwks_file;
  if (!jwks) fail(w, "CA config: kubernetes.jwks_file is not set (service-account tokens would be refused)");
  else {
    const r = resolvePath(index, ns, spec, c, jwks);
    if (r.error) fail(w, `CA config kubernetes.jwks_file: ${r.error}`);
  }
  const review = (cfg.kubernetes || {}).token_review;
  if (review && review.enabled === true) checkTokenReview(index, w, ns, spec, c, review);
  const aud = (cfg.kubernetes || {}).audience;
  if (aud !== undefined && aud !== "meshguard-ca") fail(w, `CA config: kubernetes.audience ${aud} differs from the sidecars' token audience meshguard-ca`);
  for (const [field, file] of [["data_dir", cfg.data_dir], ["storage.dsn", (cfg.storage || {}).dsn]]) {
    if (!file) continue;
    const r = resolvePath(index, ns, spec, c, field === "data_dir" ? `${file}/meshguard-ca.db` : file);
    if (r.error) fail(w, `CA config ${field}: ${r.error}`);
    else if (!r.volume.persistentVolumeClaim || !r.writable) fail(w, `CA config: ${field} ${file} is not on a writable PersistentVolumeClaim`);
  }
  const listen = hostPort(cfg.listen || "127.0.0.1:15012");
  if (listen.host.startsWith("127.")) fail(w, `CA config: listen ${cfg.listen || "(default)"} is loopback; peers in other pods cannot reach it`);
  if (!(c.ports || []).some((p) => p.containerPort === listen.port)) fail(w, `CA config: listen port ${listen.port} is not a containerPort`);
  const http = hostPort(cfg.admin_http_listen || "127.0.0.1:15014");
  for (const probe of ["readinessProbe", "livenessProbe"]) {
    const p = c[probe];
    if (!p || !p.httpGet) fail(w, `CA container: ${probe} missing`);
    else if (portNumber(c, p.httpGet.port) !== http.port || http.host.startsWith("127.")) fail(w, `CA container: ${probe} port is not admin_http_listen ${cfg.admin_http_listen}`);
  }
}

// kubernetes.token_review: the CA's own token (for the API server's
// audience) and the cluster's CA mounted where the config says, and its
// service account allowed to create tokenreviews.
function checkTokenReview(index, w, ns, spec, c, review) {
  const tokenFile = review.token_file || `${SERVICE_ACCOUNT_DIR}/token`;
  const t = resolvePath(index, ns, spec, c, tokenFile);
  if (t.error) fail(w, `CA config kubernetes.token_review.token_file: ${t.error}`);
  else if (!t.token) fail(w, `CA config: kubernetes.token_review.token_file ${tokenFile} is not a projected serviceAccountToken`);
  else if (t.token.audience) fail(w, `CA config: kubernetes.token_review.token_file ${tokenFile} has audience ${t.token.audience}; the API server takes only its own (leave audience unset)`);
  const caFile = review.ca_file || `${SERVICE_ACCOUNT_DIR}/ca.crt`;
  const a = resolvePath(index, ns, spec, c, caFile);
  if (a.error) fail(w, `CA config kubernetes.token_review.ca_file: ${a.error}`);
  const sa = spec.serviceAccountName || "default";
  const bound = index.docs.some(
    (d) =>
      d.obj &&
      d.obj.kind === "ClusterRoleBinding" &&
      (d.obj.roleRef || {}).kind === "ClusterRole" &&
      clusterRoleAllows(index, d.obj.roleRef.name, "authentication.k8s.io", "tokenreviews", "create") &&
      (d.obj.subjects || []).some((s) => s.kind === "ServiceAccount" && s.name === sa && s.namespace === ns),
  );
  if (!bound) fail(w, `the CA's service account ${ns}/${sa} may not create tokenreviews (kubernetes.token_review is enabled): bind it with a ClusterRoleBinding to a ClusterRole that allows create on tokenreviews.authentication.k8s.io (deploy/k8s/ca/rbac.yaml), or to the built-in system:auth-delegator`);
}

// Whether the ClusterRole `name` lets its subjects `verb` `resource` of API
// group `group`: the built-in system:auth-delegator (create tokenreviews and
// subjectaccessreviews), or a ClusterRole in these manifests with a rule
// naming all three (or "*").
function clusterRoleAllows(index, name, group, resource, verb) {
  if (name === "system:auth-delegator") {
    return group === "authentication.k8s.io" && resource === "tokenreviews" && verb === "create";
  }
  const names = (list, want) => (list || []).some((v) => v === want || v === "*");
  return index.docs.some(
    (d) =>
      d.obj &&
      d.obj.kind === "ClusterRole" &&
      (d.obj.metadata || {}).name === name &&
      (d.obj.rules || []).some(
        (r) => names(r.apiGroups, group) && names(r.resources, resource) && names(r.verbs, verb),
      ),
  );
}

function checkService(index, w, doc) {
  const o = doc.obj;
  const ns = o.metadata.namespace;
  const sel = (o.spec || {}).selector || {};
  const pods = index.docs.filter((d) => podSpecOf(d.obj) && (d.obj.metadata || {}).namespace === ns).filter((d) => {
    const labels = ((d.obj.spec.template || {}).metadata || {}).labels || ((d.obj.metadata || {}).labels || {});
    return Object.entries(sel).every(([k, v]) => labels[k] === v);
  });
  if (pods.length === 0) return fail(w, "selector matches no workload");
  for (const p of (o.spec || {}).ports || []) {
    const target = p.targetPort === undefined ? p.port : p.targetPort;
    const ok = pods.some((d) => allContainers(podSpecOf(d.obj)).some((c) => portNumber(c, target) !== undefined && (typeof target !== "number" || (c.ports || []).some((cp) => cp.containerPort === target))));
    if (!ok) fail(w, `port ${p.name || p.port}: targetPort ${target} is no container port of the selected pods`);
  }
}

const NAMESPACED = new Set(["ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "PersistentVolumeClaim", "Role", "RoleBinding", "NetworkPolicy", "PodDisruptionBudget"]);

function checkObjects(docs, messages) {
  const index = new Index(docs);
  for (const doc of docs) {
    const o = doc.obj;
    if (!o || typeof o !== "object") continue;
    const w = where(doc);
    const ns = (o.metadata || {}).namespace;
    if (NAMESPACED.has(o.kind) && !ns) fail(w, "metadata.namespace must be explicit (the kustomization sets none)");
    if (o.kind === "Secret") {
      const all = { ...(o.data || {}), ...(o.stringData || {}) };
      for (const [k, v] of Object.entries(all)) {
        const text = o.stringData && k in o.stringData ? v : Buffer.from(String(v), "base64").toString("utf8");
        if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) fail(w, `key ${k} holds a real private key: never commit keys`);
      }
    }
    if (o.kind === "Service") checkService(index, w, doc);
    const spec = podSpecOf(o);
    if (!spec) continue;
    if (!spec.securityContext || spec.securityContext.runAsNonRoot !== true) fail(w, "pod securityContext.runAsNonRoot must be true");
    for (const c of spec.initContainers || []) checkContainerSecurity(w, spec, c, true);
    for (const c of spec.containers || []) checkContainerSecurity(w, spec, c, false);
    checkVolumes(index, w, ns, spec);
    checkSidecarPod(index, messages, w, ns, spec);
    checkCaPod(index, messages, w, ns, spec);
  }
}

// ---------------------------------------------------------------- main

function main(argv) {
  let k8sDir = null;
  let files = null;
  let protoFile = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--k8s-dir") k8sDir = argv[++i];
    else if (argv[i] === "--config-proto") protoFile = argv[++i];
    else if (argv[i] === "--files") files = argv.slice(i + 1), (i = argv.length);
    else {
      console.error(`validate_manifests: unknown argument ${argv[i]}`);
      return 2;
    }
  }
  const messages = protoFile ? parseProto(protoFile) : null;
  if (messages && (!messages.SidecarConfig || !messages.CaConfig)) {
    console.error(`validate_manifests: ${protoFile} has no SidecarConfig/CaConfig`);
    return 2;
  }
  let docs = [];
  if (k8sDir) {
    const reached = new Set();
    docs = expandKustomization(k8sDir, reached);
    const bootstrap = path.join(k8sDir, "bootstrap");
    for (const f of walk(k8sDir)) {
      if (!/\.ya?ml$/.test(f)) continue;
      const abs = path.resolve(f);
      if (reached.has(abs)) continue;
      if (abs.startsWith(path.resolve(bootstrap) + path.sep)) docs = docs.concat(loadDocs(f));
      else fail(f, "not reached from kustomization.yaml and not a bootstrap/ placeholder");
    }
  } else if (files) {
    for (const f of files) docs = docs.concat(loadDocs(f));
  } else {
    console.error("usage: validate_manifests.js (--k8s-dir DIR | --files F...) [--config-proto config.proto]");
    return 2;
  }
  const schemaOk = docs.filter(validateSchema);
  // Kinds without a schema are already errors; the rules run on the rest.
  checkObjects(schemaOk, messages);
  if (errors.length > 0) {
    for (const e of errors) console.log(`FAIL ${e}`);
    console.log(`validate_manifests: ${errors.length} problem(s) in ${docs.length} object(s)`);
    return 1;
  }
  const kinds = {};
  for (const d of docs) kinds[d.obj.kind] = (kinds[d.obj.kind] || 0) + 1;
  console.log(`validate_manifests: ${docs.length} object(s) valid: ${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ")}`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
