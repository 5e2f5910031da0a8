// loadgen: a gRPC load generator for the data-plane benchmark
// (tests/bench/dataplane_bench.sh). It sends unary Echo calls
// (tests/testing/echo.proto) to --target and prints one JSON line.
//
//   loadgen --target 127.0.0.1:15001 --authority bench
//           --connections 4 --streams 32 --payload 64 --duration 10 --warmup 2
//
// Closed loop (default): --streams calls are in flight at all times, spread
// round-robin over --connections channels; each stream sends its next call
// when the previous one completes. Paced (--rate R): calls start evenly at R
// per second in all, stream s at t0 + (k * streams + s) / R; a stream whose
// previous call is still running when its slot comes sends late (counted in
// "late").
//
// Every call's status is checked: non-OK calls are counted by code (warm-up
// included), printed on stderr with the first message of each code, and make
// the exit status 1. Latency is measured from send to status, in µs, over
// the calls that complete inside the measured window.
//
// Threading: one CompletionQueue per polling thread (--threads); a stream is
// bound to one queue and has at most one operation pending, so its state is
// only touched by one thread at a time and needs no lock.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/alarm.h"
#include "grpcpp/grpcpp.h"
#include "tests/testing/echo.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:15001", "Where to connect (h2c).");
ABSL_FLAG(std::string, authority, "", ":authority to send (default: target).");
ABSL_FLAG(int, connections, 1, "Channels (TCP connections) to spread over.");
ABSL_FLAG(int, streams, 1, "Calls in flight in all (closed loop).");
ABSL_FLAG(int, payload, 64, "Request payload bytes (the server echoes it).");
ABSL_FLAG(double, duration, 10, "Measured seconds.");
ABSL_FLAG(double, warmup, 2, "Seconds of calls before measuring.");
ABSL_FLAG(double, rate, 0,
          "Paced mode: calls per second in all (0: closed loop).");
ABSL_FLAG(int, threads, 1,
          "CompletionQueue polling threads (on a small machine, more only "
          "take CPU from the proxies under test).");
ABSL_FLAG(int, timeout_ms, 10000, "Deadline per call.");
ABSL_FLAG(double, connect_timeout, 10,
          "Seconds to wait for every channel to connect.");

namespace {

using Clock = std::chrono::steady_clock;
using meshguard::testing::Echo;
using meshguard::testing::EchoRequest;
using meshguard::testing::EchoResponse;

struct ErrorCount {
  int64_t count = 0;
  std::string first_message;
};

// One stream: a chain of calls, one at a time.
struct Stream {
  enum class Phase { kCall, kPaceWait };

  Echo::Stub* stub = nullptr;
  grpc::CompletionQueue* cq = nullptr;
  int index = 0;

  // Per call.
  Phase phase = Phase::kCall;
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientAsyncResponseReader<EchoResponse>> reader;
  EchoResponse response;
  grpc::Status status;
  Clock::time_point sent;
  grpc::Alarm alarm;
  int64_t next_slot = 0;  // paced mode: the k of the next call

  // Results, read by main after the threads are joined.
  std::vector<uint32_t> latencies_us;
  int64_t completed = 0;  // every completed call, warm-up and drain included
  int64_t late = 0;
  std::map<int, ErrorCount> errors;
};

struct Run {
  EchoRequest request;
  Clock::time_point start;
  Clock::time_point measure_from;
  Clock::time_point measure_until;
  double rate = 0;
  int streams = 1;
  std::chrono::milliseconds timeout{10000};
  // Streams that still have a call or a pacing wait pending.
  mutable std::atomic<int> active{0};
};

void SendCall(const Run& run, Stream* s) {
  s->phase = Stream::Phase::kCall;
  s->context = std::make_unique<grpc::ClientContext>();
  s->context->set_deadline(std::chrono::system_clock::now() + run.timeout);
  s->response.Clear();
  s->sent = Clock::now();
  s->reader = s->stub->PrepareAsyncEcho(s->context.get(), run.request, s->cq);
  s->reader->StartCall();
  s->reader->Finish(&s->response, &s->status, s);
}

Clock::time_point SlotTime(const Run& run, const Stream& s) {
  double seconds =
      static_cast<double>(s.next_slot * run.streams + s.index) / run.rate;
  return run.start + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(seconds));
}

