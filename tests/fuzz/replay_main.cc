// The CI side of a fuzz target (bazel/fuzz.bzl): runs LLVMFuzzerTestOneInput
// over every file under the directories named on the command line (the
// corpus: seeds and every crash input found so far), and over a few
// deterministic variants of each (truncations and byte flips), so that the
// parsers' error paths run in every CI build, not only when someone fuzzes.
//
// A target reports a bug by crashing or aborting (its own invariant checks,
// or a sanitizer under --config=asan); that fails this test and the last
// "replay:" line on stderr names the input. A corpus with no files fails
// too: an empty replay proves nothing, and so does one that never reaches
// a milestone named by --reaches=a,b (see FUZZ_REACHED in fuzz_check.h).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
    __attribute__((weak));

namespace {

std::vector<std::string> InputFiles(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (absl::StartsWith(argv[i], "--")) continue;
    const std::filesystem::path arg(argv[i]);
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry :
           std::filesystem::recursive_directory_iterator(arg)) {
        if (entry.is_regular_file()) files.push_back(entry.path().string());
      }
    } else {
      files.push_back(arg.string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

void Run(const std::string& name, const std::string& what,
         const std::string& bytes) {
  std::fprintf(stderr, "replay: %s (%s, %zu bytes)\n", name.c_str(),
               what.c_str(), bytes.size());
  // A copy in its own allocation, so that a read past the end is a heap
  // overflow the sanitizers see, as under libFuzzer.
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(copy.empty() ? nullptr : copy.data(), copy.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  const std::vector<std::string> files = InputFiles(argc, argv);
  if (files.empty()) {
    std::fprintf(stderr, "replay: no input files under the given paths\n");
    return 1;
  }
  size_t runs = 0;
  Run("<empty>", "empty input", "");
  ++runs;
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "replay: cannot read %s\n", file.c_str());
      return 1;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    Run(file, "as is", bytes);
    ++runs;
    if (bytes.empty()) continue;
    // Truncations: every parser must refuse a cut-off input cleanly.
    for (size_t cut : {bytes.size() / 2, bytes.size() - 1, size_t{1}}) {
      Run(file, "first " + std::to_string(cut) + " bytes",
          bytes.substr(0, cut));
      ++runs;
    }
    // Byte flips at eight positions spread over the input.
    for (size_t k = 0; k < 8; ++k) {
      std::string flipped = bytes;
      const size_t pos = (bytes.size() * (2 * k + 1)) / 16;
      flipped[pos] = static_cast<char>(flipped[pos] ^ 0x5a);
      Run(file, "byte " + std::to_string(pos) + " flipped", flipped);
      ++runs;
    }
  }
  std::printf("%zu inputs from %zu files replayed\n", runs, files.size());
  for (const auto& [name, count] : meshguard::fuzz::ReachedMilestones()) {
    std::printf("  reached %s: %zu times\n", name.c_str(), count);
  }
  int missed = 0;
  for (int i = 1; i < argc; ++i) {
    if (!absl::StartsWith(argv[i], "--reaches=")) continue;
    for (absl::string_view name : absl::StrSplit(
             absl::string_view(argv[i]).substr(10), ',', absl::SkipEmpty())) {
      if (meshguard::fuzz::ReachedMilestones().count(std::string(name)) == 0) {
        std::fprintf(stderr,
                     "replay: the corpus never reaches \"%.*s\"; regenerate "
                     "the seeds (bazel run //tests/fuzz:make_seeds)\n",
                     static_cast<int>(name.size()), name.data());
        ++missed;
      }
    }
  }
  return missed == 0 ? 0 : 1;
}
