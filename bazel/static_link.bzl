"""Links a binary's system libraries statically (glibc stays shared).

The sidecar runs next to every workload, so its memory is paid once per pod.
Linked against Debian's shared libraries it maps all of libcrypto, libprotobuf
and libstdc++ and the kernel faults in most of their text (14.5 MB RSS idle);
linked against their static archives with --gc-sections it carries only the
code it reaches. Envoy and linkerd2-proxy ship the same way: one static binary
over the C library.

`static_system_libs_binary` builds `binary` in a configuration where the
`//bazel:link_system_libs_statically` setting is true; @system's targets (see
system_libs.bzl) then link `lib*.a` instead of `lib*.so` and add libstdc++'s
archive. Only binaries wrapped this way change; libraries, tests and the other
binaries keep the shared libraries. A system library Debian ships without a
static archive (libjwt) fails such a link by name rather than mixing a
static and a shared copy of one library in a process.
"""

def _link_statically_impl(ctx):
    return []

bool_setting = rule(
    implementation = _link_statically_impl,
    build_setting = config.bool(flag = True),
)

_SETTING = "//bazel:link_system_libs_statically"

def _static_transition_impl(settings, attr):
    return {_SETTING: True}

_static_transition = transition(
    implementation = _static_transition_impl,
    inputs = [],
    outputs = [_SETTING],
)

def _static_system_libs_binary_impl(ctx):
    built = ctx.attr.binary[0][DefaultInfo]
    src = built.files_to_run.executable
    out = ctx.actions.declare_file(ctx.label.name)

    # A copy, not a symlink: scripts and Dockerfiles take the file from
    # bazel-bin, and it must not point into another configuration's tree.
    ctx.actions.run_shell(
        inputs = [src],
        outputs = [out],
        command = 'cp "$1" "$2" && chmod 0755 "$2"',
        arguments = [src.path, out.path],
        mnemonic = "CopyStaticBinary",
        progress_message = "Copying statically linked %s" % ctx.label,
    )
    return [DefaultInfo(
        executable = out,
        files = depset([out]),
        runfiles = ctx.runfiles(files = [out]).merge(built.default_runfiles),
    )]

static_system_libs_binary = rule(
    implementation = _static_system_libs_binary_impl,
    doc = "`binary`, built with the system libraries linked statically.",
    attrs = {
        "binary": attr.label(
            cfg = _static_transition,
            executable = True,
            mandatory = True,
        ),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
    executable = True,
)
