// libFuzzer target: request validation (csi/request_validation.h, every function) and the
// node's request-path helpers (node/paths.h).
//
// Input: one byte choosing what to validate, the rest is the value (for maps and mount-flag
// lists: fields separated by '\x1f' and key/value by '='). Every invariant is checked against
// the rules written in the header, not against the implementation: an accepted id or name is
// 1..kMaxIdBytes bytes of [A-Za-z0-9._-] starting with a letter or digit (so never "/", never
// "." or "..", and always one path component node::ChildPath accepts); an accepted path is
// absolute, < PATH_MAX, NUL-free, without "." or ".." components; every error message is at most
// kMaxMessageBytes; ValidateRaw agrees with the typed function for the same bytes.
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "csi/request_validation.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "node/paths.h"

namespace {

using strata::csi::FieldKind;

[[noreturn]] void Fail(const char* what, const std::string& value) {
  std::fprintf(stderr, "request_validation_fuzz: %s (value of %zu bytes)\n", what, value.size());
  std::abort();
}

void Check(bool ok, const char* what, const std::string& value) {
  if (!ok) Fail(what, value);
}

bool IdChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool Alnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// The header's id rule, written out independently.
bool IsValidIdText(const std::string& v) {
  if (v.empty() || v.size() > strata::csi::kMaxIdBytes) return false;
  if (!Alnum(static_cast<unsigned char>(v[0]))) return false;
  for (unsigned char c : v) {
    if (!IdChar(c)) return false;
  }
  return true;
}

bool IsValidPathText(const std::string& v) {
  if (v.empty() || v[0] != '/' || v.size() >= PATH_MAX) return false;
  if (v.find('\0') != std::string::npos) return false;
  for (absl::string_view part : absl::StrSplit(v, '/')) {
    if (part == "." || part == "..") return false;
  }
  return true;
}

// Well-formed UTF-8 (no overlong or surrogate checks needed: only the cut is at stake).
bool IsUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

void CheckError(const absl::Status& status, const std::string& value) {
  if (status.ok()) return;
  Check(status.message().size() <= strata::csi::kMaxMessageBytes, "error message over the bound",
        value);
}

void CheckSame(const absl::Status& a, const absl::Status& b, const std::string& value) {
  Check(a.code() == b.code() && a.message() == b.message(),
        "ValidateRaw differs from the typed validator", value);
}

void CheckId(const std::string& value, const uint8_t* data, size_t size) {
  const bool expected = IsValidIdText(value);
  absl::Status id = strata::csi::ValidateId(value, "volume_id");
  absl::Status name = strata::csi::ValidateName(value, "name");
  absl::Status optional = strata::csi::ValidateOptionalId(value, "starting_token");
  Check(id.ok() == expected, "ValidateId disagrees with the id rule", value);
  Check(name.ok() == expected, "ValidateName disagrees with the id rule", value);
  Check(optional.ok() == (expected || value.empty()), "ValidateOptionalId disagrees", value);
  for (const absl::Status& s : {id, name, optional}) {
    CheckError(s, value);
    Check(s.ok() || s.code() == absl::StatusCode::kInvalidArgument, "not InvalidArgument", value);
  }
  CheckSame(strata::csi::ValidateRaw(FieldKind::kId, data, size),
            strata::csi::ValidateId(value, "id"), value);
  CheckSame(strata::csi::ValidateRaw(FieldKind::kOptionalId, data, size),
            strata::csi::ValidateOptionalId(value, "id"), value);
  CheckSame(strata::csi::ValidateRaw(FieldKind::kName, data, size),
            strata::csi::ValidateName(value, "name"), value);
  if (id.ok()) {
    Check(value.find('/') == std::string::npos, "accepted id holds '/'", value);
    Check(value != "." && value != "..", "accepted id is a dot component", value);
    Check(value.find('\0') == std::string::npos, "accepted id holds NUL", value);
    // What the node does with an accepted ephemeral id: one component inside its folder.
    auto child = strata::node::ChildPath("/var/lib/strata/ephemeral", value);
    Check(child.ok(), "ChildPath refuses an accepted id", value);
    Check(*child == "/var/lib/strata/ephemeral/" + value, "ChildPath changed the id", value);
  }
}

void CheckPath(const std::string& value, const uint8_t* data, size_t size) {
  absl::Status path = strata::csi::ValidatePath(value, "target_path");
  Check(path.ok() == IsValidPathText(value), "ValidatePath disagrees with the path rule", value);
  Check(strata::node::ValidateRequestPath(value, "target_path").ok() == path.ok(),
        "ValidatePath and node::ValidateRequestPath disagree", value);
  CheckError(path, value);
  CheckSame(strata::csi::ValidateRaw(FieldKind::kPath, data, size),
            strata::csi::ValidatePath(value, "path"), value);

  // CleanPath: no doubled slash, no trailing slash (except "/"), idempotent, and only slashes
  // removed.
  const std::string clean = strata::csi::CleanPath(value);
  Check(clean.find("//") == std::string::npos, "CleanPath left //", value);
  Check(clean.size() <= 1 || clean.back() != '/', "CleanPath left a trailing /", value);
  Check(strata::csi::CleanPath(clean) == clean, "CleanPath is not idempotent", value);
  std::string a, b;
  for (char c : value)
    if (c != '/') a += c;
  for (char c : clean)
    if (c != '/') b += c;
  Check(a == b, "CleanPath changed more than slashes", value);
  Check(value.empty() || (value[0] == '/') == (!clean.empty() && clean[0] == '/'),
        "CleanPath changed absoluteness", value);
  if (path.ok()) Check(IsValidPathText(clean), "a valid path's CleanPath is not valid", value);

  auto child = strata::node::ChildPath("/d", value);
  const bool component = !value.empty() && value != "." && value != ".." &&
                         value.size() <= NAME_MAX && value.find('/') == std::string::npos &&
                         value.find('\0') == std::string::npos;
  Check(child.ok() == component, "ChildPath disagrees with the component rule", value);
}

void CheckEcho(const std::string& value) {
  const std::string echo = strata::csi::Echo(value);
  Check(echo.size() <= strata::csi::kMaxEchoBytes + 3, "Echo over its bound", value);
  const bool cut = echo.size() >= 3 && echo.compare(echo.size() - 3, 3, "\xE2\x80\xA6") == 0;
  const size_t body = cut ? echo.size() - 3 : echo.size();
  for (size_t i = 0; i < body; ++i) {
    unsigned char c = echo[i];
    Check(c >= 0x20 && c < 0x7f, "Echo kept an unprintable byte", value);
  }
  // Short printable values come back as they are.
  bool plain = value.size() <= strata::csi::kMaxEchoBytes;
  for (unsigned char c : value) plain = plain && c >= 0x20 && c < 0x7f && c != '\\' && c != '"';
  if (plain) Check(echo == value, "Echo changed a plain value", value);

  const std::string bounded = strata::csi::BoundMessage(value);
  Check(bounded.size() <= strata::csi::kMaxMessageBytes, "BoundMessage over its bound", value);
  if (value.size() <= strata::csi::kMaxMessageBytes) {
    Check(bounded == value, "BoundMessage changed a short message", value);
  } else {
    Check(bounded.size() >= 3 && bounded.compare(bounded.size() - 3, 3, "\xE2\x80\xA6") == 0,
          "BoundMessage cut without an ellipsis", value);
    Check(value.compare(0, bounded.size() - 3, bounded, 0, bounded.size() - 3) == 0,
          "BoundMessage is not a prefix", value);
    if (IsUtf8(value)) Check(IsUtf8(bounded), "BoundMessage split a UTF-8 character", value);
  }
}

void CheckMap(const std::string& value) {
  google::protobuf::Map<std::string, std::string> map;
  for (absl::string_view field : absl::StrSplit(value, '\x1f')) {
    std::vector<std::string> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
    map[kv[0]] = kv.size() > 1 ? kv[1] : "";
  }
  size_t total = 0;
  bool nul = false;
  for (const auto& [k, v] : map) {
    total += k.size() + v.size();
    nul = nul || k.find('\0') != std::string::npos || v.find('\0') != std::string::npos;
  }
  absl::Status status = strata::csi::ValidateMap(map, "parameters");
  Check(status.ok() == (!nul && total <= strata::csi::kMaxMapBytes),
        "ValidateMap disagrees with the map rule", value);
  CheckError(status, value);
}

void CheckMountFlags(const std::string& value, const uint8_t* data, size_t size) {
  static const char* const kSafe[] = {"ro",     "rw",      "nosuid",     "nodev",
                                      "noexec", "noatime", "nodiratime", "relatime"};
  google::protobuf::RepeatedPtrField<std::string> flags;
  bool all_safe = true;
  bool malformed = false;
  bool malformed_first = false;
  for (absl::string_view field : absl::StrSplit(value, '\x1f')) {
    std::string flag(field);
    bool safe = false;
    for (const char* s : kSafe) safe = safe || flag == s;
    Check(strata::csi::IsSafeMountFlag(flag) == safe, "IsSafeMountFlag disagrees", value);
    const bool bad = flag.size() > strata::csi::kMaxIdBytes || flag.find('\0') != std::string::npos;
    if (bad && all_safe && !malformed) malformed_first = true;
    malformed = malformed || bad;
    all_safe = all_safe && safe;
    *flags.Add() = flag;
  }
  absl::Status status = strata::csi::ValidateMountFlags(flags);
  Check(status.ok() == all_safe, "ValidateMountFlags disagrees with the flag list", value);
  if (!status.ok()) {
    // The first offending flag decides the code.
    Check(status.code() == (malformed_first ? absl::StatusCode::kInvalidArgument
                                            : absl::StatusCode::kFailedPrecondition),
          "ValidateMountFlags gave the wrong code", value);
  }
  CheckError(status, value);
  absl::Status raw = strata::csi::ValidateRaw(FieldKind::kMountFlag, data, size);
  google::protobuf::RepeatedPtrField<std::string> one;
  *one.Add() = value;
  CheckSame(raw, strata::csi::ValidateMountFlags(one), value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const uint8_t* rest = data + 1;
  const size_t rest_size = size - 1;
  const std::string value(reinterpret_cast<const char*>(rest), rest_size);
  CheckEcho(value);
  switch (selector % 4) {
    case 0:
      CheckId(value, rest, rest_size);
      break;
    case 1:
      CheckPath(value, rest, rest_size);
      break;
    case 2:
      CheckMap(value);
      break;
    case 3:
      CheckMountFlags(value, rest, rest_size);
      break;
  }
  // No input may crash ValidateRaw with an out-of-range kind either.
  CheckError(strata::csi::ValidateRaw(static_cast<FieldKind>(selector), rest, rest_size), value);
  return 0;
}
