#include "cli/commands.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"
#include "identity/client/ca_client.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/verifier.h"
#include "identity/util/file_util.h"

namespace meshguard::cli {
namespace {

namespace v1 = ::meshguard::ca::v1;
using ::google::protobuf::util::TimeUtil;

int Fail(absl::string_view message) {
  fprintf(stderr, "meshguardctl: %.*s\n", static_cast<int>(message.size()),
          message.data());
  return 1;
}

int Fail(const absl::Status& status) { return Fail(status.message()); }

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string FormatProtoTime(const google::protobuf::Timestamp& t) {
  return FormatUtc(absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t)));
}

absl::StatusOr<std::unique_ptr<client::CaClient>> MakeClient(
    const GlobalOptions& g) {
  if (g.ca_bundle_file.empty()) {
    return absl::InvalidArgumentError(
        "--ca-bundle is required: the PEM roots that authenticate the CA");
  }
  absl::StatusOr<std::string> bundle = util::ReadFile(g.ca_bundle_file);
  if (!bundle.ok()) return bundle.status();
  client::CaClientOptions options;
  options.address = g.ca_address;
  options.ca_bundle_pem = *bundle;
  options.server_name = g.ca_server_name;
  absl::StatusOr<std::unique_ptr<client::CaClient>> c =
      client::CaClient::Create(options);
  if (!c.ok()) {
    return absl::Status(c.status().code(), absl::StrCat(g.ca_bundle_file, ": ",
                                                        c.status().message()));
  }
  return c;
}

