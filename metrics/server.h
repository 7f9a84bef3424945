#pragma once
// The HTTP server Prometheus scrapes (/metrics): prometheus-cpp's Exposer, which is civetweb,
// started with options that keep idle and slow clients from starving scrapes.
//
// civetweb gives every connection a worker thread from accept until its request is answered or
// times out, in accept order. A client that opens a connection and never finishes its request
// holds a worker for request_timeout_ms, so with C such connections a scrape waits about
// ceil(C / num_threads) * request_timeout_ms. The defaults answer within ~2 s with 100 stalled
// connections (docs/metrics.md has the figures); no thread count helps against a client that
// keeps opening connections, which is why the chart binds the pod's own IP (docs/security.md).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace strata::metrics {

struct MetricsServerOptions {
  // "HOST:PORT". HOST is a numeric IPv4 or IPv6 address; an IPv6 address may be bracketed
  // ("[::1]:9810") or not ("fd00::5:9810", as Kubernetes' $(POD_IP) gives it): the port is what
  // follows the last colon. Port 0 picks a free port (MetricsServer::port() says which). IPv6
  // works only when civetweb was built with it (MetricsServerSupportsIpv6).
  std::string address;
  // civetweb worker threads (1..1024): how many connections are served at once.
  int num_threads = 64;
  // How long a connection may take to send its whole request head, and to take each write of
  // the answer (1..600000). Prometheus sends its request at once, so this bounds only clients
  // that stall.
  int request_timeout_ms = 2000;
};

// A running metrics server; destroying it stops it (that takes ~1 s: civetweb's threads poll).
class MetricsServer {
 public:
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // /metrics answers with the families of every registered collectable, in registration order.
  void RegisterCollectable(const std::weak_ptr<prometheus::Collectable>& collectable);

  // Where it listens: "HOST:PORT" with the port actually bound.
  const std::string& address() const { return address_; }
  int port() const { return port_; }

 private:
  friend absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(
      const MetricsServerOptions& options);
  MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, std::string address, int port);

  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
  int port_;
};

// Whether `options` are well-formed (the address parses, the numbers are in range), without
// binding anything: a caller can refuse a bad flag yet survive a port that is taken.
absl::Status ValidateMetricsServerOptions(const MetricsServerOptions& options);

// Starts serving /metrics. An address that is malformed, not this host's, or already in use is
// an error that names the address and the reason.
absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(
    const MetricsServerOptions& options);

// Whether the civetweb library linked in can listen on IPv6 (Debian bookworm's cannot: an IPv6
// address is then a FailedPrecondition error from StartMetricsServer).
bool MetricsServerSupportsIpv6();

// "HOST:PORT" split and checked as MetricsServerOptions::address describes.
struct ListenAddress {
  std::string host;  // without brackets
  bool ipv6 = false;
  int port = 0;
};
absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& address);

}  // namespace strata::metrics
