#include "sidecar/proxy/stream_pair.h"

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sidecar/proxy/headers.h"

namespace meshguard::sidecar::proxy {

// ---- ByteQueue ----

void ByteQueue::Append(const uint8_t* data, size_t size) {
  if (size == 0) return;
  chunks_.emplace_back(reinterpret_cast<const char*>(data), size);
  size_ += size;
}

size_t ByteQueue::Read(uint8_t* out, size_t size) {
  size_t copied = 0;
  while (copied < size && !chunks_.empty()) {
    const std::string& front = chunks_.front();
    size_t n = std::min(size - copied, front.size() - front_offset_);
    std::memcpy(out + copied, front.data() + front_offset_, n);
    copied += n;
    front_offset_ += n;
    if (front_offset_ == front.size()) {
      chunks_.pop_front();
      front_offset_ = 0;
    }
  }
  size_ -= copied;
  return copied;
}

void ByteQueue::Clear() {
  chunks_.clear();
  front_offset_ = 0;
  size_ = 0;
}

// ---- Halves: route each session's events to the pair ----

void StreamPair::DownstreamHalf::OnHeaders(HeaderList headers, HeadersKind kind,
                                           bool end_stream) {
  if (kind == HeadersKind::kRequest) {
    pair_->OnRequestHeaders(std::move(headers), end_stream);
  } else {
    pair_->OnRequestTrailers(std::move(headers));
  }
}
void StreamPair::DownstreamHalf::OnData(const uint8_t* data, size_t size) {
  pair_->OnRequestData(data, size);
}
void StreamPair::DownstreamHalf::OnEndStream() { pair_->OnRequestEnd(); }
ssize_t StreamPair::DownstreamHalf::ReadBody(uint8_t* buf, size_t size,
                                             uint32_t* flags) {
  return pair_->ReadResponseBody(buf, size, flags);
}
void StreamPair::DownstreamHalf::OnStreamClose(uint32_t error_code,
                                               bool connection_lost) {
  pair_->OnDownstreamClose(error_code, connection_lost);
}

void StreamPair::UpstreamHalf::OnHeaders(HeaderList headers, HeadersKind kind,
                                         bool end_stream) {
  pair_->OnResponseHeaders(std::move(headers), kind, end_stream);
}
void StreamPair::UpstreamHalf::OnData(const uint8_t* data, size_t size) {
  pair_->OnResponseData(data, size);
}
void StreamPair::UpstreamHalf::OnEndStream() { pair_->OnResponseEnd(); }
ssize_t StreamPair::UpstreamHalf::ReadBody(uint8_t* buf, size_t size,
                                           uint32_t* flags) {
  return pair_->ReadRequestBody(buf, size, flags);
}
void StreamPair::UpstreamHalf::OnStreamClose(uint32_t error_code,
                                             bool connection_lost) {
  pair_->OnUpstreamClose(error_code, connection_lost);
}

// ---- StreamPair ----

StreamPair::StreamPair(const DownstreamContext& context,
                       Http2Session* downstream, int32_t downstream_stream_id)
    : context_(context),
      dispatcher_(context.dispatcher),
      counters_(context.counters),
      connector_(context.connector),
      downstream_(downstream),
      downstream_id_(downstream_stream_id),
      filter_(context.filter),
      start_(absl::Now()) {
  counters_->streams_active.Add();
}

namespace {

int GrpcStatusOf(const HeaderList& headers) {
  int code = -1;
  std::string_view value = FindHeader(headers, "grpc-status");
  if (value.empty() ||
      !absl::SimpleAtoi(absl::string_view(value.data(), value.size()), &code)) {
    return -1;
  }
  return code;
}

}  // namespace

StreamPair::~StreamPair() {
  // Normally both sides are closed by now; this covers teardown paths.
  if (waiting_for_upstream_) connector_->CancelAcquire(this);
  if (upstream_ != nullptr) upstream_->Detach(upstream_id_);
  if (downstream_ != nullptr) downstream_->Detach(downstream_id_);
  counters_->streams_active.Sub();
}

void StreamPair::OnRequestHeaders(HeaderList headers, bool end_stream) {
  counters_->requests_total.Add();
  request_end_ = end_stream;
  RemoveHopByHop(headers);
  if (context_.strip_xfcc) {
    RemoveHeader(headers, "x-forwarded-client-cert");
    if (!context_.xfcc.empty()) {
      headers.push_back({"x-forwarded-client-cert", context_.xfcc});
    }
  }
  // Copies: the filter may reallocate `headers`, and OnCallEnd comes after
  // the connection's context may be gone.
  authority_ = std::string(FindHeader(headers, ":authority"));
  path_ = std::string(FindHeader(headers, ":path"));
  peer_identity_ = context_.peer_identity;
  RequestInfo info;
  info.authority = authority_;
  info.path = path_;
  info.peer_identity = peer_identity_;
  info.original_destination = context_.original_destination;
  info.filter_note = &filter_note_;

  if (context_.filter != nullptr) {
    filtered_ = true;
    absl::Status verdict = context_.filter->OnRequest(info, headers);
    if (!verdict.ok()) {
      counters_->requests_denied.Add();
      LocalReply(verdict.code(), std::string(verdict.message()));
      return;
    }
  }
  absl::StatusOr<UpstreamTarget> target = context_.router->Route(info);
  if (!target.ok()) {
    counters_->requests_no_route.Add();
    LocalReply(absl::StatusCode::kUnavailable,
               absl::StrCat("no route: ", target.status().message()));
    return;
  }
  request_headers_ = std::move(headers);
  waiting_for_upstream_ = true;
  connector_->Acquire(*target, this);
}

void StreamPair::OnUpstreamReady(Http2Session* session) {
  waiting_for_upstream_ = false;
  if (downstream_ == nullptr || answered_locally_) {
    MaybeFinish();
    return;
  }
  const bool has_body =
      !request_end_ || request_body_.size() > 0 || !request_trailers_.empty();
  absl::StatusOr<int32_t> id =
      session->SubmitRequest(request_headers_, &upstream_half_, has_body);
  if (!id.ok()) {
    counters_->requests_connect_failure.Add();
    LocalReply(absl::StatusCode::kUnavailable,
               absl::StrCat("connect failure: ", id.status().message()));
    return;
  }
  upstream_ = session;
  upstream_id_ = *id;
  request_headers_.clear();
  session->Flush();
}

void StreamPair::OnUpstreamFailure(const absl::Status& status) {
  waiting_for_upstream_ = false;
  if (absl::StartsWith(status.message(), "handshake failure")) {
    counters_->requests_handshake_failure.Add();
  } else {
    counters_->requests_connect_failure.Add();
  }
  LocalReply(absl::StatusCode::kUnavailable, std::string(status.message()));
}

void StreamPair::OnRequestTrailers(HeaderList trailers) {
  RemoveHopByHop(trailers);
  request_trailers_ = std::move(trailers);
  OnRequestEnd();
}

void StreamPair::OnRequestData(const uint8_t* data, size_t size) {
  if (discard_request_) {
    downstream_->Consume(downstream_id_, size);
    return;
  }
  request_bytes_ += size;
  // Not credited back until the upstream session takes it (ReadRequestBody):
  // the client can never have more than a window's worth buffered here.
  request_body_.Append(data, size);
  if (upstream_ != nullptr) upstream_->ResumeData(upstream_id_);
}

void StreamPair::OnRequestEnd() {
  request_end_ = true;
  if (upstream_ != nullptr) upstream_->ResumeData(upstream_id_);
}

ssize_t StreamPair::ReadRequestBody(uint8_t* buf, size_t size,
                                    uint32_t* flags) {
  size_t n = request_body_.Read(buf, size);
  if (n > 0) {
    if (downstream_ != nullptr) downstream_->Consume(downstream_id_, n);
    return static_cast<ssize_t>(n);
  }
  if (!request_end_) return NGHTTP2_ERR_DEFERRED;
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!request_trailers_.empty()) {
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    upstream_->SubmitTrailers(upstream_id_, request_trailers_).IgnoreError();
  }
  return 0;
}

