// A fake Kubernetes API server for TokenReview tests: fake_kube_apiserver.py
// (Python standard library, HTTPS on 127.0.0.1) started as a child process,
// with a server certificate the test made, an answer the test sets per call,
// and a record of every request it got.
//
//   absl::StatusOr<FakeApiServerTls> tls = FakeApiServerTls::Make("api");
//   absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> api =
//       FakeKubeApiServer::Start(*tls);
//   // meshguard-ca: token_review { api_server: (*api)->url(),
//   //                              ca_file: <tls->ca_pem in a file> }
//   (*api)->SetBehaviour(R"({"authenticated": false, "error": "pod
//   deleted"})"); std::vector<FakeKubeApiServer::Request> seen =
//   (*api)->Requests();
//
// Thread-compatible: one test thread drives it. Start it from the test's
// main thread (Process's PDEATHSIG note).
#ifndef MESHGUARD_TESTS_INTEGRATION_TESTING_FAKE_KUBE_APISERVER_H_
#define MESHGUARD_TESTS_INTEGRATION_TESTING_FAKE_KUBE_APISERVER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/integration/testing/process.h"

namespace meshguard::testing {

// A CA and a server certificate from it (ECDSA P-256), valid from an hour
// ago for a day, with the given SANs.
struct FakeApiServerTls {
  std::string ca_pem;           // the roots a client must trust
  std::string server_cert_pem;  // the leaf
  std::string server_key_pem;

  // Default SANs: IP 127.0.0.1 (where the fake listens) only.
  static absl::StatusOr<FakeApiServerTls> Make(
      const std::string& name, std::vector<std::string> ip_sans = {"127.0.0.1"},
      std::vector<std::string> dns_sans = {});
};

class FakeKubeApiServer final {
 public:
  // One request as the fake received it.
  struct Request {
    std::string method;
    std::string path;
    std::map<std::string, std::string> headers;  // names lowercased
    std::string body;                            // exactly as received
  };

  // Writes the certificate and key to a fresh directory under
  // TestTmpDir(), starts /usr/bin/python3 fake_kube_apiserver.py and waits
  // until it listens. Its default answer: authenticated, for the identity
  // the token's claims name, with the requested audiences.
  static absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> Start(
      const FakeApiServerTls& tls);

  ~FakeKubeApiServer();
  FakeKubeApiServer(const FakeKubeApiServer&) = delete;
  FakeKubeApiServer& operator=(const FakeKubeApiServer&) = delete;

  int port() const { return port_; }
  std::string url() const;  // "https://127.0.0.1:<port>"

  // The answer to every later request (see fake_kube_apiserver.py for the
  // keys); "{}" is the default answer.
  absl::Status SetBehaviour(const std::string& json);

  // Every request so far, oldest first.
  std::vector<Request> Requests() const;

  // Stops the server: later connections to its port are refused.
  void Stop();
  Process* process() { return process_.get(); }

 private:
  FakeKubeApiServer(std::string dir, std::unique_ptr<Process> process, int port)
      : dir_(std::move(dir)), process_(std::move(process)), port_(port) {}

  const std::string dir_;
  std::unique_ptr<Process> process_;
  const int port_;
};

}  // namespace meshguard::testing

#endif  // MESHGUARD_TESTS_INTEGRATION_TESTING_FAKE_KUBE_APISERVER_H_
