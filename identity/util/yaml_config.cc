#include "identity/util/yaml_config.h"

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace meshguard::util {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::OneofDescriptor;

// Aliases can make a small file expand enormously ("billion laughs"); the
// JSON we build, and the nodes we visit, are capped well above any real
// config.
constexpr size_t kMaxJsonBytes = 16 << 20;
constexpr size_t kMaxNodes = 1 << 20;

std::string ErrnoString(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer to the message (maybe not into buf).
  return strerror_r(err, buf, sizeof(buf));
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

absl::string_view KindOf(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
      return "null";
    default:
      return "nothing";
  }
}

// A plain (unquoted) scalar, as opposed to '...' or "..." (tag "!").
bool IsPlain(const YAML::Node& node) { return node.Tag() == "?"; }

bool ParseYamlBool(absl::string_view s, bool* value) {
  static const char* const kTrue[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
  static const char* const kFalse[] = {"false", "False", "FALSE", "no", "No",
                                       "NO",    "off",   "Off",   "OFF"};
  for (const char* t : kTrue) {
    if (s == t) {
      *value = true;
      return true;
    }
  }
  for (const char* f : kFalse) {
    if (s == f) {
      *value = false;
      return true;
    }
  }
  return false;
}

// YAML's .inf/.nan spellings, as JSON strings protobuf accepts.
bool YamlSpecialFloat(absl::string_view s, std::string* json) {
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf" ||
      s == "+.Inf" || s == "+.INF") {
    *json = "\"Infinity\"";
    return true;
  }
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") {
    *json = "\"-Infinity\"";
    return true;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    *json = "\"NaN\"";
    return true;
  }
  return false;
}

// Decimal numbers as YAML's core schema writes them ("1", "-2.5", ".5",
// "1e3"), so that "inf", "0x10" or "1_000" are not taken for numbers.
bool LooksDecimal(absl::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s.empty() || !(absl::ascii_isdigit(s[0]) || s[0] == '.')) return false;
  bool digit = false;
  for (char c : s) {
    if (absl::ascii_isdigit(c)) {
      digit = true;
    } else if (c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-') {
      return false;
    }
  }
  return digit;
}

std::string EnumValueList(const EnumDescriptor* e) {
  std::vector<std::string> names;
  for (int i = 0; i < e->value_count(); ++i) {
    names.push_back(e->value(i)->name());
  }
  return absl::StrJoin(names, ", ");
}

const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
  if (const FieldDescriptor* f = d->FindFieldByName(key)) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

// Walks a YAML tree together with a message Descriptor, validating as it
// goes and writing the JSON that protobuf's parser will read.
class YamlToJson {
 public:
  // `locate`: keep the lines TakeLines returns (a cost per field).
  YamlToJson(absl::string_view source, bool locate)
      : source_(source), locate_(locate) {}

  // Any message, well-known types included.
  absl::Status MessageValue(const YAML::Node& node, const YAML::Mark& mark,
                            const Descriptor* d, const std::string& path,
                            std::string* out);

  // JSON path ("rules[1].action") -> where it is in the YAML, for errors
  // that only protobuf's parser finds.
  const std::map<std::string, YAML::Mark>& marks() const { return marks_; }

  // Proto path ("listeners.inbound", "routes[1]") -> 1-based line, for
  // errors found after parsing (ParseYamlToMessage's `lines`).
  FieldLines TakeLines() { return std::move(lines_); }

