#include "metrics/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "civetweb.h"
#include "prometheus/exposer.h"

namespace strata::metrics {
namespace {

std::string HostPort(const ListenAddress& address, int port) {
  return address.ipv6 ? absl::StrCat("[", address.host, "]:", port)
                      : absl::StrCat(address.host, ":", port);
}

// civetweb reports a failed bind only as "null context when constructing CivetServer", so bind
// the address once ourselves first to learn why. The probe socket is closed again before
// civetweb binds (with SO_REUSEADDR like civetweb's, so it leaves no TIME_WAIT in the way).
absl::Status ProbeBind(const ListenAddress& address, const std::string& shown) {
  sockaddr_storage storage = {};
  socklen_t length = 0;
  if (address.ipv6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(address.port));
    inet_pton(AF_INET6, address.host.c_str(), &in6->sin6_addr);
    length = sizeof(*in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(address.port));
    inet_pton(AF_INET, address.host.c_str(), &in4->sin_addr);
    length = sizeof(*in4);
  }
  int fd = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int error = errno;
    if (error == EAFNOSUPPORT) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot serve metrics on ", shown, ": this host has no IPv6"));
    }
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", shown, ": socket: ", std::strerror(error)));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (address.ipv6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&storage), length);
  int error = errno;
  close(fd);
  if (rc == 0) return absl::OkStatus();
  switch (error) {
    case EADDRINUSE:
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", shown, ": port ", address.port,
                       " is in use (another process listens on it); choose another "
                       "--metrics-address or stop that process"));
    case EADDRNOTAVAIL:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot serve metrics on ", shown, ": ", address.host,
                       " is not an address of this host (no interface has it)"));
    case EACCES:
      return absl::PermissionDeniedError(
          absl::StrCat("cannot serve metrics on ", shown, ": port ", address.port,
                       " is privileged (below 1024) and this process may not bind it"));
    default:
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", shown, ": bind: ", std::strerror(error)));
  }
}

}  // namespace

bool MetricsServerSupportsIpv6() {
  // Feature 8 is IPv6 (civetweb.h); Debian bookworm's libcivetweb1 1.15 is built without it.
  return mg_check_feature(8) != 0;
}

absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& address) {
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad metrics address \"", address, "\": ", why,
                     " (want HOST:PORT with a numeric IP address as HOST, e.g. 127.0.0.1:9810)"));
  };
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return bad("no port");
  std::string host = address.substr(0, colon);
  std::string port_text = address.substr(colon + 1);
  ListenAddress parsed;
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(port_text, &parsed.port) || parsed.port > 65535) {
    return bad("the port must be a number from 0 to 65535");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    parsed.ipv6 = true;
  } else if (host.find(':') != std::string::npos) {
    parsed.ipv6 = true;
  }
  if (host.empty()) return bad("no host (use 0.0.0.0 to mean every IPv4 address)");
  parsed.host = host;
  unsigned char buffer[sizeof(in6_addr)];
  if (inet_pton(parsed.ipv6 ? AF_INET6 : AF_INET, parsed.host.c_str(), buffer) != 1) {
    return bad(parsed.ipv6 ? "the host is not an IPv6 address"
                           : "the host is not a numeric IPv4 address (names are not resolved)");
  }
  return parsed;
}

MetricsServer::MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, std::string address,
                             int port)
    : exposer_(std::move(exposer)), address_(std::move(address)), port_(port) {}

MetricsServer::~MetricsServer() = default;

void MetricsServer::RegisterCollectable(const std::weak_ptr<prometheus::Collectable>& collectable) {
  exposer_->RegisterCollectable(collectable);
}

absl::Status ValidateMetricsServerOptions(const MetricsServerOptions& options) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress(options.address);
  if (!address.ok()) return address.status();
  if (options.num_threads < 1 || options.num_threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-threads must be 1..1024, not ", options.num_threads));
  }
  if (options.request_timeout_ms < 1 || options.request_timeout_ms > 600000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-request-timeout-ms must be 1..600000, not ", options.request_timeout_ms));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(
    const MetricsServerOptions& options) {
  if (absl::Status valid = ValidateMetricsServerOptions(options); !valid.ok()) return valid;
  absl::StatusOr<ListenAddress> address = ParseListenAddress(options.address);
  if (!address.ok()) return address.status();
  std::string shown = HostPort(*address, address->port);
  if (address->ipv6 && !MetricsServerSupportsIpv6()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot serve metrics on ", shown,
                     ": the civetweb library this strata-csi uses was built without IPv6; "
                     "give --metrics-address an IPv4 address"));
  }
  if (absl::Status probe = ProbeBind(*address, shown); !probe.ok()) return probe;

  std::vector<std::string> civetweb_options = {
      "listening_ports", shown, "num_threads", std::to_string(options.num_threads),
      // Bounds reading the request head (from the first byte read, however slowly it trickles)
      // and each write of the answer; civetweb's default is 30 s.
      "request_timeout_ms", std::to_string(options.request_timeout_ms),
      // Off is civetweb's default; spelled out because a kept-alive idle connection would hold
      // a worker for keep_alive_timeout_ms after every answer. Prometheus reconnects per scrape.
      "enable_keep_alive", "no"};
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(std::move(civetweb_options));
  } catch (const std::exception& error) {
    // The probe bound it a moment ago: another process took the port since, or civetweb
    // refused an option.
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", shown,
                                               ": civetweb did not start: ", error.what()));
  }
  std::vector<int> ports = exposer->GetListeningPorts();
  int port = ports.empty() ? address->port : ports.front();
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(std::move(exposer), HostPort(*address, port), port));
}

}  // namespace strata::metrics
