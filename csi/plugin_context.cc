#include "csi/plugin_context.h"

#include <chrono>

#include "absl/strings/str_format.h"
#include "common/log.h"
#include "csi/status_mapping.h"

namespace strata::csi {

grpc::Status PluginContext::Run(const char* method, const std::string& volume, bool needs_ready,
                                const std::function<absl::Status()>& body) {
  auto start = std::chrono::steady_clock::now();
  absl::Status status = gate.Enter(needs_ready);
  if (status.ok()) {
    status = body();
    gate.Exit();
  }
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  grpc::Status result = ToGrpcStatus(status);
  const std::string code = GrpcCodeName(result.error_code());
  if (metrics != nullptr) metrics->ObserveCsiCall(method, code, elapsed.count());
  std::string duration = absl::StrFormat("%.6fs", elapsed.count());
  if (status.ok()) {
    LogInfo("csi call",
            {{"method", method}, {"volume", volume}, {"duration", duration}, {"code", code}});
  } else {
    // Client mistakes are not the plugin's errors; keep error level for what an admin must fix.
    bool server_side = result.error_code() == grpc::StatusCode::INTERNAL ||
                       result.error_code() == grpc::StatusCode::UNKNOWN ||
                       result.error_code() == grpc::StatusCode::DATA_LOSS;
    auto log = server_side ? LogError : LogWarning;
    log("csi call failed",
        {{"method", method},
         {"volume", volume},
         {"duration", duration},
         {"code", code},
         {"error", std::string(status.message())}},
        SourceLocation::current());
  }
  return result;
}

}  // namespace strata::csi