  absl::Status Error(const YAML::Mark& mark, const std::string& path,
                     absl::string_view what) const {
    std::string where(source_);
    if (!mark.is_null()) absl::StrAppend(&where, ":", mark.line + 1);
    if (path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field \"", path, "\": ", what));
  }

 private:
  absl::Status Field(const YAML::Node& node, const YAML::Mark& mark,
                     const FieldDescriptor* f, const std::string& path,
                     std::string* out);
  absl::Status Single(const YAML::Node& node, const YAML::Mark& mark,
                      const FieldDescriptor* f, const std::string& path,
                      std::string* out);
  absl::Status Message(const YAML::Node& node, const YAML::Mark& mark,
                       const Descriptor* d, const std::string& path,
                       std::string* out);
  absl::Status Scalar(const YAML::Node& node, const YAML::Mark& mark,
                      FieldDescriptor::Type type, const EnumDescriptor* e,
                      const std::string& path, std::string* out);
  absl::Status Generic(const YAML::Node& node, const YAML::Mark& mark,
                       const std::string& path, std::string* out);
  // Called once per node visited.
  absl::Status CheckSize(const YAML::Mark& mark, const std::string& path,
                         const std::string& out) {
    if (++nodes_ > kMaxNodes || out.size() > kMaxJsonBytes) {
      return Error(
          mark, path,
          "the document expands to more than 16 MiB or 1M nodes (aliases?)");
    }
    return absl::OkStatus();
  }

  static YAML::Mark MarkOr(const YAML::Node& node, const YAML::Mark& other) {
    YAML::Mark m = node.Mark();
    return m.is_null() ? other : m;
  }

  // Notes the line of the field or element at `path` (spelled as in the
  // YAML, maybe with JSON names) under its proto path: the proto path of
  // `parent` followed by `suffix` (".name", "[1]"). `message`: it may hold
  // fields, whose proto paths start with its own.
  void Locate(const std::string& parent, const std::string& path,
              absl::string_view suffix, const YAML::Mark& mark, bool message) {
    if (!locate_) return;
    auto it = proto_paths_.find(parent);
    std::string proto =
        absl::StrCat(it == proto_paths_.end() ? "" : it->second, suffix);
    if (!mark.is_null()) lines_[proto] = mark.line + 1;
    if (message) proto_paths_[path] = std::move(proto);
  }

  absl::string_view source_;
  const bool locate_;
  std::map<std::string, YAML::Mark> marks_;
  std::map<std::string, std::string> proto_paths_;  // YAML path -> proto's
  FieldLines lines_;
  size_t nodes_ = 0;
};

absl::Status YamlToJson::Message(const YAML::Node& node, const YAML::Mark& mark,
                                 const Descriptor* d, const std::string& path,
                                 std::string* out) {
  if (!node.IsMap()) {
    return Error(mark, path,
                 absl::StrCat("expected a mapping for ", d->full_name(),
                              ", got ", KindOf(node)));
  }
  std::set<const FieldDescriptor*> seen;
  std::map<const OneofDescriptor*, std::string> oneofs_set;
  out->push_back('{');
  bool first = true;
  for (const auto& kv : node) {
    const YAML::Node& key = kv.first;
    const YAML::Node& value = kv.second;
    YAML::Mark key_mark = MarkOr(key, mark);
    if (!key.IsScalar()) {
      return Error(
          key_mark, path,
          absl::StrCat("mapping key must be a field name, got ", KindOf(key)));
    }
    const std::string& name = key.Scalar();
    std::string child = path.empty() ? name : absl::StrCat(path, ".", name);
    absl::Status size_ok = CheckSize(key_mark, child, *out);
    if (!size_ok.ok()) return size_ok;
    marks_[child] = key_mark;
    const FieldDescriptor* f = FindField(d, name);
    if (f == nullptr) return Error(key_mark, child, "unknown field");
    Locate(path, child, absl::StrCat(path.empty() ? "" : ".", f->name()),
           key_mark, f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE);
    if (!seen.insert(f).second) {
      return Error(key_mark, child, "field set twice");
    }
    if (const OneofDescriptor* o = f->real_containing_oneof()) {
      auto [it, inserted] = oneofs_set.emplace(o, name);
      if (!inserted) {
        return Error(
            key_mark, child,
            absl::StrCat("oneof \"", o->name(), "\" is already set by field \"",
                         it->second, "\""));
      }
    }
    if (value.IsNull()) continue;  // Explicit null: leave the field unset.
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(f->name(), out);
    out->push_back(':');
    absl::Status s = Field(value, key_mark, f, child, out);
    if (!s.ok()) return s;
  }
  out->push_back('}');
  return absl::OkStatus();
}

