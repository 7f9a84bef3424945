#include "node/images/reference.h"

#include <gtest/gtest.h>

#include <string>

namespace strata::images {
namespace {

const std::string kDigest =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Case {
  std::string in;
  std::string want;  // empty: refused
  std::string familiar;
};

TEST(NormalizeImageRef, DockerRules) {
  const Case cases[] = {
      {"busybox", "docker.io/library/busybox:latest", "busybox:latest"},
      {"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"},
      {"library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"},
      {"docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"},
      {"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
      {"bitnami/redis:7", "docker.io/bitnami/redis:7", "bitnami/redis:7"},
      {"example.com/x", "example.com/x:latest", "example.com/x:latest"},
      {"example.com/team/x:v1", "example.com/team/x:v1", "example.com/team/x:v1"},
      {"localhost/x", "localhost/x:latest", "localhost/x:latest"},
      {"localhost:5000/x:2", "localhost:5000/x:2", "localhost:5000/x:2"},
      {"[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"},
      {"busybox@" + kDigest, "docker.io/library/busybox@" + kDigest, "busybox@" + kDigest},
      {"busybox:1.36@" + kDigest, "docker.io/library/busybox:1.36@" + kDigest,
       "busybox:1.36@" + kDigest},
      {"a_b-c__e/f.g--h", "docker.io/a_b-c__e/f.g--h:latest", "a_b-c__e/f.g--h:latest"},
      {"docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"},
      {"Example.COM/x", "Example.COM/x:latest", "Example.COM/x:latest"},
      // Refused.
      {"", "", ""},
      {"BusyBox", "", ""},
      {"example.com/Team/x", "", ""},
      {"busybox:", "", ""},
      {"busybox:-bad", "", ""},
      {"busybox:" + std::string(129, 'a'), "", ""},
      {"busybox@sha256:abc", "", ""},
      {"busybox@" + kDigest.substr(0, 70) + "g", "", ""},
      {"a//b", "", ""},
      {"/busybox", "", ""},
      {"busybox/", "", ""},
      {"-busybox", "", ""},
      {"a..b", "", ""},
      {"a_b.c/x", "", ""},  // a dot makes it a registry host, and hosts have no '_'
      {"example.com:port/x", "", ""},
      {"x/" + std::string(260, 'a'), "", ""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> got = NormalizeImageRef(c.in);
    if (c.want.empty()) {
      ASSERT_FALSE(got.ok()) << "'" << c.in << "' accepted as " << *got;
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.in;
      EXPECT_NE(got.status().message().find("invalid image reference"), std::string::npos);
      continue;
    }
    ASSERT_TRUE(got.ok()) << "'" << c.in << "': " << got.status();
    EXPECT_EQ(*got, c.want) << c.in;
    EXPECT_EQ(FamiliarImageRef(*got), c.familiar) << c.in;
    // Normalising is idempotent, so a stored full name looks itself up.
    absl::StatusOr<std::string> again = NormalizeImageRef(*got);
    ASSERT_TRUE(again.ok()) << *got;
    EXPECT_EQ(*again, *got);
  }
}

TEST(NormalizeImageRef, UppercaseMessageSaysLowercase) {
  absl::StatusOr<std::string> got = NormalizeImageRef("BusyBox:1.36");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("must be lowercase"), std::string::npos) << got.status();
}

}  // namespace
}  // namespace strata::images
