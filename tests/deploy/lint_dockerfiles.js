#!/usr/bin/env node
// A small Dockerfile lint (no hadolint on this machine), for deploy/docker.
//
//   node lint_dockerfiles.js [--context DIR] FILE...
//
// Rules:
//   - every FROM names a tag or a digest, never :latest (earlier stages and
//     scratch excepted);
//   - the last USER of each final stage (one no other stage builds on) is a
//     numeric non-zero uid; `# lint-allow root-user: why` just above it
//     allows uid 0;
//   - a final stage has a HEALTHCHECK, or `# lint-allow no-healthcheck: why`;
//   - no ADD of a URL (and no ADD at all: COPY is explicit);
//   - every RUN with apt-get install also runs apt-get update, uses
//     --no-install-recommends and removes /var/lib/apt/lists/*;
//   - with --context, every COPY source (not --from, not ".") exists there.
// Prints "FAIL file:line: problem" per problem; exits 1 if any.
"use strict";

const fs = require("fs");
const path = require("path");

function parse(text) {
  // Instructions with their line, continuation lines joined, and the comment
  // block just above each.
  const lines = text.split("\n");
  const out = [];
  let comments = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*#/.test(line)) {
      comments.push(line.replace(/^\s*#\s?/, ""));
      continue;
    }
    if (/^\s*$/.test(line)) {
      continue;
    }
    const start = i;
    let full = line;
    while (/\\\s*$/.test(full) && i + 1 < lines.length) {
      full = full.replace(/\\\s*$/, " ");
      i++;
      if (/^\s*#/.test(lines[i])) continue;
      full += lines[i];
    }
    const m = /^\s*(\w+)\s*(.*)$/.exec(full);
    out.push({ line: start + 1, op: m[1].toUpperCase(), args: m[2].trim(), comments });
    comments = [];
  }
  return out;
}

function lint(file, context) {
  const problems = [];
  const fail = (line, msg) => problems.push(`${file}:${line}: ${msg}`);
  const ins = parse(fs.readFileSync(file, "utf8"));
  const stages = [];
  for (const i of ins) {
    if (i.op === "FROM") {
      const words = i.args.split(/\s+/).filter((w) => !w.startsWith("--"));
      const image = words[0];
      const alias = words[1] && words[1].toUpperCase() === "AS" ? words[2] : null;
      stages.push({ line: i.line, image, alias, ins: [], usedBy: false });
      const known = stages.slice(0, -1).some((s) => s.alias === image);
      if (!known && image !== "scratch") {
        const [, digest] = image.split("@");
        const slash = image.lastIndexOf("/");
        const colon = image.split("@")[0].lastIndexOf(":");
        const tag = colon > slash ? image.split("@")[0].slice(colon + 1) : "";
        if (/\$/.test(image)) fail(i.line, `FROM ${image}: a variable image cannot be checked; name the tag`);
        else if (!digest && !tag) fail(i.line, `FROM ${image}: no tag (that means latest); pin one`);
        else if (tag === "latest") fail(i.line, `FROM ${image}: latest is not a pin`);
      }
      continue;
    }
    if (stages.length === 0) {
      if (i.op !== "ARG") fail(i.line, `${i.op} before any FROM`);
      continue;
    }
    stages[stages.length - 1].ins.push(i);
  }
  if (stages.length === 0) fail(1, "no FROM");
  // Which stages other stages build on.
  for (const s of stages) {
    for (const i of s.ins) {
      const m = /--from=(\S+)/.exec(i.args);
      if ((i.op === "COPY" || i.op === "RUN") && m) {
        for (const t of stages) if (t.alias === m[1]) t.usedBy = true;
      }
    }
    for (const t of stages) if (t.alias && t.alias === s.image) t.usedBy = true;
  }
  for (const s of stages) {
    const final = !s.usedBy;
    for (const i of s.ins) {
      if (i.op === "ADD") {
        if (/(https?|ftp):\/\//i.test(i.args)) fail(i.line, "ADD of a URL: download in a RUN with a checksum, or vendor the file");
        else fail(i.line, "ADD: use COPY (ADD also unpacks archives and fetches URLs)");
      }
      if (i.op === "RUN" && /apt-get\s+(-\S+\s+)*install/.test(i.args)) {
        if (!/apt-get\s+(-\S+\s+)*update/.test(i.args)) fail(i.line, "apt-get install without apt-get update in the same RUN (stale lists)");
        if (!/--no-install-recommends/.test(i.args)) fail(i.line, "apt-get install without --no-install-recommends");
        if (!/rm\s+-rf?\s+\/var\/lib\/apt\/lists/.test(i.args)) fail(i.line, "apt lists not removed (rm -rf /var/lib/apt/lists/*) in the same RUN");
      }
      if (i.op === "COPY" && context && !/--from=/.test(i.args)) {
        let json = null;
        try {
          if (i.args.startsWith("[")) json = JSON.parse(i.args);
        } catch (e) {
          /* fall through */
        }
        const words = json || i.args.split(/\s+/).filter((w) => !w.startsWith("--"));
        for (const src of words.slice(0, -1)) {
          if (src === "." || /[*?[]/.test(src)) continue;
          if (!fs.existsSync(path.join(context, src))) fail(i.line, `COPY ${src}: not in the build context (${context})`);
        }
      }
      if (i.op === "FROM") fail(i.line, "unexpected");
    }
    if (!final) continue;
    const users = s.ins.filter((i) => i.op === "USER");
    const where = `stage ${s.alias || s.image} (line ${s.line})`;
    if (users.length === 0) {
      fail(s.line, `${where}: final stage without USER: runs as root`);
    } else {
      const last = users[users.length - 1];
      const user = last.args.split(":")[0];
      const allowed = last.comments.some((c) => /^lint-allow root-user:\s*\S/.test(c));
      if (!/^\d+$/.test(user)) fail(last.line, `USER ${last.args}: use a numeric uid (Kubernetes runAsNonRoot cannot check a name)`);
      else if (Number(user) === 0 && !allowed) fail(last.line, `USER ${last.args}: the final stage runs as root (add "# lint-allow root-user: why" if it must)`);
    }
    const hasHealth = s.ins.some((i) => i.op === "HEALTHCHECK");
    const noHealthOk = s.ins.some((i) => i.comments.some((c) => /^lint-allow no-healthcheck:\s*\S/.test(c)));
    if (!hasHealth && !noHealthOk) fail(s.line, `${where}: no HEALTHCHECK (or "# lint-allow no-healthcheck: why")`);
  }
  return problems;
}

function main(argv) {
  let context = null;
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--context") context = argv[++i];
    else files.push(argv[i]);
  }
  if (files.length === 0) {
    console.error("usage: lint_dockerfiles.js [--context DIR] FILE...");
    return 2;
  }
  let problems = [];
  for (const f of files) problems = problems.concat(lint(f, context));
  for (const p of problems) console.log(`FAIL ${p}`);
  console.log(`lint_dockerfiles: ${files.length} file(s), ${problems.length} problem(s)`);
  return problems.length ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
