// The one request validator: what ids, names, paths, maps and mount flags may hold, that every
// error quoting a request value stays short, and that the raw-bytes entry point agrees with the
// typed functions.

#include "csi/request_validation.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace strata::csi {
namespace {

TEST(RequestValidationTest, IdsFromStrataKubeletAndTheSidecarsAreAccepted) {
  for (const std::string& id :
       {"vol-0123456789abcdef",   // Strata's volumes
        "snap-0123456789abcdef",  // Strata's snapshots
        // kubelet's ephemeral inline volumes: "csi-" + sha256 hex
        "csi-5f1d6c0c5ad3f1e8b9ae1d35d2c7f0e2a4f3a0b8d7c6e5f4a3b2c1d0e9f8a7b6",
        "pvc-3c1d5f8e-2b6a-4c9d-8e7f-1a2b3c4d5e6f",       // external-provisioner
        "snapshot-3c1d5f8e-2b6a-4c9d-8e7f-1a2b3c4d5e6f",  // external-snapshotter
        "a", "Vol_1.2"}) {
    EXPECT_TRUE(ValidateId(id, "volume_id").ok()) << id;
    EXPECT_TRUE(ValidateName(id, "name").ok()) << id;
  }
  EXPECT_TRUE(ValidateId(std::string(128, 'a'), "volume_id").ok()) << "the CSI limit itself";
}

TEST(RequestValidationTest, HostileIdsAreInvalidArgument) {
  for (const std::string& id :
       {std::string(), std::string(".."), std::string("."), std::string("../../../../tmp/x"),
        std::string("../overlay/layers/abc"), std::string("a/b"), std::string("-rf"),
        std::string(".hidden"), std::string("a b"), std::string("a\nb"), std::string("a\0b", 3),
        std::string("caf\xc3\xa9"), std::string("bad\xff"), std::string(129, 'a')}) {
    absl::Status status = ValidateId(id, "volume_id");
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << "\"" << id << "\": " << status;
    EXPECT_NE(status.message().find("volume_id"), std::string::npos) << status;
  }
  EXPECT_TRUE(ValidateOptionalId("", "snapshot_id").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateOptionalId("..", "snapshot_id")));
}

TEST(RequestValidationTest, MegabyteValuesGiveShortMessages) {
  const std::string huge(1 << 20, 'x');
  for (absl::Status status :
       {ValidateId(huge, "volume_id"), ValidateName(huge, "name"),
        ValidatePath("/" + huge, "target_path"), ValidatePath(huge, "target_path")}) {
    EXPECT_TRUE(absl::IsInvalidArgument(status));
    EXPECT_LE(status.message().size(), kMaxMessageBytes) << status.message().substr(0, 200);
  }
  // The size is stated, the value only quoted in part.
  absl::Status status = ValidateId(huge, "volume_id");
  EXPECT_NE(status.message().find("1048576 bytes"), std::string::npos) << status;
  EXPECT_LE(status.message().size(), 300u);
}

TEST(RequestValidationTest, EchoEscapesAndCaps) {
  EXPECT_EQ(Echo("plain-id"), "plain-id");
  EXPECT_EQ(Echo(std::string("a\0b\n\"\\\xff", 7)), "a\\000b\\n\\\"\\\\\\377");
  std::string echoed = Echo(std::string(1000, 'y'));
  EXPECT_LE(echoed.size(), kMaxEchoBytes + 3);
  EXPECT_EQ(echoed.substr(echoed.size() - 3), "\xE2\x80\xA6");
  // Every byte value of a long hostile value: still bounded and pure ASCII but the ellipsis.
  std::string all;
  for (int i = 0; i < 256 * 4; ++i) all += static_cast<char>(i & 0xff);
  echoed = Echo(all);
  EXPECT_LE(echoed.size(), kMaxEchoBytes + 3);
  for (size_t i = 0; i + 3 < echoed.size(); ++i)
    EXPECT_LT(static_cast<unsigned char>(echoed[i]), 0x80) << i;
}

TEST(RequestValidationTest, BoundMessageCutsAtACharacterBoundary) {
  EXPECT_EQ(BoundMessage("short"), "short");
  std::string message;
  while (message.size() < 5000) message += "\xC3\xA9";  // "é", two bytes each
  std::string bounded = BoundMessage(message);
  EXPECT_LE(bounded.size(), kMaxMessageBytes);
  ASSERT_GE(bounded.size(), 3u);
  EXPECT_EQ(bounded.substr(bounded.size() - 3), "\xE2\x80\xA6");
  std::string body = bounded.substr(0, bounded.size() - 3);
  EXPECT_EQ(body.size() % 2, 0u) << "a character was split";
}

