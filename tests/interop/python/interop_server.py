"""gRPC Python (grpcio) server of the interop test service
(grpc.testing.TestService, tests/interop/proto/test.proto), h2c:

  /usr/bin/python3 interop_server.py --port 0 [--proto-dir DIR]

prints "listening on PORT" once it accepts calls. Served through gRPC's
generic method handlers, so no service code is generated. What each method
does: docs/interop.md.
"""
import argparse
import threading
import time
from concurrent import futures

import grpc

import interop_common as common

empty_pb2 = messages_pb2 = None  # set in main()
CODES = {c.value[0]: c for c in grpc.StatusCode}


class CallStates:
    """The call-state records behind x-interop-token: "running" from the
    handler's start, then "finished" (the handler returned) or "cancelled"
    (the call ended first: the client cancelled, or its deadline passed)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._states = {}

    def get(self, token):
        with self._lock:
            return self._states.get(token, "unknown")

    def track(self, context):
        """Starts tracking the call; returns a function to call when the
        handler is done."""
        token = dict(context.invocation_metadata()).get(common.TOKEN)
        if not token:
            return lambda: None
        done = []
        with self._lock:
            self._states[token] = "running"

        def on_termination():
            with self._lock:
                self._states[token] = "finished" if done else "cancelled"

        def handler_done():
            # A client's cancel (RST_STREAM) also ends the request iterator,
            # and grpcio may report that end before it marks the call
            # cancelled: give the cancel a moment to show. (Only calls with
            # a token wait; no case lets one finish normally.)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                if not context.is_active():
                    return
                time.sleep(0.005)
            done.append(True)

        # Runs when the call ends, also when a streaming handler is never
        # resumed after the client went away.
        context.add_callback(on_termination)
        return handler_done


STATES = CallStates()


def echo_metadata(context, trailing=()):
    md = dict(context.invocation_metadata())
    if common.ECHO_INITIAL in md:
        context.send_initial_metadata(
            ((common.ECHO_INITIAL, md[common.ECHO_INITIAL]),))
    out = list(trailing)
    if common.ECHO_TRAILING in md:
        out.append((common.ECHO_TRAILING, md[common.ECHO_TRAILING]))
    if out:
        context.set_trailing_metadata(tuple(out))


def maybe_abort(context, status):
    if status.code != 0:
        context.abort(CODES[status.code], status.message)


def check_zeros(context, body):
    if body.strip(b"\0"):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      "a request payload is not all zeros")


def sleep_unless_cancelled(context, micros):
    end = time.monotonic() + micros / 1e6
    while time.monotonic() < end and context.is_active():
        time.sleep(min(0.005, max(0.0, end - time.monotonic())))
    return context.is_active()


def write_responses(context, request):
    for p in request.response_parameters:
        if p.interval_us > 0 and not sleep_unless_cancelled(context,
                                                            p.interval_us):
            return
        if not p.compressed.value:
            context.disable_next_message_compression()
        yield messages_pb2.StreamingOutputCallResponse(
            payload=messages_pb2.Payload(body=bytes(p.size)))


def empty_call(request, context):
    token = dict(context.invocation_metadata()).get(common.QUERY_TOKEN)
    echo_metadata(context, ((common.CALL_STATE, STATES.get(token)),)
                  if token else ())
    return empty_pb2.Empty()


def unary_call(request, context):
    echo_metadata(context)
    if request.response_compressed.value:
        context.set_compression(grpc.Compression.Gzip)
    check_zeros(context, request.payload.body)
    maybe_abort(context, request.response_status)
    return messages_pb2.SimpleResponse(
        payload=messages_pb2.Payload(body=bytes(request.response_size)))


def streaming_output_call(request, context):
    echo_metadata(context)
    if any(p.compressed.value for p in request.response_parameters):
        context.set_compression(grpc.Compression.Gzip)
    yield from write_responses(context, request)
    maybe_abort(context, request.response_status)


def streaming_input_call(request_iterator, context):
    echo_metadata(context)
    done = STATES.track(context)
    total = 0
    for request in request_iterator:
        check_zeros(context, request.payload.body)
        total += len(request.payload.body)
    done()
    return messages_pb2.StreamingInputCallResponse(
        aggregated_payload_size=total)


def full_duplex_call(request_iterator, context):
    echo_metadata(context)
    done = STATES.track(context)
    for request in request_iterator:
        if any(p.compressed.value for p in request.response_parameters):
            context.set_compression(grpc.Compression.Gzip)
        yield from write_responses(context, request)
        maybe_abort(context, request.response_status)
    done()


def half_duplex_call(request_iterator, context):
    echo_metadata(context)
    done = STATES.track(context)
    requests = list(request_iterator)
    for request in requests:
        yield from write_responses(context, request)
    done()


def handlers():
    m = messages_pb2
    unary = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(common.SERVICE, {
        "EmptyCall": unary(
            empty_call, request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString),
        "UnaryCall": unary(
            unary_call, request_deserializer=m.SimpleRequest.FromString,
            response_serializer=m.SimpleResponse.SerializeToString),
        "StreamingOutputCall": grpc.unary_stream_rpc_method_handler(
            streaming_output_call,
            request_deserializer=m.StreamingOutputCallRequest.FromString,
            response_serializer=m.StreamingOutputCallResponse.SerializeToString),
        "StreamingInputCall": grpc.stream_unary_rpc_method_handler(
            streaming_input_call,
            request_deserializer=m.StreamingInputCallRequest.FromString,
            response_serializer=m.StreamingInputCallResponse.SerializeToString),
        "FullDuplexCall": grpc.stream_stream_rpc_method_handler(
            full_duplex_call,
            request_deserializer=m.StreamingOutputCallRequest.FromString,
            response_serializer=m.StreamingOutputCallResponse.SerializeToString),
        "HalfDuplexCall": grpc.stream_stream_rpc_method_handler(
            half_duplex_call,
            request_deserializer=m.StreamingOutputCallRequest.FromString,
            response_serializer=m.StreamingOutputCallResponse.SerializeToString),
        # UnimplementedCall: deliberately absent.
    })


def main():
    global empty_pb2, messages_pb2
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--proto-dir")
    args = parser.parse_args()
    empty_pb2, messages_pb2 = common.load_messages(args.proto_dir)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        handlers=[handlers()],
        options=[("grpc.max_receive_message_length", common.MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", common.MAX_MESSAGE_BYTES)])
    port = server.add_insecure_port("%s:%d" % (args.host, args.port))
    server.start()
    print("listening on %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
