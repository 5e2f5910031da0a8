#!/usr/bin/env python3
"""A fake Kubernetes API server for meshguard-ca's TokenReview tests.

Serves HTTPS on 127.0.0.1 (an ephemeral port, written to --port-file once
it listens) with the given certificate, and answers
POST /apis/authentication.k8s.io/v1/tokenreviews as the behaviour file says.
The file (JSON) is read again for every request, so a test changes the
answer between calls by rewriting it:

  authenticated  bool, default true
  username       default: system:serviceaccount:<ns>:<sa> from the token's
                 (unverified) kubernetes.io claims, as a real API server
                 would find them
  audiences      default: spec.audiences of the request; null: left out
  error          status.error, default "" (left out)
  omit_status    true: no "status" in the answer
  http_status    default 201 (what the API server answers a create)
  raw_body       if set, sent as is instead of a TokenReview
  padding        bytes of filler in metadata.annotations (a large answer)
  delay          seconds to wait before answering

Every request is appended to --log as one JSON line: method, path, headers
(names lowercased), body (parsed JSON, or the raw text) and body_raw (the
text as received), before any delay.
Python standard library only; run with /usr/bin/python3.
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import ssl

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def claims_of(token):
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))
    except Exception:  # pylint: disable=broad-except
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def log_message(self, fmt, *args):  # to stderr, kept by the test
        sys.stderr.write("fake-kube-apiserver: " + (fmt % args) + "\n")

    def do_GET(self):
        self.reply(404, b'{"kind":"Status","code":404}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        record = {
            "method": "POST",
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "body_raw": raw,
        }
        with self.server.log_lock:
            with open(self.server.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        try:
            with open(self.server.behaviour_path, encoding="utf-8") as f:
                behaviour = json.load(f)
        except (OSError, ValueError):
            behaviour = {}
        time.sleep(float(behaviour.get("delay", 0)))
        if self.path != REVIEW_PATH:
            self.reply(404, b'{"kind":"Status","code":404}')
            return
        if "raw_body" in behaviour:
            self.reply(int(behaviour.get("http_status", 201)),
                       behaviour["raw_body"].encode("utf-8"))
            return
        spec = body.get("spec", {}) if isinstance(body, dict) else {}
        claims = claims_of(spec.get("token", ""))
        k8s = claims.get("kubernetes.io", {})
        status = {}
        if behaviour.get("authenticated", True):
            status["authenticated"] = True
            status["user"] = {
                "username": behaviour.get(
                    "username", "system:serviceaccount:%s:%s" %
                    (k8s.get("namespace", ""),
                     k8s.get("serviceaccount", {}).get("name", ""))),
                "uid": "6a3b7d9e-0000-4000-8000-000000000001",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["x"]},
            }
            audiences = behaviour.get("audiences", spec.get("audiences"))
            if audiences is not None:
                status["audiences"] = audiences
        else:
            status["user"] = {}
        if behaviour.get("error"):
            status["error"] = behaviour["error"]
        answer = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
        }
        if behaviour.get("padding"):
            answer["metadata"]["annotations"] = {
                "padding": "x" * int(behaviour["padding"])}
        if not behaviour.get("omit_status"):
            answer["status"] = status
        self.reply(int(behaviour.get("http_status", 201)),
                   json.dumps(answer).encode("utf-8"))

    def reply(self, code, data):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up on us (TLS alert, closed early): not news.
        sys.stderr.write("fake-kube-apiserver: connection from %s ended: %s\n"
                         % (client_address, sys.exc_info()[1]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True, help="PEM certificate")
    parser.add_argument("--key", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--behaviour", required=True)
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = Server(("127.0.0.1", 0), Handler)
    # The handshake runs in the request's thread, on its first read.
    server.socket = context.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    server.log_path = args.log
    server.log_lock = threading.Lock()
    server.behaviour_path = args.behaviour
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
