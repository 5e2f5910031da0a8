// Config files (identity/util/yaml_config: YAML mapped onto the config
// protos): the sidecar's and the CA's, through the same steps as at start:
// parse, defaults, validation.
//
// Input: the first byte picks the file (even: SidecarConfig, odd:
// CaConfig), the rest is its YAML. Invariants: a refused file is
// INVALID_ARGUMENT with a message naming the file; a refused parse leaves
// the message untouched; defaults are idempotent (applying them twice
// changes nothing) and never unset a field the file set.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "google/protobuf/util/message_differencer.h"
#include "identity/ca/ca_material.h"
#include "identity/util/yaml_config.h"
#include "proto/config.pb.h"
#include "sidecar/config/sidecar_config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using ::google::protobuf::util::MessageDifferencer;

template <typename Config, typename ApplyDefaults, typename Validate>
void Check(const std::string& yaml, ApplyDefaults apply, Validate validate) {
  Config config;
  config.set_trust_domain("untouched.example");
  const Config before = config;
  meshguard::util::FieldLines lines;
  absl::Status parsed =
      meshguard::util::ParseYamlToMessage(yaml, "fuzz.yaml", &config, &lines);
  if (!parsed.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(parsed));
    FUZZ_CHECK(absl::StrContains(parsed.message(), "fuzz.yaml"));
    FUZZ_CHECK(MessageDifferencer::Equals(config, before));
    return;
  }
  const Config from_file = config;
  apply(&config);
  const Config once = config;
  apply(&config);
  FUZZ_CHECK(MessageDifferencer::Equals(config, once));
  // Defaults fill unset fields only: everything the file set survives.
  MessageDifferencer partial;
  partial.set_scope(MessageDifferencer::PARTIAL);
  FUZZ_CHECK(partial.Compare(from_file, once));
  // With the file's lines, as main() validates.
  meshguard::util::ConfigOrigins origins;
  origins.SetFile("fuzz.yaml", std::move(lines));
  absl::Status valid = validate(config, origins);
  if (!valid.ok()) {
    FUZZ_CHECK(!valid.message().empty());
  } else {
    FUZZ_REACHED(Config::descriptor()->name() + "_valid");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string yaml(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    Check<meshguard::config::v1::CaConfig>(
        yaml, meshguard::ca::ApplyCaDefaults, [](const auto& c, const auto& o) {
          return meshguard::ca::ValidateCaConfig(c, o);
        });
  } else {
    Check<meshguard::config::v1::SidecarConfig>(
        yaml, meshguard::sidecar::ApplySidecarDefaults,
        [](const auto& c, const auto& o) {
          return meshguard::sidecar::ValidateSidecarConfig(c, o);
        });
  }
  return 0;
}
