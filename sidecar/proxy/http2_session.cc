#include "sidecar/proxy/http2_session.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace meshguard::sidecar::proxy {
namespace {

struct OptionDeleter {
  void operator()(nghttp2_option* o) const { nghttp2_option_del(o); }
};
struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const {
    nghttp2_session_callbacks_del(c);
  }
};

std::vector<nghttp2_nv> ToNv(const HeaderList& headers) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(headers.size());
  for (const Header& h : headers) {
    // nghttp2 copies names and values at submit time (no NO_COPY flags), so
    // `headers` need not outlive the call.
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(h.name.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(h.value.data())),
                  h.name.size(), h.value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

absl::Status NgError(const char* what, int rv) {
  return absl::InternalError(
      absl::StrCat(what, ": ", nghttp2_strerror(rv), " (", rv, ")"));
}

}  // namespace

Http2Session::Http2Session(Role role, Transport* transport,
                           SessionCallbacks* callbacks)
    : role_(role), transport_(transport), callbacks_(callbacks) {}

absl::StatusOr<std::unique_ptr<Http2Session>> Http2Session::Create(
    Role role, Transport* transport, SessionCallbacks* callbacks) {
  std::unique_ptr<Http2Session> self(
      new Http2Session(role, transport, callbacks));

  nghttp2_session_callbacks* raw_cbs = nullptr;
  if (int rv = nghttp2_session_callbacks_new(&raw_cbs); rv != 0) {
    return NgError("nghttp2_session_callbacks_new", rv);
  }
  std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cbs(raw_cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs.get(),
                                                          &OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs.get(), &OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs.get(), &OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs.get(),
                                                            &OnDataChunkRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs.get(),
                                                         &OnStreamCloseCb);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs.get(),
                                                           &OnFrameNotSend);

  nghttp2_option* raw_opt = nullptr;
  if (int rv = nghttp2_option_new(&raw_opt); rv != 0) {
    return NgError("nghttp2_option_new", rv);
  }
  std::unique_ptr<nghttp2_option, OptionDeleter> opt(raw_opt);
  // End-to-end flow control: we credit DATA back ourselves (Consume) once
  // the other side of the proxy has taken it.
  nghttp2_option_set_no_auto_window_update(opt.get(), 1);
  // Closed streams are only kept for the priority tree, which gRPC does not
  // use; keeping none saves memory per finished call.
  nghttp2_option_set_no_closed_streams(opt.get(), 1);

  nghttp2_session* raw = nullptr;
  int rv =
      role == Role::kServer
          ? nghttp2_session_server_new2(&raw, cbs.get(), self.get(), opt.get())
          : nghttp2_session_client_new2(&raw, cbs.get(), self.get(), opt.get());
  if (rv != 0) return NgError("nghttp2_session_new", rv);
  self->session_.reset(raw);

  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  };
  if (role == Role::kServer) {
    settings.push_back(
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams});
  } else {
    settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  }
  rv = nghttp2_submit_settings(raw, NGHTTP2_FLAG_NONE, settings.data(),
                               settings.size());
  if (rv != 0) return NgError("nghttp2_submit_settings", rv);
  rv = nghttp2_session_set_local_window_size(raw, NGHTTP2_FLAG_NONE, 0,
                                             kConnectionWindow);
  if (rv != 0) return NgError("nghttp2_session_set_local_window_size", rv);
  return self;
}

Http2Session::~Http2Session() {
  // The owner is going away: tell the streams, not the owner.
  destroying_ = true;
  done_ = true;
  std::vector<int32_t> ids;
  for (const auto& [id, handler] : handlers_) ids.push_back(id);
  for (int32_t id : ids) CloseStream(id, NGHTTP2_CANCEL, true);
}

StreamHandler* Http2Session::Find(int32_t stream_id) const {
  auto it = handlers_.find(stream_id);
  return it == handlers_.end() ? nullptr : it->second;
}

