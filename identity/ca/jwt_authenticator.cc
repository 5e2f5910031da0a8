#include "identity/ca/jwt_authenticator.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <jwt.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "identity/crypto/spiffe_id.h"

namespace meshguard::ca {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;

// A config file of keys is a few KiB.
constexpr size_t kMaxKeyFileBytes = 1 << 20;
// NumericDate values past year 9999 are nonsense (and overflow-prone).
constexpr double kMaxNumericDate = 253402300799.0;

struct JwtFree {
  void operator()(jwt_t* jwt) const { jwt_free(jwt); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

// libjwt hands out malloc'ed JSON strings.
struct MallocFree {
  void operator()(char* p) const { std::free(p); }
};
using MallocString = std::unique_ptr<char, MallocFree>;

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(
      absl::StrCat("kubernetes service-account token: ", why));
}

// Attacker-controlled text in messages: short and escaped.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 64;
  std::string out =
      absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMax)), "\"");
  if (s.size() > kMax) absl::StrAppend(&out, "...");
  return out;
}

absl::StatusOr<std::string> ReadFile(absl::string_view what,
                                     const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", what, " ", path,
                                            ": ", std::strerror(errno)));
  }
  std::string data;
  char buf[8192];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > kMaxKeyFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " ", path, " is larger than ", kMaxKeyFileBytes, " bytes"));
    }
  }
  if (in.bad()) {
    return absl::InternalError(
        absl::StrCat("cannot read ", what, " ", path, ": read error"));
  }
  return data;
}

// protobuf's JSON parser: strict (no trailing data, no duplicate names),
// and only an object parses into a Struct.
absl::Status ParseJsonObject(absl::string_view json, Struct* out) {
  const auto status =
      google::protobuf::util::JsonStringToMessage(std::string(json), out);
  if (!status.ok()) {
    return absl::InvalidArgumentError(std::string(status.message()));
  }
  return absl::OkStatus();
}

const Value* FindField(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

// A string member: nullopt when absent, an error when not a string.
absl::StatusOr<std::optional<std::string>> OptionalString(
    const Struct& s, const std::string& name) {
  const Value* v = FindField(s, name);
  if (v == nullptr) return std::optional<std::string>();
  if (v->kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", name, "\" is not a string"));
  }
  return std::optional<std::string>(v->string_value());
}

bool IsBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

absl::StatusOr<std::string> DecodeSegment(absl::string_view name,
                                          absl::string_view segment) {
  if (segment.empty()) {
    return Unauthenticated(absl::StrCat(name, " is empty"));
  }
  for (char c : segment) {
    if (!IsBase64UrlChar(c)) {
      return Unauthenticated(absl::StrCat(name, " is not unpadded base64url"));
    }
  }
  std::string out;
  if (!absl::WebSafeBase64Unescape(segment, &out)) {
    return Unauthenticated(absl::StrCat(name, " is not valid base64url"));
  }
  return out;
}

absl::StatusOr<absl::Time> NumericDate(const Struct& claims,
                                       const std::string& name) {
  const Value* v = FindField(claims, name);
  if (v == nullptr) return Unauthenticated(absl::StrCat("no \"", name, "\""));
  if (v->kind_case() != Value::kNumberValue ||
      !std::isfinite(v->number_value()) || v->number_value() < 0 ||
      v->number_value() > kMaxNumericDate) {
    return Unauthenticated(
        absl::StrCat("\"", name, "\" is not a valid NumericDate"));
  }
  return absl::UnixEpoch() + absl::Seconds(v->number_value());
}

absl::Status CheckAudience(const Struct& claims, const std::string& audience) {
  const Value* aud = FindField(claims, "aud");
  if (aud == nullptr) return Unauthenticated("no \"aud\"");
  if (aud->kind_case() == Value::kStringValue) {
    if (aud->string_value() == audience) return absl::OkStatus();
  } else if (aud->kind_case() == Value::kListValue) {
    for (const Value& v : aud->list_value().values()) {
      if (v.kind_case() == Value::kStringValue &&
          v.string_value() == audience) {
        return absl::OkStatus();
      }
    }
  } else {
    return Unauthenticated("\"aud\" is neither a string nor an array");
  }
  return Unauthenticated(
      absl::StrCat("\"aud\" does not contain ", Quote(audience)));
}

