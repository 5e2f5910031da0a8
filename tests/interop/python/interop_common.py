"""What the Python client and server of tests/interop share: the generated
message modules and the metadata keys of docs/interop.md.

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf). The
generated modules (empty_pb2, messages_pb2) are found in --proto-dir, or
next to this file's directory's sibling proto/ (Bazel's runfiles, or
bazel-bin/tests/interop/proto).
"""
import os
import sys


def load_messages(proto_dir=None):
    """Imports and returns (empty_pb2, messages_pb2)."""
    candidates = [proto_dir] if proto_dir else []
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(os.path.dirname(here), "proto"))
    for d in candidates:
        if d and os.path.exists(os.path.join(d, "messages_pb2.py")):
            sys.path.insert(0, d)
            break
    else:
        sys.exit("interop: messages_pb2.py not found in %s (bazel build "
                 "//tests/interop/proto:test_py_pb2, then pass --proto-dir "
                 "bazel-bin/tests/interop/proto)" % candidates)
    import empty_pb2  # pylint: disable=import-outside-toplevel
    import messages_pb2  # pylint: disable=import-outside-toplevel
    return empty_pb2, messages_pb2


SERVICE = "grpc.testing.TestService"
UNIMPLEMENTED_SERVICE = "grpc.testing.UnimplementedService"
ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
TOKEN = "x-interop-token"
QUERY_TOKEN = "x-interop-query-token"
CALL_STATE = "x-interop-call-state"
MAX_MESSAGE_BYTES = 16 << 20