TEST(RequestValidationTest, PathsMustBeAbsoluteAndClean) {
  EXPECT_TRUE(ValidatePath("/var/lib/kubelet/pods/p/volumes/x/mount", "target_path").ok());
  EXPECT_TRUE(ValidatePath("/" + std::string(4000, 'p'), "target_path").ok())
      << "the spec wants paths longer than 128 bytes";
  for (const std::string& path :
       {std::string(), std::string("relative"), std::string("/a/../b"), std::string("/a/./b"),
        std::string("/.."), std::string("/a\0b", 4), "/" + std::string(5000, 'p')}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidatePath(path, "target_path"))) << path.size();
  }
  EXPECT_EQ(CleanPath("/a//b/"), "/a/b");
  EXPECT_EQ(CleanPath("/"), "/");
}

TEST(RequestValidationTest, MapsAreBoundedAt4KiB) {
  google::protobuf::Map<std::string, std::string> map;
  map["image"] = "demo:v1";
  map["csi.storage.k8s.io/ephemeral"] = "true";
  EXPECT_TRUE(ValidateMap(map, "volume_context").ok());
  map["big"] = std::string(4096, 'v');
  absl::Status status = ValidateMap(map, "volume_context");
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  map.erase("big");
  map["nul"] = std::string("a\0b", 3);
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateMap(map, "volume_context")));
}

TEST(RequestValidationTest, KubernetesMountOptionsAreAccepted) {
  google::protobuf::RepeatedPtrField<std::string> flags;
  for (const char* flag :
       {"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime"})
    *flags.Add() = flag;
  EXPECT_TRUE(ValidateMountFlags(flags).ok());
  for (const std::string bad : {"suid", "dev", "exec", "bind", "remount", "context=x", "uid=0",
                                "lowerdir=/etc", "nosuid,dev"}) {
    google::protobuf::RepeatedPtrField<std::string> one;
    *one.Add() = bad;
    EXPECT_TRUE(absl::IsFailedPrecondition(ValidateMountFlags(one))) << bad;
  }
  google::protobuf::RepeatedPtrField<std::string> huge;
  *huge.Add() = std::string(1 << 20, 'o');
  absl::Status status = ValidateMountFlags(huge);
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_LE(status.message().size(), kMaxMessageBytes);
}

TEST(RequestValidationTest, RawBytesAgreeWithTheTypedChecksAndNeverCrash) {
  std::mt19937 random(20261203);
  std::vector<std::string> samples = {"vol-1", "..", "/a/b", "/a/../b", "nosuid", "", "a/b"};
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(random() % 300, '\0');
    for (char& c : bytes) c = static_cast<char>(random() & 0xff);
    if (i % 3 == 0)
      for (char& c : bytes) c = "ab/.-_\0x"[random() % 8];
    samples.push_back(bytes);
  }
  for (const std::string& value : samples) {
    auto raw = [&](FieldKind kind) {
      return ValidateRaw(kind, reinterpret_cast<const uint8_t*>(value.data()), value.size());
    };
    EXPECT_EQ(raw(FieldKind::kId).code(), ValidateId(value, "id").code());
    EXPECT_EQ(raw(FieldKind::kOptionalId).code(), ValidateOptionalId(value, "id").code());
    EXPECT_EQ(raw(FieldKind::kName).code(), ValidateName(value, "name").code());
    EXPECT_EQ(raw(FieldKind::kPath).code(), ValidatePath(value, "path").code());
    for (FieldKind kind : {FieldKind::kId, FieldKind::kPath, FieldKind::kMountFlag})
      EXPECT_LE(raw(kind).message().size(), kMaxMessageBytes);
    // Whatever an id check accepts is a single, harmless path component.
    if (raw(FieldKind::kId).ok()) {
      EXPECT_EQ(value.find('/'), std::string::npos);
      EXPECT_NE(value, "..");
      EXPECT_NE(value, ".");
    }
  }
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateRaw(FieldKind::kId, nullptr, 0)));
}

}  // namespace
}  // namespace strata::csi