// kubernetes.io.<path...> as a non-empty string.
absl::StatusOr<std::string> KubernetesClaim(
    const Struct& claims, std::initializer_list<const char*> path) {
  std::string dotted = "kubernetes.io";
  const Value* v = FindField(claims, "kubernetes.io");
  for (const char* part : path) {
    absl::StrAppend(&dotted, ".", part);
    if (v == nullptr || v->kind_case() != Value::kStructValue) {
      v = nullptr;
      break;
    }
    v = FindField(v->struct_value(), part);
  }
  if (v == nullptr || v->kind_case() != Value::kStringValue ||
      v->string_value().empty()) {
    return Unauthenticated(absl::StrCat("missing claim \"", dotted,
                                        "\" (not a projected token?)"));
  }
  return v->string_value();
}

}  // namespace

absl::StatusOr<std::unique_ptr<JwtAuthenticator>> JwtAuthenticator::Create(
    const meshguard::config::v1::KubernetesAuth& config) {
  auto auth = absl::WrapUnique(new JwtAuthenticator());
  auth->issuer_ = config.issuer().empty()
                      ? std::string(kDefaultKubernetesIssuer)
                      : config.issuer();
  auth->audience_ = config.audience().empty()
                        ? std::string(kDefaultKubernetesAudience)
                        : config.audience();
  auth->clock_skew_ = kDefaultKubernetesClockSkew;
  if (config.has_clock_skew()) {
    const absl::Duration skew = absl::Seconds(config.clock_skew().seconds()) +
                                absl::Nanoseconds(config.clock_skew().nanos());
    if (skew < absl::ZeroDuration() || skew > kMaxKubernetesClockSkew) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubernetes.clock_skew ", absl::FormatDuration(skew),
                       " is outside [0, ",
                       absl::FormatDuration(kMaxKubernetesClockSkew), "]"));
    }
    auth->clock_skew_ = skew;
  }
  auth->max_lifetime_ = kDefaultMaxTokenLifetime;
  if (config.has_max_token_lifetime()) {
    const absl::Duration max =
        absl::Seconds(config.max_token_lifetime().seconds()) +
        absl::Nanoseconds(config.max_token_lifetime().nanos());
    if (max < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubernetes.max_token_lifetime ",
                       absl::FormatDuration(max), " must not be negative"));
    }
    auth->max_lifetime_ = max;
  }
  if (config.jwks_file().empty() && config.public_key_files().empty()) {
    return absl::InvalidArgumentError(
        "kubernetes token auth needs jwks_file or public_key_files");
  }
  if (!config.jwks_file().empty()) {
    if (absl::Status s = auth->LoadJwks(config.jwks_file()); !s.ok()) return s;
  }
  for (const std::string& path : config.public_key_files()) {
    if (absl::Status s = auth->LoadPemFile(path); !s.ok()) return s;
  }
  if (auth->keys_.empty()) {
    std::string why = "no usable RS256/ES256 key";
    if (!auth->notes_.empty()) {
      absl::StrAppend(&why, " (", absl::StrJoin(auth->notes_, "; "), ")");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "kubernetes token auth: ", why, " in ",
        config.jwks_file().empty() ? "public_key_files" : config.jwks_file()));
  }
  return auth;
}

