"""cc_fuzz_test: one fuzz target, replayed in CI and fuzzed with libFuzzer.

    cc_fuzz_test(name = "csr_fuzz", srcs = ["csr_fuzz.cc"], deps = [...])

defines, from a source file with an `LLVMFuzzerTestOneInput` (and, if it
needs one, an `LLVMFuzzerInitialize`):

  NAME          a cc_test that replays every file of corpus/NAME/ (the seeds
                and every crash input ever found, kept as regression tests)
                through the target, plus deterministic truncations and byte
                flips of each (//tests/fuzz:replay_main), and fails if the
                corpus never reaches one of the FUZZ_REACHED milestones
                listed in `reaches`. Ordinary toolchain, part of
                `bazel test //...`.
  NAME_fuzzer   the libFuzzer binary (tagged manual): needs clang, so build
                it with --config=fuzz; scripts/fuzz.sh does.
"""

def cc_fuzz_test(name, srcs, deps, reaches = [], copts = [], target_compatible_with = None, **kwargs):
    corpus = native.glob(["corpus/%s/**" % name])
    if not corpus:
        fail("cc_fuzz_test %s: corpus/%s/ holds no seed inputs" % (name, name))
    native.cc_library(
        name = name + "_target",
        testonly = True,
        srcs = srcs,
        copts = copts,
        deps = deps,
        alwayslink = True,
        target_compatible_with = target_compatible_with,
    )
    native.cc_test(
        name = name,
        size = kwargs.pop("size", "small"),
        # The test runs in its runfiles tree, where the corpus keeps its
        # workspace-relative path.
        args = ["%s/corpus/%s" % (native.package_name(), name)] +
               (["--reaches=" + ",".join(reaches)] if reaches else []),
        data = corpus,
        deps = [
            ":" + name + "_target",
            "//tests/fuzz:replay_main",
        ],
        target_compatible_with = target_compatible_with,
        **kwargs
    )
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        target_compatible_with = target_compatible_with,
        deps = [":" + name + "_target"],
    )
