// Overlay-private xattrs in image tars (issue 9, case 9), on a real overlay mount: a tar entry
// carrying trusted.overlay.redirect=/secret must not make its directory show another layer's
// /secret. Only the whiteout translation may write overlay xattrs. Needs root; skips without.

#include <sys/mount.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "node/images/layer_tar.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using namespace imgtest;  // NOLINT: test helpers

// Mounts lowers (top first) read-only at `target`, lists `rel` in the merged tree, unmounts.
std::vector<std::string> ListMerged(const std::string& lowers, const std::string& target,
                                    const std::string& rel) {
  std::vector<std::string> names;
  const std::string options = "lowerdir=" + lowers;
  if (mount("overlay", target.c_str(), "overlay", MS_RDONLY, options.c_str()) != 0) {
    ADD_FAILURE() << "mount overlay " << options << ": " << strerror(errno);
    return names;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(target + "/" + rel, ec))
    names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(umount2(target.c_str(), 0), 0) << strerror(errno);
  return names;
}

TEST(OverlayXattrRootTest, RedirectFromATarIsDroppedAndCannotSpliceAnotherLayer) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  TempDir tmp;
  const std::string base = tmp.Sub("base");
  MakeDirs(base + "/secret");
  WriteFile(base + "/secret/key", "secret content");
  MakeDirs(tmp.Sub("merged"));

  // Control: the same directory with the redirect set by hand shows /secret's content, so this
  // kernel follows lower redirects and the check below means something.
  const std::string control = tmp.Sub("control");
  MakeDirs(control + "/d");
  ASSERT_EQ(setxattr((control + "/d").c_str(), "trusted.overlay.redirect", "/secret", 7, 0), 0);
  const bool follows =
      ListMerged(control + ":" + base, tmp.Sub("merged"), "d") == std::vector<std::string>{"key"};

  TarEntry dir = Dir("d");
  dir.xattrs = {{"trusted.overlay.redirect", "/secret"}, {"trusted.keep", "1"}};
  TarEntry fake_opaque = Dir("o");
  fake_opaque.xattrs = {{"trusted.overlay.opaque", "y"}};
  WriteFile(tmp.Sub("hostile.tar"),
            BuildTar({dir, fake_opaque, Dir("w"), File("w/.wh..wh..opq", "")}));
  const std::string layer = tmp.Sub("layer");
  MakeDirs(layer);
  auto result = ExtractLayer(tmp.Sub("hostile.tar"), layer, WhiteoutStyle::kOverlay, "");
  ASSERT_TRUE(result.ok()) << result.status();

  char value[64];
  EXPECT_LT(lgetxattr((layer + "/d").c_str(), "trusted.overlay.redirect", value, sizeof(value)), 0);
  EXPECT_EQ(lgetxattr((layer + "/d").c_str(), "trusted.keep", value, sizeof(value)), 1);
  EXPECT_LT(lgetxattr((layer + "/o").c_str(), "trusted.overlay.opaque", value, sizeof(value)), 0);
  // The whiteout translation still writes its own overlay xattr.
  ASSERT_EQ(lgetxattr((layer + "/w").c_str(), "trusted.overlay.opaque", value, sizeof(value)), 1);
  EXPECT_EQ(value[0], 'y');

  if (!follows) GTEST_SKIP() << "this kernel does not follow lower redirects";
  EXPECT_TRUE(ListMerged(layer + ":" + base, tmp.Sub("merged"), "d").empty());
}

}  // namespace
}  // namespace strata::images
