#include "csi/status_mapping.h"

#include <string>

#include "csi/request_validation.h"

namespace strata::csi {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // Bounded: an error quoting a large request value must still reach the client as its code.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      BoundMessage(std::string(status.message())));
}

std::string GrpcCodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace strata::csi
