"""gRPC Python (grpcio) client of the interop test service: runs the cases
of docs/interop.md against one server (directly, or through a sidecar's
outbound listener with --authority naming the route) and prints one line per
case, "PASS <case> (<ms> ms)" or "FAIL <case>: <what went wrong>". Exits 0
when every case passed.

  /usr/bin/python3 interop_client.py --target 127.0.0.1:PORT [--authority NAME]
      [--cases a,b] [--proto-dir DIR]

What grpcio cannot do, and so is not checked here: whether a received
message arrived compressed (the C++ endpoints check that, and the mesh run
checks the bytes the sidecar carried).
"""
import argparse
import queue
import secrets
import sys
import time

import grpc

import interop_common as common

MIB = 1 << 20
LARGE_REQUEST = MIB + 271828
LARGE_RESPONSE = MIB + 314159
COMPRESSED = MIB
REQUEST_SIZES = [27182, 8, 1828, 45904]
RESPONSE_SIZES = [31415, 9, 2653, 58979]
ECHO_INITIAL_VALUE = "test_initial_metadata_value"
ECHO_TRAILING_VALUE = b"\xab\xab\xab"
SPECIAL_MESSAGE = ("\t\ntest with whitespace\r\nand Unicode BMP \u263a and "
                   "non-BMP \U0001f608\t\n")


class CaseFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CaseFailed(what)


def call_failed(what, err):
    return CaseFailed("%s failed: %s %r" % (what, err.code().value[0],
                                            err.details()))