// Paced mode: waits for the stream's next slot, or sends at once if late.
void ScheduleNext(const Run& run, Stream* s) {
  Clock::time_point slot = SlotTime(run, *s);
  ++s->next_slot;
  Clock::time_point now = Clock::now();
  // No call starts after the window, so that every call has ended by
  // measure_until + timeout (its deadline) and the queues can be shut down.
  if (slot >= run.measure_until || now >= run.measure_until) {  // done
    run.active.fetch_sub(1);
    return;
  }
  if (slot <= now) {
    if (now - slot > std::chrono::milliseconds(1)) ++s->late;
    SendCall(run, s);
    return;
  }
  s->phase = Stream::Phase::kPaceWait;
  auto wait = slot - now;
  s->alarm.Set(s->cq,
               std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::microseconds>(wait),
               s);
}

void Poll(const Run& run, grpc::CompletionQueue* cq) {
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) {
    Stream* s = static_cast<Stream*>(tag);
    if (s->phase == Stream::Phase::kPaceWait) {
      if (Clock::now() < run.measure_until) {
        SendCall(run, s);
      } else {
        run.active.fetch_sub(1);
      }
      continue;
    }
    Clock::time_point done = Clock::now();
    ++s->completed;
    if (!s->status.ok()) {
      ErrorCount& e = s->errors[static_cast<int>(s->status.error_code())];
      if (e.count++ == 0) e.first_message = s->status.error_message();
    } else if (s->response.payload().size() != run.request.payload().size()) {
      ErrorCount& e = s->errors[-1];
      if (e.count++ == 0) {
        e.first_message =
            absl::StrCat("echoed ", s->response.payload().size(),
                         " bytes, sent ", run.request.payload().size());
      }
    } else if (done >= run.measure_from && done < run.measure_until) {
      s->latencies_us.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(done - s->sent)
              .count()));
    }
    if (run.rate > 0) {
      ScheduleNext(run, s);
    } else if (done < run.measure_until) {
      SendCall(run, s);
    } else {
      run.active.fetch_sub(1);
    }
  }
}

