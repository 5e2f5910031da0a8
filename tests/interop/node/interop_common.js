// What the Node.js client and server of tests/interop share: the service
// definition, loaded at run time from tests/interop/proto with
// @grpc/proto-loader, and the metadata keys of docs/interop.md.
//
// @grpc/grpc-js and @grpc/proto-loader come from node_modules beside this
// file (pinned by package-lock.json, installed by scripts/setup.sh). Node
// resolves a script's real path, so that also works from Bazel's runfiles.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The workspace root: tests/interop/proto/test.proto is under it.
function defaultProtoRoot() {
  return path.resolve(__dirname, '..', '..', '..');
}

// Returns the grpc.testing package (TestService, UnimplementedService).
function loadTestPackage(protoRoot) {
  const definition = protoLoader.loadSync('tests/interop/proto/test.proto', {
    includeDirs: [protoRoot || defaultProtoRoot()],
    keepCase: true,
    defaults: true,
    enums: String,
  });
  return grpc.loadPackageDefinition(definition).grpc.testing;
}

// --name value flags into an object (camelCase keys).
function parseFlags(argv, defaults) {
  const flags = Object.assign({}, defaults);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    const key = m[1].replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in defaults)) throw new Error(`unknown flag --${m[1]}`);
    flags[key] = m[2] !== undefined ? m[2] : argv[++i];
  }
  return flags;
}

module.exports = {
  grpc,
  loadTestPackage,
  parseFlags,
  ECHO_INITIAL: 'x-grpc-test-echo-initial',
  ECHO_TRAILING: 'x-grpc-test-echo-trailing-bin',
  TOKEN: 'x-interop-token',
  QUERY_TOKEN: 'x-interop-query-token',
  CALL_STATE: 'x-interop-call-state',
  MAX_MESSAGE_BYTES: 16 << 20,
};