void StreamPair::OnResponseHeaders(HeaderList headers, HeadersKind kind,
                                   bool end_stream) {
  if (kind == HeadersKind::kInformational || answered_locally_) return;
  RemoveHopByHop(headers);
  if (kind == HeadersKind::kTrailers || end_stream) {
    grpc_status_ = GrpcStatusOf(headers);
  }
  if (kind == HeadersKind::kTrailers) {
    response_trailers_ = std::move(headers);
    OnResponseEnd();
    return;
  }
  upstream_answered_ = true;
  response_started_ = true;
  response_end_ = end_stream;
  if (downstream_ == nullptr) return;
  // end_stream: a trailers-only response, relayed as one HEADERS frame.
  absl::Status s =
      downstream_->SubmitResponse(downstream_id_, headers, !end_stream);
  if (!s.ok()) downstream_->SubmitRst(downstream_id_, NGHTTP2_INTERNAL_ERROR);
}

void StreamPair::OnResponseData(const uint8_t* data, size_t size) {
  if (downstream_ == nullptr || answered_locally_) {
    upstream_->Consume(upstream_id_, size);
    return;
  }
  response_bytes_ += size;
  response_body_.Append(data, size);
  downstream_->ResumeData(downstream_id_);
}

void StreamPair::OnResponseEnd() {
  response_end_ = true;
  if (downstream_ != nullptr) downstream_->ResumeData(downstream_id_);
}