absl::Status Http2Session::Receive(const uint8_t* data, size_t size) {
  if (done_) return absl::FailedPreconditionError("session is done");
  ++busy_;
  ssize_t rv = nghttp2_session_mem_recv(session_.get(), data, size);
  --busy_;
  if (rv < 0) {
    absl::Status status = NgError("HTTP/2 protocol error", rv);
    Terminate(status);
    return status;
  }
  Flush();
  return absl::OkStatus();
}

void Http2Session::Flush() {
  if (done_) return;
  if (busy_ > 0) {
    flush_pending_ = true;
    return;
  }
  ++busy_;
  do {
    flush_pending_ = false;
    while (transport_->BufferedWriteBytes() < kWriteHighWatermark) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_.get(), &data);
      if (n < 0) {
        --busy_;
        Terminate(NgError("nghttp2_session_mem_send", n));
        return;
      }
      if (n == 0) break;
      transport_->Write(data, static_cast<size_t>(n));
      callbacks_->OnBytesSent(static_cast<size_t>(n));
    }
  } while (flush_pending_ &&
           transport_->BufferedWriteBytes() < kWriteHighWatermark);
  --busy_;
  // Reading more while the peer is not reading our output would only grow
  // the output buffer (PING/SETTINGS acks, RSTs): stop until it drains.
  bool should_pause = transport_->BufferedWriteBytes() >= kReadPauseBytes;
  if (should_pause != read_paused_) {
    read_paused_ = should_pause;
    transport_->SetReadEnabled(!should_pause);
  }
  CheckDone();
}

void Http2Session::OnWriteDrained() { Flush(); }

void Http2Session::CheckDone() {
  if (done_ || busy_ > 0) return;
  if (!nghttp2_session_want_read(session_.get()) &&
      !nghttp2_session_want_write(session_.get())) {
    Finish(absl::OkStatus());
  }
}

void Http2Session::Finish(absl::Status status) {
  if (done_) return;
  done_ = true;
  callbacks_->OnSessionDone(std::move(status));
}

void Http2Session::Terminate(absl::Status reason) {
  // Copy: handlers remove themselves while being told.
  std::vector<int32_t> ids;
  ids.reserve(handlers_.size());
  for (const auto& [id, handler] : handlers_) ids.push_back(id);
  for (int32_t id : ids) CloseStream(id, NGHTTP2_CANCEL, true);
  Finish(std::move(reason));
}

void Http2Session::CloseStream(int32_t stream_id, uint32_t error_code,
                               bool connection_lost) {
  auto it = handlers_.find(stream_id);
  pending_headers_.erase(stream_id);
  got_initial_headers_.erase(stream_id);
  if (it == handlers_.end()) return;
  StreamHandler* handler = it->second;
  handlers_.erase(it);
  handler->OnStreamClose(error_code, connection_lost);
  if (!destroying_) callbacks_->OnActiveStreamsChanged();
}

absl::StatusOr<int32_t> Http2Session::SubmitRequest(const HeaderList& headers,
                                                    StreamHandler* handler,
                                                    bool has_body) {
  if (done_ || goaway_received_) {
    return absl::UnavailableError("connection is going away");
  }
  std::vector<nghttp2_nv> nv = ToNv(headers);
  nghttp2_data_provider provider;
  provider.source.ptr = nullptr;
  provider.read_callback = &ReadBodyCb;
  int32_t id =
      nghttp2_submit_request(session_.get(), nullptr, nv.data(), nv.size(),
                             has_body ? &provider : nullptr, nullptr);
  if (id < 0) return NgError("nghttp2_submit_request", id);
  handlers_[id] = handler;
  got_initial_headers_[id] = false;
  callbacks_->OnActiveStreamsChanged();
  // No Flush here: the caller learns the stream id first, then flushes
  // (ReadBody may run during the flush and needs it).
  return id;
}