absl::Status YamlToJson::Field(const YAML::Node& node, const YAML::Mark& mark,
                               const FieldDescriptor* f,
                               const std::string& path, std::string* out) {
  if (f->is_map()) {
    if (!node.IsMap()) {
      return Error(mark, path,
                   absl::StrCat("expected a mapping, got ", KindOf(node)));
    }
    const FieldDescriptor* key_field = f->message_type()->map_key();
    const FieldDescriptor* value_field = f->message_type()->map_value();
    out->push_back('{');
    bool first = true;
    for (const auto& kv : node) {
      YAML::Mark key_mark = MarkOr(kv.first, mark);
      if (!kv.first.IsScalar()) {
        return Error(
            key_mark, path,
            absl::StrCat("map key must be a scalar, got ", KindOf(kv.first)));
      }
      const std::string& key = kv.first.Scalar();
      std::string child = absl::StrCat(path, "[\"", key, "\"]");
      absl::Status size_ok = CheckSize(key_mark, child, *out);
      if (!size_ok.ok()) return size_ok;
      marks_[child] = key_mark;
      Locate(path, child, absl::StrCat("[\"", key, "\"]"), key_mark,
             value_field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE);
      // Validate the key by its type; JSON map keys are always strings.
      std::string scratch;
      absl::Status s = Scalar(kv.first, key_mark, key_field->type(), nullptr,
                              child, &scratch);
      if (!s.ok()) return s;
      if (kv.second.IsNull()) {
        return Error(key_mark, child, "map value must not be null");
      }
      if (!first) out->push_back(',');
      first = false;
      AppendJsonString(key, out);
      out->push_back(':');
      s = Single(kv.second, key_mark, value_field, child, out);
      if (!s.ok()) return s;
    }
    out->push_back('}');
    return absl::OkStatus();
  }
  if (f->is_repeated()) {
    if (!node.IsSequence()) {
      return Error(mark, path,
                   absl::StrCat("expected a list, got ", KindOf(node)));
    }
    out->push_back('[');
    size_t i = 0;
    for (const auto& element : node) {
      std::string child = absl::StrCat(path, "[", i, "]");
      YAML::Mark element_mark = MarkOr(element, mark);
      absl::Status size_ok = CheckSize(element_mark, child, *out);
      if (!size_ok.ok()) return size_ok;
      // Scalars are checked here; only messages can fail in the parser, or
      // hold fields that validation may find wrong. (A list of scalars can
      // be a million aliased nodes: not worth a map entry each.)
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        marks_[child] = element_mark;
        Locate(path, child, absl::StrCat("[", i, "]"), element_mark, true);
      }
      if (element.IsNull()) {
        return Error(element_mark, child, "list element must not be null");
      }
      if (i > 0) out->push_back(',');
      absl::Status s = Single(element, element_mark, f, child, out);
      if (!s.ok()) return s;
      ++i;
    }
    out->push_back(']');
    return absl::OkStatus();
  }
  return Single(node, mark, f, path, out);
}

absl::Status YamlToJson::Single(const YAML::Node& node, const YAML::Mark& mark,
                                const FieldDescriptor* f,
                                const std::string& path, std::string* out) {
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return MessageValue(node, mark, f->message_type(), path, out);
  }
  return Scalar(node, mark, f->type(), f->enum_type(), path, out);
}

absl::Status YamlToJson::MessageValue(const YAML::Node& node,
                                      const YAML::Mark& mark,
                                      const Descriptor* d,
                                      const std::string& path,
                                      std::string* out) {
  const std::string& type = d->full_name();
  if (type == "google.protobuf.Duration" ||
      type == "google.protobuf.Timestamp") {
    if (!node.IsScalar()) {
      return Error(
          mark, path,
          absl::StrCat("expected a string for ", type, ", got ", KindOf(node)));
    }
    const std::string& text = node.Scalar();
    bool ok;
    if (type == "google.protobuf.Duration") {
      google::protobuf::Duration duration;
      ok = google::protobuf::util::TimeUtil::FromString(text, &duration);
    } else {
      google::protobuf::Timestamp timestamp;
      ok = google::protobuf::util::TimeUtil::FromString(text, &timestamp);
    }
    if (!ok) {
      return Error(
          mark, path,
          absl::StrCat("invalid value \"", text, "\" for ", type,
                       type == "google.protobuf.Duration"
                           ? " (seconds with an \"s\" suffix, e.g. \"3600s\")"
                           : " (RFC 3339, e.g. \"2024-01-02T03:04:05Z\")"));
    }
    AppendJsonString(text, out);
    return absl::OkStatus();
  }
  if (type == "google.protobuf.FieldMask") {
    if (!node.IsScalar()) {
      return Error(
          mark, path,
          absl::StrCat("expected a string for ", type, ", got ", KindOf(node)));
    }
    AppendJsonString(node.Scalar(), out);
    return absl::OkStatus();
  }
  if (d->file()->name() == "google/protobuf/wrappers.proto") {
    return Single(node, mark, d->FindFieldByName("value"), path, out);
  }
  if (type == "google.protobuf.Struct" || type == "google.protobuf.Value" ||
      type == "google.protobuf.ListValue" || type == "google.protobuf.Any") {
    if (type == "google.protobuf.Struct" && !node.IsMap()) {
      return Error(mark, path,
                   absl::StrCat("expected a mapping, got ", KindOf(node)));
    }
    if (type == "google.protobuf.ListValue" && !node.IsSequence()) {
      return Error(mark, path,
                   absl::StrCat("expected a list, got ", KindOf(node)));
    }
    return Generic(node, mark, path, out);
  }
  return Message(node, mark, d, path, out);
}

