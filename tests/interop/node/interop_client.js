// gRPC Node.js (@grpc/grpc-js) client of the interop test service: runs the
// cases of docs/interop.md against one server (directly, or through a
// sidecar's outbound listener with --authority naming the route) and prints
// one line per case, "PASS <case> (<ms> ms)" or "FAIL <case>: <what went
// wrong>". Exits 0 when every case passed.
//   node interop_client.js --target 127.0.0.1:PORT [--authority NAME]
//       [--cases a,b] [--proto-root DIR]
// grpc-js does not show whether a received message arrived compressed; the
// C++ server checks the client_compressed_* requests, and the mesh run
// checks the bytes the sidecar carried.
'use strict';

const crypto = require('crypto');
const common = require('./interop_common');
const {grpc} = common;

const MIB = 1 << 20;
const LARGE_REQUEST = MIB + 271828;
const LARGE_RESPONSE = MIB + 314159;
const COMPRESSED = MIB;
const REQUEST_SIZES = [27182, 8, 1828, 45904];
const RESPONSE_SIZES = [31415, 9, 2653, 58979];
const ECHO_INITIAL_VALUE = 'test_initial_metadata_value';
const ECHO_TRAILING_VALUE = Buffer.from([0xab, 0xab, 0xab]);
const SPECIAL_MESSAGE =
    '\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \u{1f608}\t\n';
const GZIP = 2;  // grpc.default_compression_algorithm: 0 identity, 1 deflate

class CaseFailed extends Error {}

function check(cond, what) {
  if (!cond) throw new CaseFailed(what);
}

function describe(status) {
  return `${status.code} ${JSON.stringify(status.details)}`;
}

function callFailed(what, status) {
  return new CaseFailed(`${what} failed: ${describe(status)}`);
}

function payload(size) {
  return {body: Buffer.alloc(size)};
}

function checkPayload(what, p, size) {
  const body = p ? p.body : Buffer.alloc(0);
  check(body.length === size,
        `${what}: payload of ${body.length} bytes, want ${size}`);
  check(body.every((b) => b === 0), `${what}: payload is not all zeros`);
}

function checkResponses(responses, sizes) {
  check(responses.length === sizes.length,
        `${responses.length} responses, want ${sizes.length}`);
  responses.forEach((r, i) => checkPayload(`response ${i}`, r.payload, sizes[i]));
}

function outputRequest(sizes, requestSize = 0, compressed = false) {
  return {
    response_parameters: sizes.map((size) => ({size, compressed: {value: compressed}})),
    payload: payload(requestSize),
  };
}

// Reads a streaming call: next() gives each response, then null; status()
// the call's final status (an error is a status too).
class Reader {
  constructor(call) {
    this.items = [];
    this.waiting = null;
    this.finalStatus = new Promise((resolve) => call.on('status', resolve));
    this.initialMetadata = new Promise((resolve) => call.on('metadata', resolve));
    call.on('data', (d) => this.push(d));
    call.on('end', () => this.push(null));
    call.on('error', () => this.push(null));
  }
  push(item) {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(item);
    } else {
      this.items.push(item);
    }
  }
  next() {
    if (this.items.length > 0) {
      const item = this.items[0];
      if (item !== null) this.items.shift();
      return Promise.resolve(item);
    }
    return new Promise((resolve) => { this.waiting = resolve; });
  }
  async all() {
    const out = [];
    for (let r = await this.next(); r !== null; r = await this.next()) out.push(r);
    return out;
  }
  status() {
    return this.finalStatus;
  }
}

class Client {
  constructor(pkg, target, authority, deadlineMs) {
    const options = {
      'grpc.max_receive_message_length': common.MAX_MESSAGE_BYTES,
      'grpc.enable_http_proxy': 0,
    };
    if (authority) options['grpc.default_authority'] = authority;
    const creds = grpc.credentials.createInsecure();
    this.stub = new pkg.TestService(target, creds, options);
    this.unimplementedStub = new pkg.UnimplementedService(
        target, creds, Object.assign({channelOverride: this.stub.getChannel()}, options));
    this.newGzipStub = () => new pkg.TestService(
        target, creds, Object.assign({'grpc.default_compression_algorithm': GZIP}, options));
    this.deadlineMs = deadlineMs;
  }

