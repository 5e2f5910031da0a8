// gRPC Node.js (@grpc/grpc-js) server of the interop test service
// (grpc.testing.TestService, tests/interop/proto/test.proto), h2c:
//   node interop_server.js --port 0 [--proto-root DIR]
// prints "listening on PORT" once it accepts calls. What each method does:
// docs/interop.md. grpc-js servers do not compress responses, so
// response_compressed / ResponseParameters.compressed are ignored.
'use strict';

const common = require('./interop_common');
const {grpc} = common;

// The call-state records behind x-interop-token: "running" from the
// handler's start, then "finished" or "cancelled".
const states = new Map();

function track(call) {
  const token = call.metadata.get(common.TOKEN)[0];
  if (!token) return () => {};
  states.set(token, 'running');
  call.on('cancelled', () => states.set(token, 'cancelled'));
  return () => {
    if (states.get(token) === 'running') states.set(token, 'finished');
  };
}

// x-grpc-test-echo-initial back in the initial metadata; returns the
// trailers, with x-grpc-test-echo-trailing-bin when it was sent.
function echoMetadata(call) {
  const initial = call.metadata.get(common.ECHO_INITIAL);
  if (initial.length > 0) {
    const md = new grpc.Metadata();
    md.set(common.ECHO_INITIAL, initial[0]);
    call.sendMetadata(md);
  }
  const trailers = new grpc.Metadata();
  const trailing = call.metadata.get(common.ECHO_TRAILING);
  if (trailing.length > 0) trailers.set(common.ECHO_TRAILING, trailing[0]);
  return trailers;
}

function allZeros(body) {
  return body.every((b) => b === 0);
}

function statusError(status, trailers) {
  return {code: status.code, details: status.message, metadata: trailers};
}

function notZeros(trailers) {
  return {
    code: grpc.status.INVALID_ARGUMENT,
    details: 'a request payload is not all zeros',
    metadata: trailers,
  };
}

// Sleeps, waking early when the call is cancelled; false then.
function sleepUnlessCancelled(call, micros) {
  return new Promise((resolve) => {
    if (call.cancelled) return resolve(false);
    const timer = setTimeout(() => resolve(!call.cancelled), micros / 1000);
    call.once('cancelled', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

async function writeResponses(call, request) {
  for (const p of request.response_parameters) {
    if (p.interval_us > 0 && !(await sleepUnlessCancelled(call, p.interval_us))) {
      return false;
    }
    call.write({payload: {body: Buffer.alloc(p.size)}});
  }
  return true;
}

const service = {
  EmptyCall(call, callback) {
    const trailers = echoMetadata(call);
    const token = call.metadata.get(common.QUERY_TOKEN)[0];
    if (token) trailers.set(common.CALL_STATE, states.get(token) || 'unknown');
    callback(null, {}, trailers);
  },

  UnaryCall(call, callback) {
    const trailers = echoMetadata(call);
    const request = call.request;
    if (!allZeros(request.payload ? request.payload.body : Buffer.alloc(0))) {
      return callback(notZeros(trailers));
    }
    if (request.response_status && request.response_status.code !== 0) {
      return callback(statusError(request.response_status, trailers));
    }
    callback(null, {payload: {body: Buffer.alloc(request.response_size)}},
             trailers);
  },

  async StreamingOutputCall(call) {
    const trailers = echoMetadata(call);
    if (!(await writeResponses(call, call.request))) return;
    const status = call.request.response_status;
    if (status && status.code !== 0) {
      call.emit('error', statusError(status, trailers));
    } else {
      call.end(trailers);
    }
  },

  StreamingInputCall(call, callback) {
    const trailers = echoMetadata(call);
    const done = track(call);
    let total = 0;
    let bad = false;
    call.on('data', (request) => {
      const body = request.payload ? request.payload.body : Buffer.alloc(0);
      if (!allZeros(body)) bad = true;
      total += body.length;
    });
    call.on('end', () => {
      done();
      if (bad) return callback(notZeros(trailers));
      callback(null, {aggregated_payload_size: total}, trailers);
    });
  },

  FullDuplexCall(call) {
    const trailers = echoMetadata(call);
    const done = track(call);
    // Requests are answered one after another, in order.
    let chain = Promise.resolve(true);
    call.on('data', (request) => {
      chain = chain.then(async (going) => {
        if (!going || !(await writeResponses(call, request))) return false;
        const status = request.response_status;
        if (status && status.code !== 0) {
          call.emit('error', statusError(status, trailers));
          return false;
        }
        return true;
      });
    });
    call.on('end', () => {
      chain.then((going) => {
        done();
        if (going) call.end(trailers);
      });
    });
  },

  HalfDuplexCall(call) {
    const trailers = echoMetadata(call);
    const done = track(call);
    const requests = [];
    call.on('data', (request) => requests.push(request));
    call.on('end', async () => {
      for (const request of requests) {
        if (!(await writeResponses(call, request))) return;
      }
      done();
      call.end(trailers);
    });
  },
  // UnimplementedCall: deliberately absent.
};

function main() {
  const flags = common.parseFlags(process.argv.slice(2),
                                  {port: '0', host: '127.0.0.1', protoRoot: ''});
  const pkg = common.loadTestPackage(flags.protoRoot);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': common.MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': common.MAX_MESSAGE_BYTES,
  });
  server.addService(pkg.TestService.service, service);
  server.bindAsync(`${flags.host}:${flags.port}`,
                   grpc.ServerCredentials.createInsecure(), (err, port) => {
                     if (err) {
                       console.error(`cannot listen: ${err.message}`);
                       process.exit(1);
                     }
                     console.log(`listening on ${port}`);
                   });
}

main();