absl::Status JwtAuthenticator::LoadJwks(const std::string& path) {
  absl::StatusOr<std::string> data = ReadFile("JWKS file", path);
  if (!data.ok()) return data.status();
  Struct jwks;
  if (absl::Status s = ParseJsonObject(*data, &jwks); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "JWKS file ", path, " is not a JSON object: ", s.message()));
  }
  const Value* keys = FindField(jwks, "keys");
  if (keys == nullptr || keys->kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError(
        absl::StrCat("JWKS file ", path, " has no \"keys\" array"));
  }
  int index = -1;
  for (const Value& entry : keys->list_value().values()) {
    ++index;
    const std::string where =
        absl::StrCat("JWKS file ", path, " keys[", index, "]");
    if (entry.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " is not a JSON object"));
    }
    const Struct& jwk = entry.struct_value();
    // Every member we read must be a string when present.
    std::optional<std::string> field[7];
    const char* const kNames[7] = {"kty", "kid", "alg", "use", "n", "e", "crv"};
    for (int i = 0; i < 7; ++i) {
      absl::StatusOr<std::optional<std::string>> v =
          OptionalString(jwk, kNames[i]);
      if (!v.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", v.status().message()));
      }
      field[i] = *std::move(v);
    }
    const std::string kty = field[0].value_or("");
    const std::string kid = field[1].value_or("");
    const std::optional<std::string>& alg = field[2];
    const std::optional<std::string>& use = field[3];
    const std::string described =
        kid.empty() ? where : absl::StrCat(where, " (kid ", Quote(kid), ")");

    if (use.has_value() && *use != "sig") {
      notes_.push_back(absl::StrCat("skipped ", described, ": use ",
                                    Quote(*use), " is not \"sig\""));
      continue;
    }
    Key key;
    key.kid = kid;
    key.label = kid.empty() ? absl::StrCat(path, "[", index, "]") : kid;
    absl::StatusOr<std::string> pem;
    if (kty == "RSA") {
      if (alg.has_value() && *alg != "RS256") {
        notes_.push_back(absl::StrCat("skipped ", described, ": RSA alg ",
                                      Quote(*alg), " is not RS256"));
        continue;
      }
      key.type = crypto::PublicKeyType::kRsa;
      pem = crypto::RsaJwkToPem(field[4].value_or(""), field[5].value_or(""));
    } else if (kty == "EC") {
      const std::string crv = field[6].value_or("");
      if (crv != "P-256" || (alg.has_value() && *alg != "ES256")) {
        notes_.push_back(absl::StrCat(
            "skipped ", described, ": EC crv ", Quote(crv), " alg ",
            Quote(alg.value_or("")), " is not P-256/ES256"));
        continue;
      }
      std::optional<std::string> x, y;
      for (const char* name : {"x", "y"}) {
        absl::StatusOr<std::optional<std::string>> v =
            OptionalString(jwk, name);
        if (!v.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": ", v.status().message()));
        }
        (name[0] == 'x' ? x : y) = *std::move(v);
      }
      key.type = crypto::PublicKeyType::kEcP256;
      pem = crypto::EcJwkToPem(crv, x.value_or(""), y.value_or(""));
    } else {
      notes_.push_back(absl::StrCat("skipped ", described, ": kty ", Quote(kty),
                                    " is not RSA or EC"));
      continue;
    }
    if (!pem.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(described, ": ", pem.status().message()));
    }
    key.pem = *std::move(pem);
    if (!kid.empty()) {
      for (const Key& other : keys_) {
        if (other.kid == kid) {
          return absl::InvalidArgumentError(
              absl::StrCat(described, ": duplicate kid"));
        }
      }
    }
    keys_.push_back(std::move(key));
  }
  return absl::OkStatus();
}

absl::Status JwtAuthenticator::LoadPemFile(const std::string& path) {
  absl::StatusOr<std::string> data = ReadFile("public key file", path);
  if (!data.ok()) return data.status();
  absl::StatusOr<std::vector<crypto::PublicKeyPem>> pems =
      crypto::ParsePublicKeysPem(*data);
  if (!pems.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot load public key file ", path, ": ", pems.status().message()));
  }
  int n = 0;
  for (crypto::PublicKeyPem& pem : *pems) {
    keys_.push_back(
        Key{"", absl::StrCat(path, "#", ++n), pem.type, std::move(pem.pem)});
  }
  return absl::OkStatus();
}