ssize_t StreamPair::ReadResponseBody(uint8_t* buf, size_t size,
                                     uint32_t* flags) {
  size_t n = response_body_.Read(buf, size);
  if (n > 0) {
    if (upstream_ != nullptr) upstream_->Consume(upstream_id_, n);
    return static_cast<ssize_t>(n);
  }
  if (!response_end_) return NGHTTP2_ERR_DEFERRED;
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!response_trailers_.empty()) {
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    downstream_->SubmitTrailers(downstream_id_, response_trailers_)
        .IgnoreError();
  }
  return 0;
}

void StreamPair::LocalReply(absl::StatusCode code, const std::string& message) {
  answered_locally_ = true;
  ResetUpstream(NGHTTP2_CANCEL);
  if (downstream_ == nullptr) {
    MaybeFinish();
    return;
  }
  discard_request_ = true;
  downstream_->Consume(downstream_id_, request_body_.size());
  request_body_.Clear();
  if (!response_started_ || !response_end_) {
    grpc_status_ = static_cast<int>(code);
  }
  if (!response_started_) {
    response_started_ = true;
    response_end_ = true;
    downstream_
        ->SubmitResponse(downstream_id_, GrpcTrailersOnly(code, message),
                         /*has_body=*/false)
        .IgnoreError();
  } else if (!response_end_) {
    response_trailers_ = GrpcStatusTrailers(code, message);
    OnResponseEnd();
  }
}

void StreamPair::ResetUpstream(uint32_t error_code) {
  if (waiting_for_upstream_) {
    waiting_for_upstream_ = false;
    connector_->CancelAcquire(this);
  }
  if (upstream_ == nullptr) return;
  Http2Session* upstream = upstream_;
  upstream_ = nullptr;
  // Credit what we held so the connection window is not leaked.
  upstream->Consume(upstream_id_, response_body_.size());
  response_body_.Clear();
  upstream->Detach(upstream_id_);
  upstream->SubmitRst(upstream_id_, error_code);
}

void StreamPair::OnDownstreamClose(uint32_t error_code, bool connection_lost) {
  if (downstream_ == nullptr) return;
  Http2Session* downstream = downstream_;
  downstream_ = nullptr;
  downstream->Consume(downstream_id_, request_body_.size());
  const bool clean = error_code == NGHTTP2_NO_ERROR && !connection_lost;
  if (clean) {
    if (upstream_answered_ && !answered_locally_) {
      counters_->requests_completed.Add();
    }
    // A complete response was relayed; the upstream stream is done with or
    // only waiting for the rest of a request nobody needs any more.
    if (upstream_ != nullptr && !request_end_) ResetUpstream(NGHTTP2_CANCEL);
  } else {
    if (!answered_locally_ && !response_end_) {
      counters_->requests_downstream_reset.Add();
    }
    // A client cancel (or a vanished client) cancels the server's call.
    ResetUpstream(NGHTTP2_CANCEL);
  }
  MaybeFinish();
}

void StreamPair::OnUpstreamClose(uint32_t error_code, bool connection_lost) {
  if (upstream_ == nullptr) return;
  Http2Session* upstream = upstream_;
  upstream_ = nullptr;
  // The stream is gone: credit its buffered bytes to the connection now.
  upstream->Consume(upstream_id_, response_body_.size());
  if (downstream_ == nullptr) {
    response_body_.Clear();
    MaybeFinish();
    return;
  }
  discard_request_ = true;
  downstream_->Consume(downstream_id_, request_body_.size());
  request_body_.Clear();
  if (response_end_) {
    // The whole response is here (maybe still draining to the client); a
    // reset after it changes nothing.
    MaybeFinish();
    return;
  }
  counters_->requests_upstream_reset.Add();
  if (connection_lost) {
    if (!response_started_) {
      LocalReply(absl::StatusCode::kUnavailable,
                 upstream->loss_message().empty() ? "upstream connection closed"
                                                  : upstream->loss_message());
    } else {
      downstream_->SubmitRst(downstream_id_, NGHTTP2_INTERNAL_ERROR);
    }
  } else {
    // Pass the upstream's reset code through: REFUSED_STREAM lets the
    // client retry transparently, CANCEL stays CANCEL.
    downstream_->SubmitRst(downstream_id_,
                           error_code == NGHTTP2_NO_ERROR
                               ? static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR)
                               : error_code);
  }
  MaybeFinish();
}

void StreamPair::MaybeFinish() {
  if (finished_ || downstream_ != nullptr || upstream_ != nullptr ||
      waiting_for_upstream_) {
    return;
  }
  finished_ = true;
  if (filter_ != nullptr && filtered_) {
    CallSummary call;
    call.authority = authority_;
    call.path = path_;
    call.peer_identity = peer_identity_;
    call.grpc_status = grpc_status_;
    call.local_reply = answered_locally_;
    call.duration = absl::Now() - start_;
    call.request_bytes = request_bytes_;
    call.response_bytes = response_bytes_;
    call.filter_note = filter_note_;
    filter_->OnCallEnd(call);
  }
  dispatcher_->DeferredDelete(std::unique_ptr<Deletable>(this));
}

}  // namespace meshguard::sidecar::proxy