  // Runs fn with a stub on a channel of its own that gzip-compresses every
  // message it sends. A new channel each time: grpc-js stops compressing on
  // a channel once a response's grpc-accept-encoding lacks "gzip" as it
  // splits the list, and gRPC core servers send "identity, deflate, gzip"
  // (with spaces), so after the first response grpc-js sends uncompressed.
  async withGzipStub(fn) {
    const stub = this.newGzipStub();
    try {
      return await fn(stub);
    } finally {
      stub.close();
    }
  }

  deadline(ms) {
    return new Date(Date.now() + (ms || this.deadlineMs));
  }

  // A unary call: {error, response, initialMetadata, status}.
  unary(stub, method, request, metadata, deadlineMs) {
    return new Promise((resolve) => {
      const result = {};
      let pending = 2;
      const done = () => { if (--pending === 0) resolve(result); };
      const call = stub[method](request, metadata || new grpc.Metadata(),
                                {deadline: this.deadline(deadlineMs)}, (error, response) => {
                                  result.error = error;
                                  result.response = response;
                                  done();
                                });
      call.on('metadata', (md) => { result.initialMetadata = md; });
      call.on('status', (status) => {
        result.status = status;
        done();
      });
    });
  }

  async ok(stub, method, request, metadata) {
    const r = await this.unary(stub, method, request, metadata);
    if (r.error) throw callFailed(method, r.status);
    return r;
  }