class Client:
    def __init__(self, channel, deadline, m, empty):
        self.m, self.empty, self.deadline = m, empty, deadline

        def method(kind, service, name, req, resp):
            return getattr(channel, kind)(
                "/%s/%s" % (service, name),
                request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString)
        s = common.SERVICE
        self.rpc_empty = method("unary_unary", s, "EmptyCall", empty.Empty,
                                 empty.Empty)
        self.rpc_unary = method("unary_unary", s, "UnaryCall",
                                 m.SimpleRequest, m.SimpleResponse)
        self.rpc_streaming_output = method(
            "unary_stream", s, "StreamingOutputCall",
            m.StreamingOutputCallRequest, m.StreamingOutputCallResponse)
        self.rpc_streaming_input = method(
            "stream_unary", s, "StreamingInputCall",
            m.StreamingInputCallRequest, m.StreamingInputCallResponse)
        self.rpc_full_duplex = method(
            "stream_stream", s, "FullDuplexCall",
            m.StreamingOutputCallRequest, m.StreamingOutputCallResponse)
        self.rpc_half_duplex = method(
            "stream_stream", s, "HalfDuplexCall",
            m.StreamingOutputCallRequest, m.StreamingOutputCallResponse)
        self.rpc_unimplemented = method("unary_unary", s, "UnimplementedCall",
                                    empty.Empty, empty.Empty)
        self.rpc_unimplemented_service = method(
            "unary_unary", common.UNIMPLEMENTED_SERVICE, "UnimplementedCall",
            empty.Empty, empty.Empty)

    # -- helpers ------------------------------------------------------------
    def payload(self, size):
        return self.m.Payload(body=bytes(size))

    def check_payload(self, what, payload, size):
        check(len(payload.body) == size, "%s: payload of %d bytes, want %d"
              % (what, len(payload.body), size))
        check(not payload.body.strip(b"\0"), "%s: payload is not all zeros"
              % what)

    def check_responses(self, responses, sizes):
        check(len(responses) == len(sizes), "%d responses, want %d"
              % (len(responses), len(sizes)))
        for i, (r, s) in enumerate(zip(responses, sizes)):
            self.check_payload("response %d" % i, r.payload, s)

    def output_request(self, sizes, request_size=0, compressed=False):
        return self.m.StreamingOutputCallRequest(
            response_parameters=[self.m.ResponseParameters(
                size=s, compressed=self.m.BoolValue(value=compressed))
                for s in sizes],
            payload=self.payload(request_size))

    def wait_for_server_state(self, token, want):
        """Polls the server's record of the call tagged `token` until it is
        `want`, for up to 5 seconds."""
        end = time.monotonic() + 5
        state = None
        while True:
            try:
                _, call = self.rpc_empty.with_call(
                    self.empty.Empty(), timeout=self.deadline,
                    metadata=((common.QUERY_TOKEN, token),))
            except grpc.RpcError as e:
                raise call_failed("the call-state query", e)
            state = dict(call.trailing_metadata()).get(common.CALL_STATE)
            if state == want:
                return
            if time.monotonic() > end:
                raise CaseFailed('the server\'s call is "%s" 5 s later, want '
                                 '"%s"' % (state, want))
            time.sleep(0.05)

    # -- cases --------------------------------------------------------------
    def empty_unary(self):
        try:
            r = self.rpc_empty(self.empty.Empty(), timeout=self.deadline)
        except grpc.RpcError as e:
            raise call_failed("EmptyCall", e)
        check(r.ByteSize() == 0, "response is not empty")

    def unary(self, request, **kwargs):
        try:
            return self.rpc_unary(request, timeout=self.deadline, **kwargs)
        except grpc.RpcError as e:
            raise call_failed("UnaryCall", e)

    def large_unary(self):
        r = self.unary(self.m.SimpleRequest(
            response_size=LARGE_RESPONSE, payload=self.payload(LARGE_REQUEST)))
        self.check_payload("response", r.payload, LARGE_RESPONSE)

    def client_compressed_unary(self):
        r = self.unary(self.m.SimpleRequest(
            response_size=16, payload=self.payload(COMPRESSED),
            expect_compressed=self.m.BoolValue(value=True)),
            compression=grpc.Compression.Gzip)
        self.check_payload("response", r.payload, 16)

    def server_compressed_unary(self):
        r = self.unary(self.m.SimpleRequest(
            response_size=COMPRESSED, payload=self.payload(16),
            response_compressed=self.m.BoolValue(value=True)))
        self.check_payload("response", r.payload, COMPRESSED)

    def client_streaming(self, sizes=REQUEST_SIZES, compressed=False):
        requests = [self.m.StreamingInputCallRequest(
            payload=self.payload(s),
            expect_compressed=self.m.BoolValue(value=True) if compressed
            else None) for s in sizes]
        try:
            r = self.rpc_streaming_input(
                iter(requests), timeout=self.deadline,
                compression=grpc.Compression.Gzip if compressed else None)
        except grpc.RpcError as e:
            raise call_failed("StreamingInputCall", e)
        check(r.aggregated_payload_size == sum(sizes),
              "aggregated_payload_size %d, want %d"
              % (r.aggregated_payload_size, sum(sizes)))

    def client_compressed_streaming(self):
        self.client_streaming([COMPRESSED // 2] * 2, compressed=True)

    def server_streaming(self, sizes=RESPONSE_SIZES, compressed=False):
        try:
            responses = list(self.rpc_streaming_output(
                self.output_request(sizes, compressed=compressed),
                timeout=self.deadline))
        except grpc.RpcError as e:
            raise call_failed("StreamingOutputCall", e)
        self.check_responses(responses, sizes)

    def server_compressed_streaming(self):
        self.server_streaming([COMPRESSED // 2] * 2, compressed=True)

    def ping_pong(self):
        requests = queue.Queue()
        call = self.rpc_full_duplex(iter(requests.get, None),
                                timeout=self.deadline)
        try:
            for i, (req, resp) in enumerate(zip(REQUEST_SIZES,
                                                RESPONSE_SIZES)):
                requests.put(self.output_request([resp], req))
                r = next(call)
                self.check_payload("response %d" % i, r.payload, resp)
            requests.put(None)
            extra = list(call)
            check(not extra, "a response after the last request")
        except grpc.RpcError as e:
            raise call_failed("FullDuplexCall", e)
        except StopIteration:
            raise CaseFailed("the call ended early: %s" % call.code())
        finally:
            requests.put(None)
            call.cancel()

    def half_duplex(self):
        requests = [self.output_request([resp], req)
                    for req, resp in zip(REQUEST_SIZES, RESPONSE_SIZES)]
        try:
            responses = list(self.rpc_half_duplex(iter(requests),
                                              timeout=self.deadline))
        except grpc.RpcError as e:
            raise call_failed("HalfDuplexCall", e)
        self.check_responses(responses, RESPONSE_SIZES)

    def empty_stream(self):
        try:
            responses = list(self.rpc_full_duplex(iter([]), timeout=self.deadline))
        except grpc.RpcError as e:
            raise call_failed("FullDuplexCall", e)
        check(not responses, "a response to no request")

    def check_echoed(self, what, call):
        initial = dict(call.initial_metadata()).get(common.ECHO_INITIAL)
        trailing = dict(call.trailing_metadata()).get(common.ECHO_TRAILING)
        check(initial == ECHO_INITIAL_VALUE, "%s: initial metadata %s is %r"
              % (what, common.ECHO_INITIAL, initial))
        check(trailing == ECHO_TRAILING_VALUE, "%s: trailing metadata %s is "
              "%r" % (what, common.ECHO_TRAILING, trailing))

    def custom_metadata(self):
        md = ((common.ECHO_INITIAL, ECHO_INITIAL_VALUE),
              (common.ECHO_TRAILING, ECHO_TRAILING_VALUE))
        try:
            _, call = self.rpc_unary.with_call(
                self.m.SimpleRequest(response_size=314159,
                                     payload=self.payload(271828)),
                timeout=self.deadline, metadata=md)
        except grpc.RpcError as e:
            raise call_failed("UnaryCall", e)
        self.check_echoed("UnaryCall", call)
        call = self.rpc_full_duplex(iter([self.output_request([314159], 271828)]),
                                timeout=self.deadline, metadata=md)
        try:
            list(call)
        except grpc.RpcError as e:
            raise call_failed("FullDuplexCall", e)
        self.check_echoed("FullDuplexCall", call)

    def status_of(self, what, fn):
        try:
            fn()
        except grpc.RpcError as e:
            return e.code().value[0], e.details()
        raise CaseFailed("%s: succeeded" % what)

    def check_status(self, what, fn, code, message):
        got = self.status_of(what, fn)
        if got != (code, message):
            return "%s: got %d %r, want %d %r" % (what, got[0], got[1], code,
                                                   message)
        return None

    def unary_status(self, code, message):
        req = self.m.SimpleRequest(response_status=self.m.EchoStatus(
            code=code, message=message))
        return self.check_status(
            "UnaryCall with status %d" % code,
            lambda: self.rpc_unary(req, timeout=self.deadline), code, message)

    def duplex_status(self, code, message):
        req = self.m.StreamingOutputCallRequest(
            response_status=self.m.EchoStatus(code=code, message=message))
        return self.check_status(
            "FullDuplexCall with status %d" % code,
            lambda: list(self.rpc_full_duplex(iter([req]), timeout=self.deadline)),
            code, message)

    def status_code_and_message(self):
        problems = []
        for code in range(1, 17):
            message = "test status message %d" % code
            problems += [p for p in (self.unary_status(code, message),
                                     self.duplex_status(code, message)) if p]
        check(not problems, "; ".join(problems))

    def special_status_message(self):
        problem = self.unary_status(2, SPECIAL_MESSAGE)
        check(not problem, problem)

    def expect_unimplemented(self, what, fn):
        try:
            fn(self.empty.Empty(), timeout=self.deadline)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return
            raise call_failed(what + " (want UNIMPLEMENTED)", e)
        raise CaseFailed(what + " succeeded (want UNIMPLEMENTED)")

    def unimplemented_method(self):
        self.expect_unimplemented("UnimplementedCall", self.rpc_unimplemented)

    def unimplemented_service(self):
        self.expect_unimplemented("UnimplementedService",
                                  self.rpc_unimplemented_service)

    def cancel_after_begin(self):
        token = "py-" + secrets.token_hex(8)
        requests = queue.Queue()
        future = self.rpc_streaming_input.future(
            iter(requests.get, None), timeout=self.deadline,
            metadata=((common.TOKEN, token),))
        try:
            # The call has begun at the server: it holds the stream, waiting
            # for a message.
            self.wait_for_server_state(token, "running")
        finally:
            future.cancel()
            requests.put(None)
        check(future.cancelled() and future.code() == grpc.StatusCode.CANCELLED,
              "StreamingInputCall ended %s, want CANCELLED" % future.code())
        self.wait_for_server_state(token, "cancelled")

    def cancel_after_first_response(self):
        token = "py-" + secrets.token_hex(8)
        requests = queue.Queue()
        call = self.rpc_full_duplex(iter(requests.get, None), timeout=self.deadline,
                                metadata=((common.TOKEN, token),))
        try:
            requests.put(self.output_request([31415], 27182))
            next(call)
        except grpc.RpcError as e:
            raise call_failed("FullDuplexCall's first response", e)
        finally:
            call.cancel()
            requests.put(None)
        check(call.code() == grpc.StatusCode.CANCELLED,
              "FullDuplexCall ended %s, want CANCELLED" % call.code())
        self.wait_for_server_state(token, "cancelled")

    def timeout_on_sleeping_server(self):
        token = "py-" + secrets.token_hex(8)
        requests = queue.Queue()
        call = self.rpc_full_duplex(iter(requests.get, None), timeout=1.0,
                                metadata=((common.TOKEN, token),))
        requests.put(self.output_request([], 27182))
        try:
            list(call)
            raise CaseFailed("FullDuplexCall succeeded (want "
                             "DEADLINE_EXCEEDED)")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise call_failed("FullDuplexCall (want DEADLINE_EXCEEDED)", e)
        finally:
            requests.put(None)
        self.wait_for_server_state(token, "cancelled")


CASES = [
    "empty_unary", "large_unary", "client_streaming", "server_streaming",
    "ping_pong", "half_duplex", "empty_stream", "custom_metadata",
    "status_code_and_message", "special_status_message",
    "unimplemented_method", "unimplemented_service", "cancel_after_begin",
    "cancel_after_first_response", "timeout_on_sleeping_server",
    "client_compressed_unary", "server_compressed_unary",
    "client_compressed_streaming", "server_compressed_streaming",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:8080")
    parser.add_argument("--authority", default="")
    parser.add_argument("--cases", default="all")
    parser.add_argument("--deadline-ms", type=int, default=30000)
    parser.add_argument("--proto-dir")
    args = parser.parse_args()
    empty_pb2, messages_pb2 = common.load_messages(args.proto_dir)
    options = [("grpc.max_receive_message_length", common.MAX_MESSAGE_BYTES),
               ("grpc.enable_http_proxy", 0)]
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    channel = grpc.insecure_channel(args.target, options=options)
    client = Client(channel, args.deadline_ms / 1000.0, messages_pb2,
                    empty_pb2)
    wanted = CASES if args.cases == "all" else [
        c for c in args.cases.split(",") if c]
    failed = 0
    for name in wanted:
        start = time.monotonic()
        try:
            if name not in CASES:
                raise CaseFailed("no such case in the Python client")
            getattr(client, name)()
            print("PASS %s (%d ms)" % (name, (time.monotonic() - start) * 1000),
                  flush=True)
        except Exception as e:  # pylint: disable=broad-except
            failed += 1
            reason = str(e) if isinstance(e, CaseFailed) else "%s: %s" % (
                type(e).__name__, e)
            print("FAIL %s: %s" % (name, reason.replace("\n", "\\n")),
                  flush=True)
    channel.close()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
