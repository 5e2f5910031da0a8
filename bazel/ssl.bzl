"""Helpers for targets that only build against OpenSSL.

Anything linking gRPC, libjwt or libevent_openssl uses Debian's OpenSSL 3;
under --config=boringssl those targets are skipped (incompatible), so that
`bazel test --config=boringssl //tests/identity/...` runs exactly the crypto
tests against BoringSSL.
"""

OPENSSL_ONLY = select({
    "//bazel:use_boringssl": ["@platforms//:incompatible"],
    "//conditions:default": [],
})