absl::StatusOr<KubernetesIdentity> JwtAuthenticator::Authenticate(
    absl::string_view token, absl::Time now) const {
  if (token.empty()) return Unauthenticated("empty token");
  if (token.size() > kMaxKubernetesTokenBytes) {
    return Unauthenticated(absl::StrCat("token is larger than ",
                                        kMaxKubernetesTokenBytes, " bytes"));
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) {
    return Unauthenticated("token is not three dot-separated parts");
  }

  // The header, read only to choose the key; libjwt re-reads it below and
  // must agree.
  absl::StatusOr<std::string> header_json = DecodeSegment("header", parts[0]);
  if (!header_json.ok()) return header_json.status();
  Struct header;
  if (absl::Status s = ParseJsonObject(*header_json, &header); !s.ok()) {
    return Unauthenticated(
        absl::StrCat("header is not a JSON object: ", s.message()));
  }
  absl::StatusOr<std::optional<std::string>> alg_field =
      OptionalString(header, "alg");
  if (!alg_field.ok() || !alg_field->has_value()) {
    return Unauthenticated("header has no string \"alg\"");
  }
  const std::string& alg = **alg_field;
  crypto::PublicKeyType key_type;
  jwt_alg_t jwt_alg;
  // Exact, case-sensitive match (libjwt itself would take "rs256", "none",
  // and HS256 with the public key PEM as the HMAC secret).
  if (alg == "RS256") {
    key_type = crypto::PublicKeyType::kRsa;
    jwt_alg = JWT_ALG_RS256;
  } else if (alg == "ES256") {
    key_type = crypto::PublicKeyType::kEcP256;
    jwt_alg = JWT_ALG_ES256;
  } else {
    return Unauthenticated(absl::StrCat(
        "alg ", Quote(alg), " is not allowed (only RS256 and ES256)"));
  }
  if (FindField(header, "crit") != nullptr) {
    return Unauthenticated("header has \"crit\" extensions we do not support");
  }
  absl::StatusOr<std::optional<std::string>> typ =
      OptionalString(header, "typ");
  if (!typ.ok() || (typ->has_value() && **typ != "JWT")) {
    return Unauthenticated("header \"typ\" is not \"JWT\"");
  }
  absl::StatusOr<std::optional<std::string>> kid_field =
      OptionalString(header, "kid");
  if (!kid_field.ok()) return Unauthenticated("header \"kid\" is not a string");
  const std::string kid = kid_field->value_or("");
  if (parts[2].empty()) return Unauthenticated("signature is empty");
  // Claims must be a JSON object our parser accepts too (in particular
  // without duplicate names, which libjwt's parser would silently merge).
  absl::StatusOr<std::string> payload_json = DecodeSegment("payload", parts[1]);
  if (!payload_json.ok()) return payload_json.status();
  {
    Struct unused;
    if (absl::Status s = ParseJsonObject(*payload_json, &unused); !s.ok()) {
      return Unauthenticated(
          absl::StrCat("payload is not a JSON object: ", s.message()));
    }
  }
  if (absl::StatusOr<std::string> sig = DecodeSegment("signature", parts[2]);
      !sig.ok()) {
    return sig.status();
  }

  // Key selection: see the header comment.
  std::vector<const Key*> candidates;
  const Key* claimed = nullptr;
  if (!kid.empty()) {
    for (const Key& key : keys_) {
      if (key.kid == kid) claimed = &key;
    }
  }
  if (claimed != nullptr) {
    if (claimed->type != key_type) {
      return Unauthenticated(
          absl::StrCat("alg ", alg, " does not match key ", Quote(kid),
                       " of type ", crypto::PublicKeyTypeName(claimed->type)));
    }
    candidates.push_back(claimed);
  } else {
    for (const Key& key : keys_) {
      if (key.kid.empty() && key.type == key_type) candidates.push_back(&key);
    }
    if (candidates.empty()) {
      return Unauthenticated(
          kid.empty() ? absl::StrCat("unknown kid: token has no kid and no ",
                                     crypto::PublicKeyTypeName(key_type),
                                     " key without a kid is configured")
                      : absl::StrCat("unknown kid ", Quote(kid)));
    }
  }

  const std::string token_str(token);  // libjwt wants a C string
  JwtPtr verified;
  const Key* verifier = nullptr;
  for (const Key* key : candidates) {
    jwt_t* raw = nullptr;
    const int rc =
        jwt_decode(&raw, token_str.c_str(),
                   reinterpret_cast<const unsigned char*>(key->pem.data()),
                   static_cast<int>(key->pem.size()));
    JwtPtr decoded(raw);
    if (rc != 0 || decoded == nullptr) continue;
    // Defence in depth against a parser differential between libjwt's JSON
    // parser and ours: it must have verified with the algorithm and kid we
    // chose the key by.
    const char* libjwt_kid = jwt_get_header(decoded.get(), "kid");
    if (jwt_get_alg(decoded.get()) != jwt_alg ||
        kid != (libjwt_kid == nullptr ? "" : libjwt_kid)) {
      return Unauthenticated("header is read differently by libjwt");
    }
    verified = std::move(decoded);
    verifier = key;
    break;
  }
  if (verified == nullptr) {
    return Unauthenticated(absl::StrCat(
        "bad signature: does not verify with ",
        claimed != nullptr
            ? absl::StrCat("key ", Quote(kid))
            : absl::StrCat(candidates.size(), " candidate ",
                           crypto::PublicKeyTypeName(key_type), " key(s)")));
  }

  MallocString grants(jwt_get_grants_json(verified.get(), nullptr));
  if (grants == nullptr) return Unauthenticated("libjwt returned no claims");
  Struct claims;
  if (absl::Status s = ParseJsonObject(grants.get(), &claims); !s.ok()) {
    return Unauthenticated(absl::StrCat("claims unreadable: ", s.message()));
  }

  absl::StatusOr<std::optional<std::string>> iss =
      OptionalString(claims, "iss");
  if (!iss.ok() || !iss->has_value()) {
    return Unauthenticated("no string \"iss\"");
  }
  if (**iss != issuer_) {
    return Unauthenticated(
        absl::StrCat("iss ", Quote(**iss), " does not match ", Quote(issuer_)));
  }
  if (absl::Status s = CheckAudience(claims, audience_); !s.ok()) return s;
  absl::StatusOr<absl::Time> exp = NumericDate(claims, "exp");
  if (!exp.ok()) return exp.status();
  if (now >= *exp + clock_skew_) {
    return Unauthenticated(
        absl::StrCat("expired at ", absl::FormatTime(*exp, absl::UTCTimeZone()),
                     " (clock skew ", absl::FormatDuration(clock_skew_), ")"));
  }
  if (max_lifetime_ > absl::ZeroDuration()) {
    absl::Time issued = now;
    if (FindField(claims, "iat") != nullptr) {
      absl::StatusOr<absl::Time> iat = NumericDate(claims, "iat");
      if (!iat.ok()) return iat.status();
      issued = *iat;
    }
    if (*exp - issued > max_lifetime_) {
      return Unauthenticated(
          absl::StrCat("lives ", absl::FormatDuration(*exp - issued), " (",
                       FindField(claims, "iat") != nullptr ? "iat" : "now",
                       " to exp ", absl::FormatTime(*exp, absl::UTCTimeZone()),
                       "), longer than kubernetes.max_token_lifetime ",
                       absl::FormatDuration(max_lifetime_)));
    }
  }
  if (FindField(claims, "nbf") != nullptr) {
    absl::StatusOr<absl::Time> nbf = NumericDate(claims, "nbf");
    if (!nbf.ok()) return nbf.status();
    if (now + clock_skew_ < *nbf) {
      return Unauthenticated(absl::StrCat(
          "not yet valid: nbf is ", absl::FormatTime(*nbf, absl::UTCTimeZone()),
          " (clock skew ", absl::FormatDuration(clock_skew_), ")"));
    }
  }

  KubernetesIdentity id;
  absl::StatusOr<std::string> ns = KubernetesClaim(claims, {"namespace"});
  if (!ns.ok()) return ns.status();
  absl::StatusOr<std::string> sa =
      KubernetesClaim(claims, {"serviceaccount", "name"});
  if (!sa.ok()) return sa.status();
  id.namespace_name = *std::move(ns);
  id.service_account = *std::move(sa);
  id.subject = absl::StrCat("system:serviceaccount:", id.namespace_name, ":",
                            id.service_account);
  absl::StatusOr<std::optional<std::string>> sub =
      OptionalString(claims, "sub");
  if (!sub.ok() || !sub->has_value() || **sub != id.subject) {
    return Unauthenticated(absl::StrCat(
        "sub ",
        sub.ok() && sub->has_value() ? Quote(**sub) : std::string("(none)"),
        " does not match the kubernetes.io claims ", Quote(id.subject)));
  }
  // The trust domain does not matter here, only that ns and sa are valid
  // SPIFFE path segments; the CA builds the real ID with its own domain.
  if (absl::StatusOr<crypto::SpiffeId> spiffe =
          crypto::SpiffeId::ForServiceAccount(crypto::kDefaultTrustDomain,
                                              id.namespace_name,
                                              id.service_account);
      !spiffe.ok()) {
    return Unauthenticated(
        absl::StrCat("namespace/service account do not form a SPIFFE ID: ",
                     spiffe.status().message()));
  }
  id.key_id = verifier->label;
  id.expires_at = *exp;
  return id;
}

}  // namespace meshguard::ca