absl::Status YamlToJson::Scalar(const YAML::Node& node, const YAML::Mark& mark,
                                FieldDescriptor::Type type,
                                const EnumDescriptor* e,
                                const std::string& path, std::string* out) {
  const char* type_name =
      e != nullptr ? "enum" : FieldDescriptor::TypeName(type);
  if (!node.IsScalar()) {
    return Error(
        mark, path,
        absl::StrCat("expected ",
                     e != nullptr ? absl::StrCat("enum ", e->full_name())
                                  : std::string(type_name),
                     ", got ", KindOf(node)));
  }
  const std::string& text = node.Scalar();
  auto invalid = [&]() {
    return Error(mark, path,
                 absl::StrCat("invalid value \"", text, "\" for ", type_name));
  };
  switch (type) {
    case FieldDescriptor::TYPE_STRING:
    case FieldDescriptor::TYPE_BYTES:
      AppendJsonString(text, out);
      return absl::OkStatus();
    case FieldDescriptor::TYPE_BOOL: {
      bool b;
      if (!ParseYamlBool(text, &b)) return invalid();
      out->append(b ? "true" : "false");
      return absl::OkStatus();
    }
    case FieldDescriptor::TYPE_INT32:
    case FieldDescriptor::TYPE_SINT32:
    case FieldDescriptor::TYPE_SFIXED32: {
      int32_t v;
      if (!absl::SimpleAtoi(text, &v)) return invalid();
      absl::StrAppend(out, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::TYPE_UINT32:
    case FieldDescriptor::TYPE_FIXED32: {
      uint32_t v;
      if (!absl::SimpleAtoi(text, &v)) return invalid();
      absl::StrAppend(out, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::TYPE_INT64:
    case FieldDescriptor::TYPE_SINT64:
    case FieldDescriptor::TYPE_SFIXED64: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return invalid();
      absl::StrAppend(out, "\"", v, "\"");  // Quoted: exact past 2^53.
      return absl::OkStatus();
    }
    case FieldDescriptor::TYPE_UINT64:
    case FieldDescriptor::TYPE_FIXED64: {
      uint64_t v;
      if (!absl::SimpleAtoi(text, &v)) return invalid();
      absl::StrAppend(out, "\"", v, "\"");
      return absl::OkStatus();
    }
    case FieldDescriptor::TYPE_DOUBLE:
    case FieldDescriptor::TYPE_FLOAT: {
      std::string special;
      if (YamlSpecialFloat(text, &special)) {
        out->append(special);
        return absl::OkStatus();
      }
      double v;
      if (!LooksDecimal(text) || !absl::SimpleAtod(text, &v)) return invalid();
      if (!std::isfinite(v) ||
          (type == FieldDescriptor::TYPE_FLOAT && std::fabs(v) > FLT_MAX)) {
        return Error(mark, path,
                     absl::StrCat("value \"", text, "\" is out of range for ",
                                  type_name));
      }
      absl::StrAppendFormat(out, "%.17g", v);
      return absl::OkStatus();
    }
    case FieldDescriptor::TYPE_ENUM: {
      if (const EnumValueDescriptor* v = e->FindValueByName(text)) {
        AppendJsonString(v->name(), out);
        return absl::OkStatus();
      }
      int32_t number;
      if (absl::SimpleAtoi(text, &number) &&
          e->FindValueByNumber(number) != nullptr) {
        absl::StrAppend(out, number);
        return absl::OkStatus();
      }
      return Error(
          mark, path,
          absl::StrCat("invalid value \"", text, "\" for enum ", e->full_name(),
                       " (one of ", EnumValueList(e), ")"));
    }
    default:
      return Error(mark, path,
                   absl::StrCat("unsupported field type ", type_name));
  }
}

// Struct/Value/ListValue/Any: plain YAML -> JSON by the YAML's own types.
absl::Status YamlToJson::Generic(const YAML::Node& node, const YAML::Mark& mark,
                                 const std::string& path, std::string* out) {
  YAML::Mark here = MarkOr(node, mark);
  switch (node.Type()) {
    case YAML::NodeType::Null:
      out->append("null");
      return absl::OkStatus();
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      bool b;
      std::string special;
      double d;
      if (IsPlain(node) && ParseYamlBool(text, &b)) {
        out->append(b ? "true" : "false");
      } else if (IsPlain(node) && YamlSpecialFloat(text, &special)) {
        out->append(special);
      } else if (IsPlain(node) && LooksDecimal(text) &&
                 absl::SimpleAtod(text, &d) && std::isfinite(d)) {
        absl::StrAppendFormat(out, "%.17g", d);
      } else {
        AppendJsonString(text, out);
      }
      return absl::OkStatus();
    }
    case YAML::NodeType::Sequence: {
      out->push_back('[');
      size_t i = 0;
      for (const auto& element : node) {
        std::string child = absl::StrCat(path, "[", i, "]");
        absl::Status size_ok = CheckSize(here, child, *out);
        if (!size_ok.ok()) return size_ok;
        if (i > 0) out->push_back(',');
        absl::Status s = Generic(element, here, child, out);
        if (!s.ok()) return s;
        ++i;
      }
      out->push_back(']');
      return absl::OkStatus();
    }
    case YAML::NodeType::Map: {
      out->push_back('{');
      bool first = true;
      for (const auto& kv : node) {
        YAML::Mark key_mark = MarkOr(kv.first, here);
        if (!kv.first.IsScalar()) {
          return Error(key_mark, path,
                       absl::StrCat("mapping key must be a scalar, got ",
                                    KindOf(kv.first)));
        }
        std::string child = absl::StrCat(path, ".", kv.first.Scalar());
        absl::Status size_ok = CheckSize(key_mark, child, *out);
        if (!size_ok.ok()) return size_ok;
        marks_[child] = key_mark;
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(kv.first.Scalar(), out);
        out->push_back(':');
        absl::Status s = Generic(kv.second, key_mark, child, out);
        if (!s.ok()) return s;
      }
      out->push_back('}');
      return absl::OkStatus();
    }
    default:
      return Error(here, path, "undefined YAML node");
  }
}

// Protobuf's JSON errors name a field path but no line; find the longest
// path we recorded that the message mentions and point at its line.
absl::Status FromParserError(absl::string_view source,
                             absl::string_view message,
                             const std::map<std::string, YAML::Mark>& marks) {
  const std::pair<const std::string, YAML::Mark>* best = nullptr;
  for (const auto& entry : marks) {
    if (message.find(entry.first) != absl::string_view::npos &&
        (best == nullptr || entry.first.size() > best->first.size())) {
      best = &entry;
    }
  }
  if (best != nullptr && !best->second.is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", best->second.line + 1, ": field \"",
                     best->first, "\": ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", message));
}

// Counts a stream's documents without building them, noting where each
// starts and where its first node is.
class DocumentStarts final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    starts.push_back(mark);
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&,
                       YAML::anchor_t, YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

  std::vector<YAML::Mark> starts;
  // The first node of each document that has one.
  std::vector<YAML::Mark> first_nodes;

 private:
  void Node(const YAML::Mark& mark) {
    if (first_nodes.size() < starts.size()) first_nodes.push_back(mark);
  }
};

