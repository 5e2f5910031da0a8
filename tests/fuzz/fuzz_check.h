// FUZZ_CHECK: an invariant a fuzz target asserts. Unlike assert() it is on
// in every build (CI replays corpora in -c fastbuild and -c opt alike), and
// it says which invariant broke before aborting, which libFuzzer and the
// replay test both report as a failure with the input that caused it.
//
// FUZZ_REACHED("name"): a milestone (a name without spaces: it is passed
// as a test argument) deep in the target (a certificate
// issued, a call answered). The replay test fails when a milestone listed
// in the target's `reaches` (bazel/fuzz.bzl) is never reached by its
// corpus, so that invariants guarding those paths cannot pass vacuously.
#ifndef MESHGUARD_TESTS_FUZZ_FUZZ_CHECK_H_
#define MESHGUARD_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#define FUZZ_CHECK(cond)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

namespace meshguard::fuzz {

// Milestone name -> times reached in this process.
inline std::map<std::string, size_t>& ReachedMilestones() {
  static auto* reached = new std::map<std::string, size_t>;
  return *reached;
}

}  // namespace meshguard::fuzz

#define FUZZ_REACHED(name) (++::meshguard::fuzz::ReachedMilestones()[name])

#endif  // MESHGUARD_TESTS_FUZZ_FUZZ_CHECK_H_
