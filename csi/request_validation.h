#pragma once
// Request validation for every CSI call: the one place that decides what an id, a name, a path,
// a map or a mount flag from a request may hold, and how a request value may appear in an error
// message. Pure functions: no I/O, no state (the path checks never touch the filesystem; the
// volume manager checks containment when it builds on-disk paths).
//
// The rules (docs/security.md, "What a request may contain"):
//   ids and names  1..128 bytes (the CSI spec's general string limit) of [A-Za-z0-9._-], the
//                  first an ASCII letter or digit. Covers what Strata makes ("vol-<16 hex>",
//                  "snap-<16 hex>"), kubelet's ephemeral ids ("csi-<64 hex>"), and the
//                  external-provisioner's and -snapshotter's names ("pvc-<uuid>",
//                  "snapshot-<uuid>"); rules out "/", "..", NUL, control bytes and non-ASCII.
//   paths          absolute, < PATH_MAX bytes, no NUL, no "." or ".." components
//                  (node::ValidateRequestPath; the spec lets paths exceed 128 bytes).
//   maps           parameters, volume_context, secrets: at most 4 KiB of keys and values in
//                  all (the spec's map limit).
//   mount flags    ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace strata::csi {

inline constexpr size_t kMaxIdBytes = 128;        // CSI "Size Limits": string
inline constexpr size_t kMaxMapBytes = 4096;      // CSI "Size Limits": map<string, string>
inline constexpr size_t kMaxEchoBytes = 128;      // of a request value quoted in an error
inline constexpr size_t kMaxMessageBytes = 1024;  // of any error message sent to a client

// `value` as it may appear in an error message or a log line: printable ASCII kept, every other
// byte (and '\\', '"') as a C escape (\n, \t, \ooo octal), cut to kMaxEchoBytes with "…"
// appended when longer. Never longer than kMaxEchoBytes + 3 bytes.
std::string Echo(const std::string& value);

// `message` cut to kMaxMessageBytes (at a UTF-8 character boundary, "…" appended). The backstop
// at the gRPC boundary: a default client refuses trailers over 8 KiB, so an error that quotes a
// large value would reach it as "metadata size exceeds limit" instead of its real code.
std::string BoundMessage(const std::string& message);

// A required CSI id (volume_id, snapshot_id, source ids): the id alphabet, 1..128 bytes.
// `field` names the request field in the error. InvalidArgument otherwise.
absl::Status ValidateId(const std::string& value, const std::string& field);
// The same for an id that may be empty (list filters, starting tokens).
absl::Status ValidateOptionalId(const std::string& value, const std::string& field);
// A CreateVolume / CreateSnapshot name: the same alphabet and limit as ids.
absl::Status ValidateName(const std::string& value, const std::string& field);
// A required request path (node::ValidateRequestPath), its error bounded.
absl::Status ValidatePath(const std::string& value, const std::string& field);
// `path` with repeated and trailing slashes removed ("/a//b/" -> "/a/b"), to compare two request
// paths that name the same place.
std::string CleanPath(const std::string& path);
// A map<string, string> field: at most kMaxMapBytes of keys and values together, no NUL.
absl::Status ValidateMap(const google::protobuf::Map<std::string, std::string>& map,
                         const std::string& field);
// Mount flags from a VolumeCapability (Kubernetes `mountOptions`). An unknown flag is
// FailedPrecondition (the capability is well-formed but not supported), a malformed one (NUL,
// over 128 bytes) InvalidArgument.
bool IsSafeMountFlag(const std::string& flag);
absl::Status ValidateMountFlags(const google::protobuf::RepeatedPtrField<std::string>& flags);

// What a raw request field is, for ValidateRaw.
enum class FieldKind { kId, kOptionalId, kName, kPath, kMountFlag };

// The fuzzing entry point: validates `size` raw bytes at `data` as a field of `kind`, exactly as
// the functions above do (same result for the same bytes). Never crashes, whatever the bytes;
// an error's message is at most kMaxMessageBytes.
absl::Status ValidateRaw(FieldKind kind, const uint8_t* data, size_t size);

}  // namespace strata::csi