absl::Status InvalidYaml(absl::string_view source, const YAML::Mark& mark,
                         absl::string_view what) {
  if (mark.is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": invalid YAML: ", what));
  }
  return absl::InvalidArgumentError(absl::StrCat(source, ":", mark.line + 1,
                                                 ":", mark.column + 1,
                                                 ": invalid YAML: ", what));
}

// The stream's single document. yaml-cpp 0.7's LoadAll cannot be used:
// for a token no rule matches (a stray ',') its parser reports a null
// document without consuming the token, so LoadAll loops, appending null
// documents until memory runs out (jbeder/yaml-cpp#1040; fixed upstream
// after 0.7). So the documents are first counted, at most three, and a
// document starting where the previous one started means the parser is
// stuck on an invalid token.
absl::StatusOr<YAML::Node> LoadSingleDocument(const std::string& yaml,
                                              absl::string_view source) {
  try {
    std::istringstream counting_input(yaml);
    YAML::Parser parser(counting_input);
    DocumentStarts documents;
    while (documents.starts.size() < 3 &&
           parser.HandleNextDocument(documents)) {
      const size_t n = documents.starts.size();
      if (n >= 2 &&
          documents.starts[n - 1].pos == documents.starts[n - 2].pos) {
        const YAML::Mark& stuck = documents.starts[n - 1];
        const size_t pos = static_cast<size_t>(stuck.pos);
        return InvalidYaml(
            source, stuck,
            pos < yaml.size() && absl::ascii_isgraph(yaml[pos])
                ? absl::StrCat("unexpected '", std::string(1, yaml[pos]), "'")
                : std::string("unexpected token"));
      }
    }
    if (documents.starts.size() > 1) {
      const YAML::Mark& second = documents.first_nodes.size() > 1
                                     ? documents.first_nodes[1]
                                     : documents.starts[1];
      std::string where(source);
      if (!second.is_null()) absl::StrAppend(&where, ":", second.line + 1);
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ": more than one YAML document (\"---\"); a config file holds one"));
    }
    // One document (or none): Load stops after the first.
    return YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return InvalidYaml(source, e.mark, e.msg);
  }
}

}  // namespace

