#include "identity/util/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace meshguard::util {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, CounterWithLabels) {
  MetricsRegistry registry;
  CounterFamily* calls = registry.AddCounter("meshguard_calls_total",
                                             "Calls by direction and code.",
                                             {"direction", "code"});
  calls->WithLabels({"inbound", "OK"})->Inc();
  calls->WithLabels({"inbound", "OK"})->Inc(2);
  calls->WithLabels({"outbound", "UNAVAILABLE"})->Inc();
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP meshguard_calls_total Calls by direction and code.\n"
            "# TYPE meshguard_calls_total counter\n"
            "meshguard_calls_total{direction=\"inbound\",code=\"OK\"} 3\n"
            "meshguard_calls_total{direction=\"outbound\",code="
            "\"UNAVAILABLE\"} 1\n");
}

TEST(MetricsTest, ChildPointersAreStable) {
  MetricsRegistry registry;
  CounterFamily* f = registry.AddCounter("c_total", "h", {"k"});
  Counter* a = f->WithLabels({"a"});
  for (int i = 0; i < 100; ++i) f->WithLabels({std::to_string(i)});
  EXPECT_EQ(f->WithLabels({"a"}), a);
  // Registering again returns the same family.
  EXPECT_EQ(registry.AddCounter("c_total", "h", {"k"}), f);
}

TEST(MetricsTest, UnlabelledFamiliesRenderFromTheStart) {
  MetricsRegistry registry;
  registry.AddCounter("b_total", "B.");
  GaugeFamily* g = registry.AddGauge("a_connections", "Open connections.");
  g->WithLabels({})->Set(3);
  g->WithLabels({})->Inc();
  g->WithLabels({})->Dec();
  g->WithLabels({})->Add(0.5);
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP a_connections Open connections.\n"
            "# TYPE a_connections gauge\n"
            "a_connections 3.5\n"
            "# HELP b_total B.\n"
            "# TYPE b_total counter\n"
            "b_total 0\n");
}

TEST(MetricsTest, GaugeCallbackEvaluatedAtScrape) {
  MetricsRegistry registry;
  GaugeFamily* expiry =
      registry.AddGauge("meshguard_cert_expiry_seconds",
                        "Seconds until the leaf expires.", {"spiffe_id"});
  double remaining = 3600;
  Gauge* g = expiry->WithLabels({"spiffe://cluster.local/ns/a/sa/b"});
  g->SetCallback([&remaining] { return remaining; });
  g->Set(1);  // Ignored while the callback is set.
  std::string text = registry.RenderPrometheusText();
  EXPECT_THAT(text, HasSubstr("meshguard_cert_expiry_seconds{spiffe_id="
                              "\"spiffe://cluster.local/ns/a/sa/b\"} 3600\n"));
  remaining = 1799.5;
  EXPECT_THAT(registry.RenderPrometheusText(), HasSubstr("} 1799.5\n"));
  g->SetCallback(nullptr);
  EXPECT_THAT(registry.RenderPrometheusText(), HasSubstr("} 1\n"));
}

TEST(MetricsTest, HistogramWithLabels) {
  MetricsRegistry registry;
  HistogramFamily* h = registry.AddHistogram("meshguard_sign_seconds",
                                             "Time to sign a certificate.",
                                             {"method"}, {0.005, 0.1, 1});
  Histogram* k8s = h->WithLabels({"k8s"});
  k8s->Observe(0.001);
  k8s->Observe(0.005);  // On a bound: counted in it (le).
  k8s->Observe(0.05);
  k8s->Observe(2);
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP meshguard_sign_seconds Time to sign a certificate.\n"
            "# TYPE meshguard_sign_seconds histogram\n"
            "meshguard_sign_seconds_bucket{method=\"k8s\",le=\"0.005\"} 2\n"
            "meshguard_sign_seconds_bucket{method=\"k8s\",le=\"0.1\"} 3\n"
            "meshguard_sign_seconds_bucket{method=\"k8s\",le=\"1\"} 3\n"
            "meshguard_sign_seconds_bucket{method=\"k8s\",le=\"+Inf\"} 4\n"
            "meshguard_sign_seconds_sum{method=\"k8s\"} 2.056\n"
            "meshguard_sign_seconds_count{method=\"k8s\"} 4\n");
}

