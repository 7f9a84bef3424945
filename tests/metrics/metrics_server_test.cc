// metrics::StartMetricsServer against real TCP clients on 127.0.0.1 (ports picked by the kernel):
// clients that stall do not keep /metrics from answering, stalled connections are closed, and a
// bind that cannot work fails with a message naming the address and the reason.

#include "metrics/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace strata::metrics {
namespace {

using Clock = std::chrono::steady_clock;

// A connected TCP socket to 127.0.0.1:port, closed on destruction.
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool Send(std::string_view data) {
    return send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }

  // Everything the server sends until it closes the connection, or an error at the deadline.
  absl::StatusOr<std::string> ReadUntilClosed(Clock::time_point deadline) {
    std::string data;
    char buffer[16384];
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return absl::DeadlineExceededError("server kept the connection open");
      pollfd p = {fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return data;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) return data;
        return absl::InternalError(absl::StrCat("recv: ", std::strerror(errno)));
      }
      data.append(buffer, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
};

struct Answer {
  std::string status_line;
  std::string body;
};

absl::StatusOr<Answer> GetMetrics(int port, Clock::time_point deadline) {
  Client client(port);
  if (!client.connected()) return absl::UnavailableError("connect failed");
  if (!client.Send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")) {
    return absl::UnavailableError("send failed");
  }
  absl::StatusOr<std::string> raw = client.ReadUntilClosed(deadline);
  if (!raw.ok()) return raw.status();
  Answer answer;
  size_t line_end = raw->find("\r\n");
  size_t head_end = raw->find("\r\n\r\n");
  if (line_end == std::string::npos || head_end == std::string::npos) {
    return absl::DataLossError(absl::StrCat("not an HTTP answer: ", *raw));
  }
  answer.status_line = raw->substr(0, line_end);
  answer.body = raw->substr(head_end + 4);
  return answer;
}

// A registry with one strata_ family, as main's Metrics would have.
std::shared_ptr<prometheus::Registry> TestRegistry() {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("strata_test_scrapes_total")
      .Help("A counter the test looks for.")
      .Register(*registry)
      .Add({})
      .Increment(3);
  return registry;
}

std::unique_ptr<MetricsServer> StartOnLoopback(MetricsServerOptions options,
                                               std::shared_ptr<prometheus::Registry> registry) {
  options.address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = StartMetricsServer(options);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  (*server)->RegisterCollectable(registry);
  return std::move(*server);
}

// Opens `count` connections that each send `prefix` (maybe nothing) and then stall, scrapes,
// and checks the answer and that the server closed every stalled connection.
void ScrapeWithStalledClients(int count, std::string_view prefix) {
  MetricsServerOptions options;  // the defaults strata-csi's flags have
  ASSERT_GT(count, options.num_threads) << "the test must outnumber the worker threads";
  auto registry = TestRegistry();
  std::unique_ptr<MetricsServer> server = StartOnLoopback(options, registry);
  ASSERT_NE(server, nullptr);

  std::vector<std::unique_ptr<Client>> stalled;
  for (int i = 0; i < count; ++i) {
    auto client = std::make_unique<Client>(server->port());
    ASSERT_TRUE(client->connected()) << "connection " << i;
    if (!prefix.empty()) {
      ASSERT_TRUE(client->Send(prefix)) << "connection " << i;
    }
    stalled.push_back(std::move(client));
  }

  // Before the fix (2 threads, civetweb's 30 s timeout) this waited count/2 * 30 s.
  Clock::time_point start = Clock::now();
  absl::StatusOr<Answer> answer = GetMetrics(server->port(), start + std::chrono::seconds(10));
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(answer.ok()) << answer.status() << " after " << seconds << " s";
  EXPECT_EQ(answer->status_line, "HTTP/1.1 200 OK");
  EXPECT_TRUE(absl::StrContains(answer->body, "strata_test_scrapes_total 3")) << answer->body;
  ::testing::Test::RecordProperty("scrape_seconds", absl::StrCat(seconds));
  std::cout << "scrape answered after " << seconds << " s with " << count
            << " stalled connections (" << options.num_threads << " threads, "
            << options.request_timeout_ms << " ms timeout)\n";

  // Connections are served in accept order, so every stalled one was given up on before the
  // scrape was read: each must be closed by now, or soon after (the last few share a round).
  Clock::time_point closed_by =
      Clock::now() + std::chrono::milliseconds(2 * options.request_timeout_ms + 2000);
  for (size_t i = 0; i < stalled.size(); ++i) {
    absl::StatusOr<std::string> rest = stalled[i]->ReadUntilClosed(closed_by);
    EXPECT_TRUE(rest.ok()) << "stalled connection " << i << ": " << rest.status();
    // Whatever civetweb says on closing (nothing, or a 4xx), it is never the metrics.
    if (rest.ok()) {
      EXPECT_FALSE(absl::StrContains(*rest, "strata_test")) << *rest;
    }
  }
}

TEST(MetricsServerTest, AnswersScrape) {
  auto registry = TestRegistry();
  std::unique_ptr<MetricsServer> server = StartOnLoopback({}, registry);
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_EQ(server->address(), absl::StrCat("127.0.0.1:", server->port()));
  absl::StatusOr<Answer> answer =
      GetMetrics(server->port(), Clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status_line, "HTTP/1.1 200 OK");
  EXPECT_TRUE(absl::StrContains(answer->body, "# TYPE strata_test_scrapes_total counter"))
      << answer->body;
}

TEST(MetricsServerTest, PartialRequestsDoNotStarveScrape) {
  ScrapeWithStalledClients(100, "GET /metr");
}

TEST(MetricsServerTest, SilentConnectionsDoNotStarveScrape) { ScrapeWithStalledClients(100, ""); }

TEST(MetricsServerTest, AddressInUseIsAClearError) {
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::string taken = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));

  MetricsServerOptions options;
  options.address = taken;
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = StartMetricsServer(options);
  close(holder);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable) << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "cannot serve metrics on " + taken))
      << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "is in use")) << server.status();
}