absl::StatusOr<std::unique_ptr<client::CaAdminClient>> MakeAdminClient(
    const GlobalOptions& g) {
  if (!g.admin_socket.empty()) {
    if (!util::FileExists(g.admin_socket)) {
      return absl::NotFoundError(absl::StrCat(
          "admin socket ", g.admin_socket,
          " does not exist (is meshguard-ca serving from that data dir?)"));
    }
    return client::CaAdminClient::ForSocket(g.admin_socket);
  }
  if (!g.cert_file.empty() && !g.key_file.empty()) {
    absl::StatusOr<std::string> bundle = util::ReadFile(g.ca_bundle_file);
    if (!bundle.ok()) return bundle.status();
    absl::StatusOr<std::string> cert = util::ReadFile(g.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = util::ReadFile(g.key_file);
    if (!key.ok()) return key.status();
    client::CaClientOptions options;
    options.address = g.ca_address;
    options.ca_bundle_pem = *bundle;
    options.server_name = g.ca_server_name;
    return client::CaAdminClient::ForMtls(options, *cert, *key);
  }
  return absl::InvalidArgumentError(
      "admin commands need --admin-socket PATH (the CA's DATA_DIR/admin.sock), "
      "or --cert and --key of an admin identity with --ca and --ca-bundle");
}

// Before anything is asked of the CA (a join token is used up by the
// request): out_dir exists or can be made, and is writable.
absl::Status PrepareOutDir(const std::string& out_dir, mode_t mode) {
  if (absl::Status s = util::MakeDirectories(out_dir, mode); !s.ok()) return s;
  if (access(out_dir.c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write into ", out_dir, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

void PrintIssued(const client::IssuedCertificate& issued,
                 const std::string& out_dir) {
  printf(
      "spiffe_id: %s\nserial: %s\nnot_before: %s\nnot_after: %s\n"
      "written: %s/{key.pem,cert.pem,bundle.pem}\n",
      issued.spiffe_id.c_str(), issued.serial.c_str(),
      FormatUtc(issued.not_before).c_str(), FormatUtc(issued.not_after).c_str(),
      out_dir.c_str());
}

}  // namespace

int CertRequest(const GlobalOptions& g, const std::string& token,
                const std::string& token_file, const std::string& join_token,
                const std::string& out_dir, absl::Duration ttl) {
  if (out_dir.empty()) return Fail("cert request: --out-dir is required");
  int credentials = !token.empty() + !token_file.empty() + !join_token.empty();
  if (credentials != 1) {
    return Fail(
        "cert request: give exactly one of --token, --token-file, "
        "--join-token");
  }
  if (absl::Status s = PrepareOutDir(out_dir, 0700); !s.ok()) return Fail(s);
  absl::StatusOr<std::unique_ptr<client::CaClient>> c = MakeClient(g);
  if (!c.ok()) return Fail(c.status());
  absl::StatusOr<client::IssuedCertificate> issued;
  if (!join_token.empty()) {
    issued = (*c)->IssueWithJoinToken(join_token, ttl);
  } else {
    std::string bearer = token;
    if (!token_file.empty()) {
      absl::StatusOr<std::string> contents = util::ReadFile(token_file, 65536);
      if (!contents.ok()) return Fail(contents.status());
      bearer = std::string(absl::StripAsciiWhitespace(*contents));
    }
    issued = (*c)->IssueWithToken(bearer, ttl);
  }
  if (!issued.ok()) return Fail(issued.status());
  if (absl::Status s = issued->WriteFiles(out_dir); !s.ok()) {
    return Fail(s);
  }
  PrintIssued(*issued, out_dir);
  return 0;
}

int CertRenew(const GlobalOptions& g, const std::string& cert_file,
              const std::string& key_file, const std::string& out_dir,
              absl::Duration ttl) {
  if (cert_file.empty() || key_file.empty() || out_dir.empty()) {
    return Fail("cert renew: --cert, --key and --out-dir are required");
  }
  absl::StatusOr<std::string> cert = util::ReadFile(cert_file);
  if (!cert.ok()) return Fail(cert.status());
  absl::StatusOr<std::string> key = util::ReadFile(key_file);
  if (!key.ok()) return Fail(key.status());
  if (absl::Status s = PrepareOutDir(out_dir, 0700); !s.ok()) return Fail(s);
  absl::StatusOr<std::unique_ptr<client::CaClient>> c = MakeClient(g);
  if (!c.ok()) return Fail(c.status());
  absl::StatusOr<client::IssuedCertificate> issued =
      (*c)->Renew(*cert, *key, ttl);
  if (!issued.ok()) return Fail(issued.status());
  if (absl::Status s = issued->WriteFiles(out_dir); !s.ok()) {
    return Fail(s);
  }
  PrintIssued(*issued, out_dir);
  return 0;
}

int CertInspect(const std::string& file) {
  if (file.empty()) return Fail("cert inspect: FILE is required");
  absl::StatusOr<std::string> pem = util::ReadFile(file);
  if (!pem.ok()) return Fail(pem.status());
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(*pem);
  if (!chain.ok())
    return Fail(absl::StrCat(file, ": ", chain.status().message()));
  for (size_t i = 0; i < chain->size(); ++i) {
    crypto::CertificateInfo info =
        crypto::DescribeCertificate((*chain)[i].get());
    if (i > 0) printf("\n");
    printf("certificate: %zu of %zu\n", i + 1, chain->size());
    std::string spiffe;
    for (const std::string& uri : info.uri_sans) {
      if (crypto::SpiffeId::Parse(uri).ok()) spiffe = uri;
    }
    printf("spiffe_id: %s\n", spiffe.empty() ? "(none)" : spiffe.c_str());
    printf("serial: %s\n", info.serial.c_str());
    printf("subject: %s\n", info.subject.c_str());
    printf("issuer: %s\n", info.issuer.c_str());
    printf("not_before: %s\n", FormatUtc(info.not_before).c_str());
    printf("not_after: %s\n", FormatUtc(info.not_after).c_str());
    printf("key: %s\n", info.key_description.c_str());
    printf("is_ca: %s\n", info.is_ca ? "true" : "false");
    if (!info.uri_sans.empty()) {
      printf("uri_sans: %s\n", absl::StrJoin(info.uri_sans, ", ").c_str());
    }
    if (!info.dns_sans.empty()) {
      printf("dns_sans: %s\n", absl::StrJoin(info.dns_sans, ", ").c_str());
    }
  }
  return 0;
}

int BundleFetch(const GlobalOptions& g, const std::string& out_dir) {
  if (out_dir.empty()) return Fail("bundle fetch: --out-dir is required");
  absl::StatusOr<std::unique_ptr<client::CaClient>> c = MakeClient(g);
  if (!c.ok()) return Fail(c.status());
  absl::StatusOr<v1::TrustBundle> bundle = (*c)->GetTrustBundle();
  if (!bundle.ok()) return Fail(bundle.status());
  std::string roots = absl::StrJoin(bundle->root_certificates_pem(), "");
  if (absl::Status s = util::MakeDirectories(out_dir, 0755); !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = util::ReplaceFiles(
          out_dir,
          {{"bundle.pem", roots, 0644}, {"crl.pem", bundle->crl_pem(), 0644}});
      !s.ok()) {
    return Fail(s);
  }
  printf(
      "trust_domain: %s\nroots: %d\nsequence_number: %llu\n"
      "written: %s/{bundle.pem,crl.pem}\n",
      bundle->trust_domain().c_str(), bundle->root_certificates_pem_size(),
      static_cast<unsigned long long>(bundle->sequence_number()),
      out_dir.c_str());
  return 0;
}

int Verify(const VerifyArgs& args) {
  // Exit 1 is "verification failed"; what stops it from being attempted
  // (flags, unreadable files) is 2, so a script can tell the two apart.
  auto unusable = [](absl::string_view message) {
    Fail(message);
    return 2;
  };
  if (args.bundle_file.empty() || args.chain_file.empty()) {
    return unusable("verify: --bundle and --chain are required");
  }
  absl::StatusOr<std::string> roots = util::ReadFile(args.bundle_file);
  if (!roots.ok()) return unusable(roots.status().message());
  absl::StatusOr<std::string> chain = util::ReadFile(args.chain_file);
  if (!chain.ok()) return unusable(chain.status().message());
  std::vector<std::string> crls;
  if (!args.crl_file.empty()) {
    absl::StatusOr<std::string> crl = util::ReadFile(args.crl_file);
    if (!crl.ok()) return unusable(crl.status().message());
    if (!crl->empty()) crls.push_back(*crl);
  }
  crypto::VerifyOptions options;
  options.at = absl::Now();
  if (!args.at.empty()) {
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, args.at, &options.at, &error)) {
      return unusable(absl::StrCat("verify: --at \"", args.at,
                                   "\" is not RFC 3339: ", error));
    }
  }
  // The bundle's trust domain: given, or the default. Verification refuses
  // SVIDs of other trust domains.
  std::string td = args.trust_domain.empty()
                       ? std::string(crypto::kDefaultTrustDomain)
                       : args.trust_domain;
  options.trust_domain = td;
  options.path_only = args.path_only;
  // The roots alone first, so that an error names the file it is in.
  absl::StatusOr<std::shared_ptr<const crypto::TrustBundle>> bundle =
      crypto::TrustBundle::Create(td, {*roots}, {});
  if (!bundle.ok()) {
    return unusable(
        absl::StrCat(args.bundle_file, ": ", bundle.status().message()));
  }
  if (!crls.empty()) {
    bundle = crypto::TrustBundle::Create(td, {*roots}, crls);
    if (!bundle.ok()) {
      return unusable(
          absl::StrCat(args.crl_file, ": ", bundle.status().message()));
    }
  }
  if (args.path_only) {
    absl::StatusOr<std::vector<crypto::X509Ptr>> certs =
        crypto::ParseCertificateChainPem(*chain);
    if (!certs.ok()) {
      printf("FAILED parse: %s\n",
             std::string(certs.status().message()).c_str());
      return 1;
    }
    std::vector<X509*> intermediates;
    for (size_t i = 1; i < certs->size(); ++i) {
      intermediates.push_back((*certs)[i].get());
    }
    absl::Status s = crypto::VerifyPath(certs->front().get(), intermediates,
                                        **bundle, options);
    if (!s.ok()) {
      printf("FAILED %s\n", std::string(s.message()).c_str());
      return 1;
    }
    printf("OK path verified (identity checks skipped)\n");
    return 0;
  }
  absl::StatusOr<crypto::SpiffeId> id =
      crypto::VerifyX509SvidPem(*chain, **bundle, options);
  if (!id.ok()) {
    printf("FAILED %s\n", std::string(id.status().message()).c_str());
    return 1;
  }
  printf("OK %s\n", id->ToString().c_str());
  return 0;
}

int TokenCreate(const GlobalOptions& g, const std::string& spiffe_id,
                absl::Duration ttl) {
  if (spiffe_id.empty()) return Fail("token create: --spiffe-id is required");
  absl::StatusOr<std::unique_ptr<client::CaAdminClient>> admin =
      MakeAdminClient(g);
  if (!admin.ok()) return Fail(admin.status());
  absl::StatusOr<v1::CreateJoinTokenResponse> response =
      (*admin)->CreateJoinToken(spiffe_id, ttl);
  if (!response.ok()) return Fail(response.status());
  printf("%s\n", response->token().c_str());
  fprintf(stderr, "join token for %s, usable once, expires %s\n",
          spiffe_id.c_str(), FormatProtoTime(response->expires_at()).c_str());
  return 0;
}

int Revoke(const GlobalOptions& g, const std::string& serial,
           const std::string& spiffe_id, const std::string& reason) {
  if (serial.empty() == spiffe_id.empty()) {
    return Fail("revoke: give exactly one of --serial and --spiffe-id");
  }
  absl::StatusOr<std::unique_ptr<client::CaAdminClient>> admin =
      MakeAdminClient(g);
  if (!admin.ok()) return Fail(admin.status());
  v1::RevokeCertificateRequest request;
  if (!serial.empty()) {
    request.set_serial(serial);
  } else {
    request.set_spiffe_id(spiffe_id);
  }
  request.set_reason(reason);
  absl::StatusOr<v1::RevokeCertificateResponse> response =
      (*admin)->Revoke(request);
  if (!response.ok()) return Fail(response.status());
  for (const std::string& s : response->revoked_serials()) {
    printf("revoked %s\n", s.c_str());
  }
  if (response->revoked_serials().empty()) printf("nothing newly revoked\n");
  printf("bundle_sequence_number: %llu\n",
         static_cast<unsigned long long>(response->bundle_sequence_number()));
  return 0;
}

int List(const GlobalOptions& g, const std::string& spiffe_id, bool live_only) {
  absl::StatusOr<std::unique_ptr<client::CaAdminClient>> admin =
      MakeAdminClient(g);
  if (!admin.ok()) return Fail(admin.status());
  v1::ListCertificatesRequest request;
  request.set_spiffe_id(spiffe_id);
  request.set_live_only(live_only);
  absl::StatusOr<v1::ListCertificatesResponse> response =
      (*admin)->List(request);
  if (!response.ok()) return Fail(response.status());
  printf("%-34s %-20s %-20s %-10s %-8s %s\n", "SERIAL", "NOT_BEFORE",
         "NOT_AFTER", "AUTH", "REVOKED", "SPIFFE_ID");
  for (const v1::CertificateRecord& r : response->certificates()) {
    printf("%-34s %-20s %-20s %-10s %-8s %s\n", r.serial().c_str(),
           FormatProtoTime(r.not_before()).c_str(),
           FormatProtoTime(r.not_after()).c_str(), r.auth_method().c_str(),
           r.has_revoked_at() ? "yes" : "no", r.spiffe_id().c_str());
  }
  return 0;
}

}  // namespace meshguard::cli
