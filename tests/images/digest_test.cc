// Digests and ChainIDs, checked against sha256sum (an independent implementation).

#include "node/images/digest.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using imgtest::Sha256SumData;

TEST(DigestTest, OneShotAndStreamingMatchSha256sum) {
  std::string data;
  for (int i = 0; i < 300000; ++i) data.push_back(static_cast<char>(i * 7 + i / 13));
  const std::string expected = Sha256SumData(data);
  EXPECT_EQ(Sha256Digest(data), expected);

  Sha256 streaming;
  for (size_t offset = 0; offset < data.size(); offset += 4097) {
    streaming.update(data.substr(offset, 4097));
  }
  EXPECT_EQ(streaming.finish(), expected);
}

TEST(DigestTest, EmptyInput) {
  Sha256 hash;
  EXPECT_EQ(hash.finish(), Sha256SumData(""));
}

TEST(DigestTest, IsValidDigest) {
  const std::string hex(64, 'a');
  EXPECT_TRUE(IsValidDigest("sha256:" + hex));
  EXPECT_TRUE(IsValidDigest(Sha256Digest("x")));
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(64, 'A')));  // uppercase
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(63, 'a')));
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(65, 'a')));
  EXPECT_FALSE(IsValidDigest("sha512:" + hex));
  EXPECT_FALSE(IsValidDigest(hex));
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(63, 'a') + "g"));
  EXPECT_FALSE(IsValidDigest("sha256:../../" + std::string(58, 'a')));
  EXPECT_FALSE(IsValidDigest(""));
}

TEST(DigestTest, ChainIdFollowsTheOciSpec) {
  const std::string l0 = Sha256SumData("layer zero");
  const std::string l1 = Sha256SumData("layer one");
  const std::string l2 = Sha256SumData("layer two");
  // Computed with sha256sum over the spec's formula.
  const std::string c1 = Sha256SumData(l0 + " " + l1);
  const std::string c2 = Sha256SumData(c1 + " " + l2);

  EXPECT_EQ(ChainId("", l0), l0);
  EXPECT_EQ(ChainId(l0, l1), c1);
  EXPECT_EQ(ChainId(c1, l2), c2);
  EXPECT_EQ(ChainIds({l0, l1, l2}), (std::vector<std::string>{l0, c1, c2}));
  EXPECT_TRUE(ChainIds({}).empty());
  // Order matters.
  EXPECT_NE(ChainIds({l1, l0}).back(), c1);
}

}  // namespace
}  // namespace strata::images