  async waitForServerState(token, want) {
    const end = Date.now() + 5000;
    let state;
    for (;;) {
      const md = new grpc.Metadata();
      md.set(common.QUERY_TOKEN, token);
      const r = await this.unary(this.stub, 'EmptyCall', {}, md);
      if (r.error) throw callFailed('the call-state query', r.status);
      state = r.status.metadata.get(common.CALL_STATE)[0];
      if (state === want) return;
      if (Date.now() > end) {
        throw new CaseFailed(`the server's call is "${state}" 5 s later, want "${want}"`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  // ---- cases ----
  async empty_unary() {
    const r = await this.ok(this.stub, 'EmptyCall', {});
    check(Object.keys(r.response).length === 0, 'response is not empty');
  }

  async large_unary() {
    const r = await this.ok(this.stub, 'UnaryCall',
                            {response_size: LARGE_RESPONSE, payload: payload(LARGE_REQUEST)});
    checkPayload('response', r.response.payload, LARGE_RESPONSE);
  }

  async client_compressed_unary() {
    const r = await this.withGzipStub((stub) => this.ok(stub, 'UnaryCall', {
      response_size: 16,
      payload: payload(COMPRESSED),
      expect_compressed: {value: true},
    }));
    checkPayload('response', r.response.payload, 16);
  }

  async server_compressed_unary() {
    const r = await this.ok(this.stub, 'UnaryCall', {
      response_size: COMPRESSED,
      payload: payload(16),
      response_compressed: {value: true},
    });
    checkPayload('response', r.response.payload, COMPRESSED);
  }

  async clientStreaming(stub, sizes, compressed) {
    const result = await new Promise((resolve) => {
      const call = stub.StreamingInputCall(
          new grpc.Metadata(), {deadline: this.deadline()},
          (error, response) => resolve({error, response}));
      for (const size of sizes) {
        call.write({payload: payload(size),
                    expect_compressed: compressed ? {value: true} : null});
      }
      call.end();
    });
    if (result.error) throw callFailed('StreamingInputCall', result.error);
    const total = sizes.reduce((a, b) => a + b, 0);
    check(result.response.aggregated_payload_size === total,
          `aggregated_payload_size ${result.response.aggregated_payload_size}, want ${total}`);
  }

  client_streaming() {
    return this.clientStreaming(this.stub, REQUEST_SIZES, false);
  }

  client_compressed_streaming() {
    return this.withGzipStub(
        (stub) => this.clientStreaming(stub, [COMPRESSED / 2, COMPRESSED / 2], true));
  }

  async serverStreaming(sizes, compressed) {
    const reader = new Reader(this.stub.StreamingOutputCall(
        outputRequest(sizes, 0, compressed), new grpc.Metadata(),
        {deadline: this.deadline()}));
    const responses = await reader.all();
    const status = await reader.status();
    if (status.code !== grpc.status.OK) throw callFailed('StreamingOutputCall', status);
    checkResponses(responses, sizes);
  }

  server_streaming() {
    return this.serverStreaming(RESPONSE_SIZES, false);
  }

  server_compressed_streaming() {
    return this.serverStreaming([COMPRESSED / 2, COMPRESSED / 2], true);
  }

  async ping_pong() {
    const call = this.stub.FullDuplexCall(new grpc.Metadata(), {deadline: this.deadline()});
    const reader = new Reader(call);
    try {
      for (let i = 0; i < REQUEST_SIZES.length; i++) {
        call.write(outputRequest([RESPONSE_SIZES[i]], REQUEST_SIZES[i]));
        const r = await reader.next();
        if (r === null) throw callFailed(`read ${i}`, await reader.status());
        checkPayload(`response ${i}`, r.payload, RESPONSE_SIZES[i]);
      }
      call.end();
      check((await reader.next()) === null, 'a response after the last request');
    } finally {
      call.cancel();
    }
    const status = await reader.status();
    if (status.code !== grpc.status.OK) throw callFailed('FullDuplexCall', status);
  }

  async half_duplex() {
    const call = this.stub.HalfDuplexCall(new grpc.Metadata(), {deadline: this.deadline()});
    const reader = new Reader(call);
    for (let i = 0; i < REQUEST_SIZES.length; i++) {
      call.write(outputRequest([RESPONSE_SIZES[i]], REQUEST_SIZES[i]));
    }
    call.end();
    const responses = await reader.all();
    const status = await reader.status();
    if (status.code !== grpc.status.OK) throw callFailed('HalfDuplexCall', status);
    checkResponses(responses, RESPONSE_SIZES);
  }

  async empty_stream() {
    const call = this.stub.FullDuplexCall(new grpc.Metadata(), {deadline: this.deadline()});
    const reader = new Reader(call);
    call.end();
    const responses = await reader.all();
    const status = await reader.status();
    if (status.code !== grpc.status.OK) throw callFailed('FullDuplexCall', status);
    check(responses.length === 0, 'a response to no request');
  }

  checkEchoed(what, initial, trailing) {
    const i = initial ? initial.get(common.ECHO_INITIAL)[0] : undefined;
    const t = trailing ? trailing.get(common.ECHO_TRAILING)[0] : undefined;
    check(i === ECHO_INITIAL_VALUE,
          `${what}: initial metadata ${common.ECHO_INITIAL} is ${JSON.stringify(i)}`);
    check(Buffer.isBuffer(t) && t.equals(ECHO_TRAILING_VALUE),
          `${what}: trailing metadata ${common.ECHO_TRAILING} is ${t && t.toString('hex')}`);
  }

  echoRequestMetadata() {
    const md = new grpc.Metadata();
    md.set(common.ECHO_INITIAL, ECHO_INITIAL_VALUE);
    md.set(common.ECHO_TRAILING, ECHO_TRAILING_VALUE);
    return md;
  }

  async custom_metadata() {
    const r = await this.ok(this.stub, 'UnaryCall',
                            {response_size: 314159, payload: payload(271828)},
                            this.echoRequestMetadata());
    this.checkEchoed('UnaryCall', r.initialMetadata, r.status.metadata);
    const call = this.stub.FullDuplexCall(this.echoRequestMetadata(),
                                          {deadline: this.deadline()});
    const reader = new Reader(call);
    call.write(outputRequest([314159], 271828));
    call.end();
    await reader.all();
    const status = await reader.status();
    if (status.code !== grpc.status.OK) throw callFailed('FullDuplexCall', status);
    this.checkEchoed('FullDuplexCall', await reader.initialMetadata, status.metadata);
  }

  static statusProblem(what, status, code, message) {
    if (status.code === code && status.details === message) return null;
    return `${what}: got ${describe(status)}, want ${code} ${JSON.stringify(message)}`;
  }

  async unaryStatus(code, message) {
    const r = await this.unary(this.stub, 'UnaryCall',
                               {response_status: {code, message}});
    return Client.statusProblem(`UnaryCall with status ${code}`, r.status, code, message);
  }

  async duplexStatus(code, message) {
    const call = this.stub.FullDuplexCall(new grpc.Metadata(), {deadline: this.deadline()});
    const reader = new Reader(call);
    call.write({response_status: {code, message}});
    call.end();
    await reader.all();
    return Client.statusProblem(`FullDuplexCall with status ${code}`,
                                await reader.status(), code, message);
  }

  async status_code_and_message() {
    const problems = [];
    for (let code = 1; code <= 16; code++) {
      const message = `test status message ${code}`;
      for (const p of [await this.unaryStatus(code, message),
                       await this.duplexStatus(code, message)]) {
        if (p) problems.push(p);
      }
    }
    check(problems.length === 0, problems.join('; '));
  }

  async special_status_message() {
    const p = await this.unaryStatus(2, SPECIAL_MESSAGE);
    check(!p, p);
  }

  async expectUnimplemented(what, stub) {
    const r = await this.unary(stub, 'UnimplementedCall', {});
    if (r.status.code !== grpc.status.UNIMPLEMENTED) {
      throw callFailed(`${what} (want UNIMPLEMENTED)`, r.status);
    }
  }

  unimplemented_method() {
    return this.expectUnimplemented('UnimplementedCall', this.stub);
  }

  unimplemented_service() {
    return this.expectUnimplemented('UnimplementedService', this.unimplementedStub);
  }

  static tokenMetadata(token) {
    const md = new grpc.Metadata();
    md.set(common.TOKEN, token);
    return md;
  }

  async cancel_after_begin() {
    const token = `node-${crypto.randomBytes(8).toString('hex')}`;
    let call;
    const ended = new Promise((resolve) => {
      call = this.stub.StreamingInputCall(Client.tokenMetadata(token),
                                          {deadline: this.deadline()},
                                          (error) => resolve(error));
    });
    try {
      // The call has begun at the server: it holds the stream, waiting for a
      // message.
      await this.waitForServerState(token, 'running');
    } finally {
      call.cancel();
    }
    const error = await ended;
    if (!error || error.code !== grpc.status.CANCELLED) {
      throw callFailed('StreamingInputCall (want CANCELLED)', error || {code: 0});
    }
    await this.waitForServerState(token, 'cancelled');
  }

  async cancel_after_first_response() {
    const token = `node-${crypto.randomBytes(8).toString('hex')}`;
    const call = this.stub.FullDuplexCall(Client.tokenMetadata(token),
                                          {deadline: this.deadline()});
    const reader = new Reader(call);
    call.write(outputRequest([31415], 27182));
    const first = await reader.next();
    call.cancel();
    const status = await reader.status();
    if (first === null) throw callFailed("FullDuplexCall's first response", status);
    if (status.code !== grpc.status.CANCELLED) {
      throw callFailed('FullDuplexCall (want CANCELLED)', status);
    }
    await this.waitForServerState(token, 'cancelled');
  }

  async timeout_on_sleeping_server() {
    const token = `node-${crypto.randomBytes(8).toString('hex')}`;
    const call = this.stub.FullDuplexCall(Client.tokenMetadata(token),
                                          {deadline: this.deadline(1000)});
    const reader = new Reader(call);
    call.write(outputRequest([], 27182));
    await reader.all();
    const status = await reader.status();
    if (status.code !== grpc.status.DEADLINE_EXCEEDED) {
      throw callFailed('FullDuplexCall (want DEADLINE_EXCEEDED)', status);
    }
    await this.waitForServerState(token, 'cancelled');
  }

  close() {
    this.stub.close();
  }
}

const CASES = [
  'empty_unary', 'large_unary', 'client_streaming', 'server_streaming',
  'ping_pong', 'half_duplex', 'empty_stream', 'custom_metadata',
  'status_code_and_message', 'special_status_message',
  'unimplemented_method', 'unimplemented_service', 'cancel_after_begin',
  'cancel_after_first_response', 'timeout_on_sleeping_server',
  'client_compressed_unary', 'server_compressed_unary',
  'client_compressed_streaming', 'server_compressed_streaming',
];

async function main() {
  const flags = common.parseFlags(process.argv.slice(2), {
    target: '127.0.0.1:8080', authority: '', cases: 'all', deadlineMs: '30000',
    protoRoot: '',
  });
  const pkg = common.loadTestPackage(flags.protoRoot);
  const client = new Client(pkg, flags.target, flags.authority, Number(flags.deadlineMs));
  const wanted = flags.cases === 'all' ? CASES : flags.cases.split(',').filter((c) => c);
  let failed = 0;
  for (const name of wanted) {
    const start = Date.now();
    try {
      if (!CASES.includes(name)) throw new CaseFailed('no such case in the Node.js client');
      await client[name]();
      console.log(`PASS ${name} (${Date.now() - start} ms)`);
    } catch (e) {
      failed++;
      const reason = e instanceof CaseFailed ? e.message : `${e.name}: ${e.message}`;
      console.log(`FAIL ${name}: ${reason.replace(/\n/g, '\\n')}`);
    }
  }
  client.close();
  process.exitCode = failed === 0 ? 0 : 1;
}

main();