absl::Status Http2Session::SubmitResponse(int32_t stream_id,
                                          const HeaderList& headers,
                                          bool has_body) {
  std::vector<nghttp2_nv> nv = ToNv(headers);
  nghttp2_data_provider provider;
  provider.source.ptr = nullptr;
  provider.read_callback = &ReadBodyCb;
  int rv = nghttp2_submit_response(session_.get(), stream_id, nv.data(),
                                   nv.size(), has_body ? &provider : nullptr);
  if (rv != 0) return NgError("nghttp2_submit_response", rv);
  Flush();
  return absl::OkStatus();
}

absl::Status Http2Session::SubmitTrailers(int32_t stream_id,
                                          const HeaderList& headers) {
  std::vector<nghttp2_nv> nv = ToNv(headers);
  int rv =
      nghttp2_submit_trailer(session_.get(), stream_id, nv.data(), nv.size());
  if (rv != 0) return NgError("nghttp2_submit_trailer", rv);
  Flush();
  return absl::OkStatus();
}

void Http2Session::SubmitRst(int32_t stream_id, uint32_t error_code) {
  if (done_) return;
  nghttp2_submit_rst_stream(session_.get(), NGHTTP2_FLAG_NONE, stream_id,
                            error_code);
  Flush();
}

void Http2Session::ResumeData(int32_t stream_id) {
  if (done_) return;
  // Fails harmlessly when the stream is not deferred or already gone.
  nghttp2_session_resume_data(session_.get(), stream_id);
  Flush();
}

void Http2Session::Consume(int32_t stream_id, size_t size) {
  if (done_ || size == 0) return;
  // Credits the connection window always and the stream window if the
  // stream still exists.
  nghttp2_session_consume(session_.get(), stream_id, size);
  Flush();
}

void Http2Session::Detach(int32_t stream_id) {
  if (handlers_.erase(stream_id) > 0) callbacks_->OnActiveStreamsChanged();
  pending_headers_.erase(stream_id);
  got_initial_headers_.erase(stream_id);
}

void Http2Session::SubmitShutdownNotice() {
  if (done_ || role_ != Role::kServer) return;
  nghttp2_submit_shutdown_notice(session_.get());
  Flush();
}

void Http2Session::SubmitGoaway(uint32_t error_code) {
  if (done_ || goaway_sent_) return;
  goaway_sent_ = true;
  nghttp2_submit_goaway(session_.get(), NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_.get()),
                        error_code, nullptr, 0);
  Flush();
}

bool Http2Session::CanOpenStream() const {
  return !done_ && !goaway_received_ && !goaway_sent_ &&
         active_streams() < peer_max_concurrent_streams();
}

uint32_t Http2Session::peer_max_concurrent_streams() const {
  return nghttp2_session_get_remote_settings(
      session_.get(), NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

int32_t Http2Session::StreamReceiveWindow(int32_t stream_id) const {
  return nghttp2_session_get_stream_effective_local_window_size(session_.get(),
                                                                stream_id) -
         nghttp2_session_get_stream_effective_recv_data_length(session_.get(),
                                                               stream_id);
}

int32_t Http2Session::ConnectionSendWindow() const {
  return nghttp2_session_get_remote_window_size(session_.get());
}

int32_t Http2Session::StreamSendWindow(int32_t stream_id) const {
  return nghttp2_session_get_stream_remote_window_size(session_.get(),
                                                       stream_id);
}

// ---- nghttp2 callbacks ----

int Http2Session::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame,
                                 void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  const int32_t id = frame->hd.stream_id;
  if (self->role_ == Role::kServer &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    StreamHandler* handler = self->callbacks_->OnNewStream(id);
    if (handler == nullptr) {
      nghttp2_submit_rst_stream(self->session_.get(), NGHTTP2_FLAG_NONE, id,
                                NGHTTP2_REFUSED_STREAM);
      return 0;
    }
    self->handlers_[id] = handler;
    self->got_initial_headers_[id] = false;
    self->callbacks_->OnActiveStreamsChanged();
  }
  if (self->handlers_.contains(id)) {
    HeaderList& headers = self->pending_headers_[id];
    headers.clear();
    headers.reserve(16);  // a gRPC request carries about a dozen
  }
  return 0;
}

int Http2Session::OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                           const uint8_t* name, size_t namelen,
                           const uint8_t* value, size_t valuelen, uint8_t,
                           void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  auto it = self->pending_headers_.find(frame->hd.stream_id);
  if (it == self->pending_headers_.end()) return 0;
  it->second.push_back(
      {std::string(reinterpret_cast<const char*>(name), namelen),
       std::string(reinterpret_cast<const char*>(value), valuelen)});
  return 0;
}