TEST(MetricsTest, HistogramWithoutLabelsAndDefaultBuckets) {
  MetricsRegistry registry;
  HistogramFamily* h = registry.AddHistogram("lat_seconds", "Latency.");
  h->WithLabels({})->Observe(0.3);
  std::string text = registry.RenderPrometheusText();
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"0.25\"} 0\n"
                              "lat_seconds_bucket{le=\"0.5\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"+Inf\"} 1\n"
                              "lat_seconds_sum 0.3\n"
                              "lat_seconds_count 1\n"));
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  CounterFamily* f = registry.AddCounter(
      "esc_total", "Back\\slash and\nnewline \"q\".", {"v"});
  f->WithLabels({"a\\b \"quoted\"\nline2"})->Inc();
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP esc_total Back\\\\slash and\\nnewline \"q\".\n"
            "# TYPE esc_total counter\n"
            "esc_total{v=\"a\\\\b \\\"quoted\\\"\\nline2\"} 1\n");
}

TEST(MetricsTest, OverflowIntoOther) {
  MetricsRegistry registry;
  FamilyOptions options;
  options.max_children = 2;
  CounterFamily* f = registry.AddCounter("denied_total", "Denials.",
                                         {"principal", "method"}, options);
  f->WithLabels({"spiffe://td/a", "/x.Y/Z"})->Inc();
  f->WithLabels({"spiffe://td/b", "/x.Y/Z"})->Inc();
  Counter* other = f->WithLabels({"spiffe://td/c", "/x.Y/Z"});
  other->Inc();
  EXPECT_EQ(f->WithLabels({"spiffe://td/d", "/x.Y/W"}), other);
  f->WithLabels({"spiffe://td/d", "/x.Y/W"})->Inc(5);
  // Existing children keep working past the limit.
  f->WithLabels({"spiffe://td/a", "/x.Y/Z"})->Inc();
  // A wrong number of label values is a bug; it lands in "other" too.
  EXPECT_EQ(f->WithLabels({"just-one"}), other);
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP denied_total Denials.\n"
            "# TYPE denied_total counter\n"
            "denied_total{principal=\"other\",method=\"other\"} 6\n"
            "denied_total{principal=\"spiffe://td/a\",method=\"/x.Y/Z\"} 2\n"
            "denied_total{principal=\"spiffe://td/b\",method=\"/x.Y/Z\"} 1\n");
}

TEST(MetricsTest, ConcurrentIncrementsSumExactly) {
  MetricsRegistry registry;
  CounterFamily* f = registry.AddCounter("n_total", "N.", {"t"});
  HistogramFamily* h = registry.AddHistogram("v", "V.", {}, {1, 2});
  GaugeFamily* g = registry.AddGauge("g", "G.");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads look the child up every time (the mutex path),
      // half keep the pointer (the lock-free path).
      Counter* mine = f->WithLabels({"shared"});
      for (int i = 0; i < kPerThread; ++i) {
        if (t % 2 == 0) {
          f->WithLabels({"shared"})->Inc();
        } else {
          mine->Inc();
        }
        h->WithLabels({})->Observe(i % 3);
        g->WithLabels({})->Add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(f->WithLabels({"shared"})->Value(),
            uint64_t{kThreads} * kPerThread);
  std::vector<uint64_t> counts = h->WithLabels({})->CumulativeCounts();
  EXPECT_EQ(counts.back(), uint64_t{kThreads} * kPerThread);
  EXPECT_DOUBLE_EQ(g->WithLabels({})->Value(), double{kThreads} * kPerThread);
  // Observations 0,1,2 cycle: sum is exact in a double.
  uint64_t twos = 0;
  for (int i = 0; i < kPerThread; ++i) twos += (i % 3 == 2);
  uint64_t ones = 0;
  for (int i = 0; i < kPerThread; ++i) ones += (i % 3 == 1);
  EXPECT_EQ(h->WithLabels({})->Sum(), double(kThreads * (ones + 2 * twos)));
  EXPECT_EQ(counts[0], kThreads * (kPerThread - twos));  // le=1: 0s and 1s.
}

TEST(MetricsDeathTest, InvalidNamesAbort) {
  MetricsRegistry registry;
  EXPECT_DEATH(registry.AddCounter("bad-name", "h"), "invalid metric name");
  EXPECT_DEATH(registry.AddCounter("ok_total", "h", {"__reserved"}),
               "invalid label name");
  EXPECT_DEATH(registry.AddHistogram("h", "h", {"le"}), "invalid label name");
  EXPECT_DEATH(registry.AddHistogram("h2", "h", {}, {1, 1}),
               "strictly increasing");
  registry.AddCounter("dup", "h");
  EXPECT_DEATH(registry.AddGauge("dup", "h"), "registered twice");
}

}  // namespace
}  // namespace meshguard::util
