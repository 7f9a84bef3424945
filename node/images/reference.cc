#include "node/images/reference.h"

#include <regex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace strata::images {
namespace {

// The grammar of distribution/reference (reference.go / regexp.go).
const std::regex& PathComponent() {
  static const std::regex re("[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*");
  return re;
}
const std::regex& Domain() {
  static const std::regex re(
      "(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
      "(?:\\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\\[[a-fA-F0-9:]+\\])"
      "(?::[0-9]+)?");
  return re;
}
const std::regex& Tag() {
  static const std::regex re("[\\w][\\w.-]{0,127}");
  return re;
}
const std::regex& Digest() {
  static const std::regex re(
      "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}");
  return re;
}

absl::Status Invalid(std::string_view ref, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid image reference \"", std::string(ref), "\": ", std::string(why)));
}

}  // namespace

absl::StatusOr<std::string> NormalizeImageRef(std::string_view ref) {
  if (ref.empty()) return Invalid(ref, "empty");
  std::string rest(ref);
  std::string digest;
  if (size_t at = rest.find('@'); at != std::string::npos) {
    digest = rest.substr(at + 1);
    rest.resize(at);
    if (!std::regex_match(digest, Digest())) return Invalid(ref, "bad digest after '@'");
    if (absl::StartsWith(digest, "sha256:") && digest.size() != 7 + 64)
      return Invalid(ref, "a sha256 digest has 64 hex digits");
  }
  std::string tag;
  // A ':' after the last '/' starts the tag (one before it is a registry port).
  size_t slash = rest.rfind('/');
  if (size_t colon = rest.rfind(':');
      colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    tag = rest.substr(colon + 1);
    rest.resize(colon);
    if (!std::regex_match(tag, Tag()))
      return Invalid(ref, "bad tag (letters, digits, '_', '.', '-'; at most 128)");
  }
  std::string domain;
  std::string path = rest;
  if (size_t first = rest.find('/'); first != std::string::npos) {
    std::string head = rest.substr(0, first);
    if (absl::StrContains(head, '.') || absl::StrContains(head, ':') || head == "localhost" ||
        absl::AsciiStrToLower(head) != head) {
      domain = head;
      path = rest.substr(first + 1);
    }
  }
  if (domain.empty() || domain == "index.docker.io") domain = "docker.io";
  if (!std::regex_match(domain, Domain())) return Invalid(ref, "bad registry host");
  if (domain == "docker.io" && !absl::StrContains(path, '/')) path = "library/" + path;
  if (absl::AsciiStrToLower(path) != path) return Invalid(ref, "repository name must be lowercase");
  for (size_t start = 0;;) {
    size_t end = path.find('/', start);
    std::string component =
        path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!std::regex_match(component, PathComponent()))
      return Invalid(ref, absl::StrCat("bad repository path component \"", component, "\""));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  std::string name = absl::StrCat(domain, "/", path);
  if (name.size() > 255) return Invalid(ref, "repository name longer than 255 characters");
  if (tag.empty() && digest.empty()) tag = "latest";
  return absl::StrCat(name, tag.empty() ? "" : ":", tag, digest.empty() ? "" : "@", digest);
}

std::string FamiliarImageRef(std::string_view normalized) {
  std::string s(normalized);
  if (s.rfind("docker.io/", 0) != 0) return s;
  s = s.substr(10);
  // library/ goes only for a one-component name: docker.io/library/a/b stays library/a/b.
  if (s.rfind("library/", 0) == 0 && s.find('/', 8) == std::string::npos) return s.substr(8);
  return s;
}

}  // namespace strata::images