TEST(MetricsServerTest, AddressNotOfThisHostIsAClearError) {
  MetricsServerOptions options;
  options.address = "192.0.2.1:9810";  // TEST-NET-1: no interface here has it
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = StartMetricsServer(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "192.0.2.1:9810")) << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "not an address of this host"))
      << server.status();
}

TEST(MetricsServerTest, RejectsBadOptions) {
  for (const char* address : {"localhost:9810", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                              "127.0.0.1:-1", ":9810", "[::1]", "1.2.3:9810", "[zz::1]:9810"}) {
    MetricsServerOptions options;
    options.address = address;
    absl::StatusOr<std::unique_ptr<MetricsServer>> server = StartMetricsServer(options);
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_TRUE(absl::StrContains(server.status().message(), address)) << server.status();
  }
  MetricsServerOptions threads;
  threads.address = "127.0.0.1:0";
  threads.num_threads = 0;
  EXPECT_EQ(StartMetricsServer(threads).status().code(), absl::StatusCode::kInvalidArgument);
  MetricsServerOptions timeout;
  timeout.address = "127.0.0.1:0";
  timeout.request_timeout_ms = 0;
  EXPECT_EQ(StartMetricsServer(timeout).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MetricsServerTest, ParsesIpv6WithAndWithoutBrackets) {
  absl::StatusOr<ListenAddress> bare = ParseListenAddress("fd00::5:9810");  // $(POD_IP):9810
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->host, "fd00::5");
  EXPECT_TRUE(bare->ipv6);
  EXPECT_EQ(bare->port, 9810);
  absl::StatusOr<ListenAddress> bracketed = ParseListenAddress("[::1]:0");
  ASSERT_TRUE(bracketed.ok()) << bracketed.status();
  EXPECT_EQ(bracketed->host, "::1");
  EXPECT_TRUE(bracketed->ipv6);
  EXPECT_EQ(bracketed->port, 0);
  absl::StatusOr<ListenAddress> v4 = ParseListenAddress("10.1.2.3:9810");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->host, "10.1.2.3");
  EXPECT_FALSE(v4->ipv6);
}

TEST(MetricsServerTest, Ipv6ServesOrSaysWhyNot) {
  MetricsServerOptions options;
  options.address = "::1:0";
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = StartMetricsServer(options);
  if (!MetricsServerSupportsIpv6()) {
    // Debian bookworm's civetweb: a clear refusal instead of civetweb's "null context".
    ASSERT_FALSE(server.ok());
    EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition) << server.status();
    EXPECT_TRUE(absl::StrContains(server.status().message(), "[::1]:0")) << server.status();
    EXPECT_TRUE(absl::StrContains(server.status().message(), "without IPv6")) << server.status();
    return;
  }
  int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 loopback = {};
  loopback.sin6_family = AF_INET6;
  loopback.sin6_addr = in6addr_loopback;
  bool have_ipv6 =
      probe >= 0 && bind(probe, reinterpret_cast<sockaddr*>(&loopback), sizeof(loopback)) == 0;
  if (probe >= 0) close(probe);
  if (!have_ipv6) GTEST_SKIP() << "no IPv6 loopback here";
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->address(), absl::StrCat("[::1]:", (*server)->port()));
}

}  // namespace
}  // namespace strata::metrics
