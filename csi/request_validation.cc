#include "csi/request_validation.h"

#include "absl/strings/str_cat.h"
#include "node/paths.h"

namespace strata::csi {
namespace {

constexpr char kEllipsis[] = "\xE2\x80\xA6";  // "…"

bool IsIdChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool IsAlnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// The id alphabet check shared by ids and names; `what` is "id" or "name" for the message.
absl::Status CheckIdText(const std::string& value, const std::string& field) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (value.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", value.size(),
                                                   " bytes long; at most ", kMaxIdBytes,
                                                   " are allowed: \"", Echo(value), "\""));
  }
  if (!IsAlnum(static_cast<unsigned char>(value[0]))) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must start with a letter or digit: \"", Echo(value), "\""));
  }
  for (unsigned char c : value) {
    if (!IsIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " may hold only letters, digits and . _ -: \"", Echo(value), "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string Echo(const std::string& value) {
  std::string out;
  for (unsigned char c : value) {
    std::string piece;
    if (c == '\\' || c == '"') {
      piece = {'\\', static_cast<char>(c)};
    } else if (c == '\n') {
      piece = "\\n";
    } else if (c == '\t') {
      piece = "\\t";
    } else if (c >= 0x20 && c < 0x7f) {
      piece = std::string(1, static_cast<char>(c));
    } else {
      char octal[5] = {'\\', static_cast<char>('0' + (c >> 6)),
                       static_cast<char>('0' + ((c >> 3) & 7)), static_cast<char>('0' + (c & 7)),
                       0};
      piece = octal;
    }
    if (out.size() + piece.size() > kMaxEchoBytes) {
      out += kEllipsis;
      return out;
    }
    out += piece;
  }
  return out;
}

std::string BoundMessage(const std::string& message) {
  if (message.size() <= kMaxMessageBytes) return message;
  size_t cut = kMaxMessageBytes - (sizeof(kEllipsis) - 1);
  // Back up over UTF-8 continuation bytes so no character is split.
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(message.substr(0, cut), kEllipsis);
}

absl::Status ValidateId(const std::string& value, const std::string& field) {
  return CheckIdText(value, field);
}

absl::Status ValidateOptionalId(const std::string& value, const std::string& field) {
  if (value.empty()) return absl::OkStatus();
  return CheckIdText(value, field);
}

absl::Status ValidateName(const std::string& value, const std::string& field) {
  return CheckIdText(value, field);
}

absl::Status ValidatePath(const std::string& value, const std::string& field) {
  absl::Status status = node::ValidateRequestPath(value, field);
  if (status.ok()) return status;
  // node:: quotes the whole path (up to PATH_MAX bytes); requests get the bounded form.
  return absl::Status(status.code(), BoundMessage(std::string(status.message())));
}

std::string CleanPath(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out += c;
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

absl::Status ValidateMap(const google::protobuf::Map<std::string, std::string>& map,
                         const std::string& field) {
  size_t total = 0;
  for (const auto& [key, value] : map) {
    total += key.size() + value.size();
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " key \"", Echo(key), "\" or its value contains a NUL byte"));
    }
  }
  if (total > kMaxMapBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " holds ", total,
                                                   " bytes of keys and values; at most ",
                                                   kMaxMapBytes, " are allowed"));
  }
  return absl::OkStatus();
}

bool IsSafeMountFlag(const std::string& flag) {
  for (const char* safe :
       {"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime"}) {
    if (flag == safe) return true;
  }
  return false;
}

absl::Status ValidateMountFlags(const google::protobuf::RepeatedPtrField<std::string>& flags) {
  for (const std::string& flag : flags) {
    if (flag.size() > kMaxIdBytes || flag.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("mount flag \"", Echo(flag), "\" is malformed"));
    }
    if (!IsSafeMountFlag(flag)) {
      return absl::FailedPreconditionError(
          absl::StrCat("mount flag \"", Echo(flag),
                       "\" is not supported; Strata accepts ro, rw, nosuid, nodev, noexec, "
                       "noatime, nodiratime, relatime"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRaw(FieldKind kind, const uint8_t* data, size_t size) {
  std::string value =
      data == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(data), size);
  switch (kind) {
    case FieldKind::kId:
      return ValidateId(value, "id");
    case FieldKind::kOptionalId:
      return ValidateOptionalId(value, "id");
    case FieldKind::kName:
      return ValidateName(value, "name");
    case FieldKind::kPath:
      return ValidatePath(value, "path");
    case FieldKind::kMountFlag: {
      google::protobuf::RepeatedPtrField<std::string> flags;
      *flags.Add() = value;
      return ValidateMountFlags(flags);
    }
  }
  return absl::InvalidArgumentError("unknown field kind");
}

}  // namespace strata::csi
