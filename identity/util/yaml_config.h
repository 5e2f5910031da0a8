// YAML config files mapped onto protobuf messages, the Envoy way: the YAML is
// walked together with the target message's Descriptor and turned into JSON,
// which protobuf's JSON parser then reads into the message.
//
// Walking with the Descriptor is what makes the errors useful: each one names
// the file, the 1-based line and the field path, e.g.
//   sidecar.yaml:7: field "listeners.inbnd": unknown field
//   policy.yaml:12: field "rules[1].action": invalid value "PERMIT" for enum
//   meshguard.policy.v1.Action
// and it lets YAML scalars take the type of the field they land in, so
// `port: 15001` fills a string field and `ttl: 3600s` a Duration.
//
// Rules:
//   - Unknown fields are errors. Field names are the proto names (snake_case)
//     or their JSON names (lowerCamelCase).
//   - Duration and Timestamp are strings ("3600s", "1.5s", RFC 3339).
//   - `field:` with no value (YAML null) leaves the field unset.
//   - An empty file, or one of only comments, is an empty message.
//   - One YAML document per file; a second one is an error.
//   - Inputs larger than kMaxYamlConfigBytes are refused.
//
// Pure functions, thread-safe.
#ifndef MESHGUARD_IDENTITY_UTIL_YAML_CONFIG_H_
#define MESHGUARD_IDENTITY_UTIL_YAML_CONFIG_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "identity/util/config_origins.h"

namespace meshguard::util {

inline constexpr size_t kMaxYamlConfigBytes = 1 << 20;  // 1 MiB

// Parses `yaml` into `out`. `source_name` (usually the file name) prefixes
// every error message. On error `out` is left unchanged. Errors are
// InvalidArgument. If `lines` is given, on success it holds the line of
// every field the YAML set (null ones too) and of every message in a list,
// by proto field name whichever name the YAML used ("listeners.inbound",
// "routes[0]"), for errors found later, in validation (ConfigOrigins).
absl::Status ParseYamlToMessage(absl::string_view yaml,
                                absl::string_view source_name,
                                google::protobuf::Message* out,
                                FieldLines* lines = nullptr);

// Reads the file at `path` and parses it as ParseYamlToMessage does, with
// the path as source name. A missing file is NotFound, an unreadable one
// FailedPrecondition (or PermissionDenied), both naming the path.
absl::Status LoadYamlFile(const std::string& path,
                          google::protobuf::Message* out,
                          FieldLines* lines = nullptr);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_YAML_CONFIG_H_