int Http2Session::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                              void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  const int32_t id = frame->hd.stream_id;
  const bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      StreamHandler* handler = self->Find(id);
      auto it = self->pending_headers_.find(id);
      if (handler == nullptr || it == self->pending_headers_.end()) return 0;
      HeaderList headers = std::move(it->second);
      self->pending_headers_.erase(it);
      bool& got_initial = self->got_initial_headers_[id];
      HeadersKind kind;
      if (got_initial) {
        kind = HeadersKind::kTrailers;
      } else if (self->role_ == Role::kServer) {
        kind = HeadersKind::kRequest;
        got_initial = true;
      } else if (!headers.empty() && headers[0].name == ":status" &&
                 !headers[0].value.empty() && headers[0].value[0] == '1') {
        kind = HeadersKind::kInformational;
      } else {
        kind = HeadersKind::kResponse;
        got_initial = true;
      }
      handler->OnHeaders(std::move(headers), kind, end_stream);
      return 0;
    }
    case NGHTTP2_DATA:
      if (end_stream) {
        if (StreamHandler* handler = self->Find(id)) handler->OnEndStream();
      }
      return 0;
    case NGHTTP2_GOAWAY:
      self->goaway_received_ = true;
      self->callbacks_->OnGoaway(frame->goaway.last_stream_id,
                                 frame->goaway.error_code);
      return 0;
    case NGHTTP2_SETTINGS:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        self->callbacks_->OnRemoteSettings();
      }
      return 0;
    default:
      return 0;
  }
}

int Http2Session::OnDataChunkRecv(nghttp2_session* session, uint8_t,
                                  int32_t stream_id, const uint8_t* data,
                                  size_t len, void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  if (StreamHandler* handler = self->Find(stream_id)) {
    handler->OnData(data, len);
  } else {
    // Nobody will pass this on: credit it back now so that the connection
    // window is not leaked.
    nghttp2_session_consume(session, stream_id, len);
  }
  return 0;
}

int Http2Session::OnStreamCloseCb(nghttp2_session*, int32_t stream_id,
                                  uint32_t error_code, void* user_data) {
  static_cast<Http2Session*>(user_data)->CloseStream(stream_id, error_code,
                                                     false);
  return 0;
}

int Http2Session::OnFrameNotSend(nghttp2_session* session,
                                 const nghttp2_frame* frame, int,
                                 void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  // A request whose HEADERS could not be sent (the peer sent GOAWAY first)
  // never opened a stream, so nghttp2 reports no stream close: do it here.
  if (frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
      nghttp2_session_find_stream(session, frame->hd.stream_id) == nullptr) {
    self->CloseStream(frame->hd.stream_id, NGHTTP2_REFUSED_STREAM, false);
  }
  return 0;
}

ssize_t Http2Session::ReadBodyCb(nghttp2_session*, int32_t stream_id,
                                 uint8_t* buf, size_t length,
                                 uint32_t* data_flags, nghttp2_data_source*,
                                 void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  StreamHandler* handler = self->Find(stream_id);
  // A detached stream is being reset; park its DATA until the RST closes it.
  if (handler == nullptr) return NGHTTP2_ERR_DEFERRED;
  return handler->ReadBody(buf, length, data_flags);
}

}  // namespace meshguard::sidecar::proxy