absl::Status ParseYamlToMessage(absl::string_view yaml,
                                absl::string_view source_name,
                                google::protobuf::Message* out,
                                FieldLines* lines) {
  if (yaml.size() > kMaxYamlConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_name, ": ", yaml.size(), " bytes is larger than the limit of ",
        kMaxYamlConfigBytes, " bytes"));
  }
  absl::StatusOr<YAML::Node> document =
      LoadSingleDocument(std::string(yaml), source_name);
  if (!document.ok()) return document.status();

  std::unique_ptr<google::protobuf::Message> parsed(out->New());
  FieldLines found;
  if (document->IsDefined() && !document->IsNull()) {
    YamlToJson converter(source_name, lines != nullptr);
    std::string json;
    const YAML::Node& root = *document;
    try {
      YAML::Mark mark = root.Mark();
      absl::Status s =
          converter.MessageValue(root, mark, out->GetDescriptor(), "", &json);
      if (!s.ok()) return s;
    } catch (const YAML::Exception& e) {
      return converter.Error(e.mark, "", e.msg);
    }
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    auto status = google::protobuf::util::JsonStringToMessage(
        json, parsed.get(), options);
    if (!status.ok()) {
      return FromParserError(source_name, status.message().ToString(),
                             converter.marks());
    }
    found = converter.TakeLines();
  }
  out->CopyFrom(*parsed);
  if (lines != nullptr) *lines = std::move(found);
  return absl::OkStatus();
}

absl::Status LoadYamlFile(const std::string& path,
                          google::protobuf::Message* out, FieldLines* lines) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(fopen(path.c_str(), "rb"),
                                             &fclose);
  if (file == nullptr) {
    int err = errno;
    std::string message =
        absl::StrCat("cannot open config file ", path, ": ", ErrnoString(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::FailedPreconditionError(message);
  }
  std::string contents;
  char buf[64 * 1024];
  while (true) {
    size_t n = fread(buf, 1, sizeof(buf), file.get());
    contents.append(buf, n);
    if (contents.size() > kMaxYamlConfigBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": config file is larger than the limit of ",
                       kMaxYamlConfigBytes, " bytes"));
    }
    if (n < sizeof(buf)) {
      if (ferror(file.get())) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot read config file ", path, ": ", ErrnoString(errno)));
      }
      break;
    }
  }
  return ParseYamlToMessage(contents, path, out, lines);
}

}  // namespace meshguard::util
