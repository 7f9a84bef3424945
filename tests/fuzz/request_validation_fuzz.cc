// libFuzzer target: request validation. Today that is node::ValidateRequestPath (node/paths.h);
// request-string validators added later belong here too, each with its own invariant check.
//
// The invariant is checked independently of the implementation: a path the validator accepts is
// absolute, not empty, at most PATH_MAX bytes, holds no NUL and no "." or ".." component.
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/str_split.h"
#include "node/paths.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path(reinterpret_cast<const char*>(data), size);
  if (!strata::node::ValidateRequestPath(path, "target_path").ok()) return 0;
  if (path.empty() || path[0] != '/' || path.size() > PATH_MAX ||
      path.find('\0') != std::string::npos) {
    abort();
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") abort();
  }
  return 0;
}
