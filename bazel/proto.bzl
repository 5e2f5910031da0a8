"""Protobuf + gRPC C++ code generation with the system protoc and plugin."""

def meshguard_proto_library(name, srcs, deps = [], grpc = False, visibility = None):
    """Generates C++ for `srcs` (in this package) and wraps it in a cc_library.

    Args:
      name: the cc_library's name.
      srcs: .proto files in this package.
      deps: other meshguard_proto_library targets these files import.
      grpc: also run grpc_cpp_plugin (for files that declare services); the
        messages alone are then `name`_messages.
      visibility: the cc_library's visibility.
    """
    pkg = native.package_name()
    outs_h = []
    outs_cc = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs_h.append(base + ".pb.h")
        outs_cc.append(base + ".pb.cc")
        if grpc:
            outs_h.append(base + ".grpc.pb.h")
            outs_cc.append(base + ".grpc.pb.cc")

    cmd = "protoc -I. -I/usr/include --cpp_out=$(GENDIR)"
    if grpc:
        cmd += " --grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin"
    cmd += " " + " ".join([pkg + "/" + s for s in srcs])

    native.genrule(
        name = name + "_codegen",
        srcs = srcs + [d + "_srcs" for d in deps],
        outs = outs_h + outs_cc,
        cmd = cmd,
        message = "protoc " + pkg,
    )
    native.filegroup(
        name = name + "_srcs",
        srcs = srcs + [d + "_srcs" for d in deps],
        visibility = visibility,
    )
    if not grpc:
        native.cc_library(
            name = name,
            srcs = outs_cc,
            hdrs = outs_h,
            deps = deps + ["@system//:protobuf"],
            visibility = visibility,
        )
        return

    # With services: the messages alone as `name`_messages (what a program
    # that speaks the API without gRPC's runtime links, e.g. the sidecar's
    # identity agent), and `name` adding the gRPC stubs and runtime.
    pb_h = [h for h in outs_h if not h.endswith(".grpc.pb.h")]
    pb_cc = [c for c in outs_cc if not c.endswith(".grpc.pb.cc")]
    native.cc_library(
        name = name + "_messages",
        srcs = pb_cc,
        hdrs = pb_h,
        deps = deps + ["@system//:protobuf"],
        visibility = visibility,
    )
    native.cc_library(
        name = name,
        srcs = [c for c in outs_cc if c.endswith(".grpc.pb.cc")],
        hdrs = [h for h in outs_h if h.endswith(".grpc.pb.h")],
        deps = [":" + name + "_messages", "@system//:grpc++"],
        visibility = visibility,
    )