uint32_t Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i =
      static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "loadgen --target HOST:PORT [--authority A] [--connections C] "
      "[--streams S] [--payload BYTES] [--duration S] [--warmup S] "
      "[--rate CALLS_PER_SEC]");
  absl::ParseCommandLine(argc, argv);
  const int connections = std::max(1, absl::GetFlag(FLAGS_connections));
  const int streams = std::max(1, absl::GetFlag(FLAGS_streams));
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = 1;

  // Distinct channel arguments and a local subchannel pool per channel, so
  // that C channels really are C TCP connections.
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<Echo::Stub>> stubs;
  for (int i = 0; i < connections; ++i) {
    grpc::ChannelArguments args;
    if (!absl::GetFlag(FLAGS_authority).empty()) {
      args.SetString(GRPC_ARG_DEFAULT_AUTHORITY,
                     absl::GetFlag(FLAGS_authority));
    }
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("meshguard.loadgen.channel", i);
    args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, -1);
    channels.push_back(grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials(), args));
    stubs.push_back(Echo::NewStub(channels.back()));
  }
  auto connect_deadline = std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(
                              absl::GetFlag(FLAGS_connect_timeout) * 1000));
  for (int i = 0; i < connections; ++i) {
    if (!channels[i]->WaitForConnected(connect_deadline)) {
      fprintf(stderr, "loadgen: channel %d to %s did not connect\n", i,
              absl::GetFlag(FLAGS_target).c_str());
      return 2;
    }
  }

  Run run;
  run.request.set_payload(std::string(absl::GetFlag(FLAGS_payload), 'x'));
  run.rate = absl::GetFlag(FLAGS_rate);
  run.streams = streams;
  run.timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  auto seconds = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(s));
  };
  run.start = Clock::now();
  run.measure_from = run.start + seconds(absl::GetFlag(FLAGS_warmup));
  run.measure_until = run.measure_from + seconds(absl::GetFlag(FLAGS_duration));

  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs;
  for (int t = 0; t < threads; ++t) {
    cqs.push_back(std::make_unique<grpc::CompletionQueue>());
  }
  std::vector<std::unique_ptr<Stream>> all(streams);
  for (int i = 0; i < streams; ++i) {
    all[i] = std::make_unique<Stream>();
    all[i]->index = i;
    all[i]->stub = stubs[i % connections].get();
    all[i]->cq = cqs[i % threads].get();
  }
  run.active.store(streams);
  for (auto& s : all) {
    if (run.rate > 0) {
      ScheduleNext(run, s.get());
    } else {
      SendCall(run, s.get());
    }
  }
  std::vector<std::thread> pollers;
  for (int t = 0; t < threads; ++t) {
    pollers.emplace_back(Poll, std::cref(run), cqs[t].get());
  }
  // Every stream stops on its own once the window is over (its last call
  // ends by its deadline at the latest); then the queues are shut down.
  std::this_thread::sleep_until(run.measure_until);
  while (run.active.load() > 0 &&
         Clock::now() < run.measure_until + run.timeout + seconds(1)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (run.active.load() > 0) {
    // Cannot happen while every call has a deadline; never shut a queue down
    // under a pending operation.
    fprintf(stderr, "loadgen: %d streams still busy after their deadline\n",
            run.active.load());
    fflush(stderr);
    std::_Exit(3);
  }
  for (auto& cq : cqs) cq->Shutdown();
  for (auto& t : pollers) t.join();
  const double wall =
      std::chrono::duration<double>(Clock::now() - run.start).count();

  std::vector<uint32_t> latencies;
  int64_t completed = 0, late = 0, errors = 0;
  std::map<int, ErrorCount> by_code;
  for (auto& s : all) {
    latencies.insert(latencies.end(), s->latencies_us.begin(),
                     s->latencies_us.end());
    completed += s->completed;
    late += s->late;
    for (auto& [code, e] : s->errors) {
      errors += e.count;
      ErrorCount& total = by_code[code];
      if (total.count == 0) total.first_message = e.first_message;
      total.count += e.count;
    }
  }
  std::sort(latencies.begin(), latencies.end());
  double sum = 0;
  for (uint32_t l : latencies) sum += l;
  const double duration = absl::GetFlag(FLAGS_duration);
  std::vector<std::string> codes;
  for (auto& [code, e] : by_code) {
    codes.push_back(absl::StrCat("\"", code, "\":", e.count));
    fprintf(stderr, "loadgen: %" PRId64 " calls failed with code %d: %s\n",
            e.count, code, e.first_message.c_str());
  }
  printf(
      "{\"rps\":%.1f,\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,"
      "\"mean_us\":%.1f,\"max_us\":%u,\"calls\":%zu,\"total_calls\":%" PRId64
      ",\"errors\":%" PRId64 ",\"errors_by_code\":{%s},\"late\":%" PRId64
      ",\"connections\":%d,\"streams\":%d,\"payload\":%d,\"rate\":%.1f,"
      "\"duration_s\":%.3f,\"wall_s\":%.3f}\n",
      static_cast<double>(latencies.size()) / duration,
      Percentile(latencies, 0.50), Percentile(latencies, 0.90),
      Percentile(latencies, 0.99),
      latencies.empty() ? 0.0 : sum / static_cast<double>(latencies.size()),
      latencies.empty() ? 0u : latencies.back(), latencies.size(), completed,
      errors, absl::StrJoin(codes, ",").c_str(), late, connections, streams,
      absl::GetFlag(FLAGS_payload), run.rate, duration, wall);
  return errors == 0 ? 0 : 1;
}
