#pragma once
// The one place where absl::Status becomes grpc::Status. absl's codes are google.rpc codes,
// the numbers gRPC and the CSI spec use, so the mapping keeps the code and the message.

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace strata::csi {

grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "NOT_FOUND", ... as the metrics and logs label codes (the codes are absl's).
std::string GrpcCodeName(grpc::StatusCode code);

}  // namespace strata::csi
