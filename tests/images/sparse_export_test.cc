// Layer export keeps holes: a 64 GiB sparse file becomes a GNU sparse 1.0 entry holding only the
// written bytes, the output stays deterministic, and both Strata's extraction and GNU tar give
// the file back with its holes. Runs without root.

#include <sys/stat.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "node/images/layer_export.h"
#include "node/images/layer_tar.h"
#include "tests/images/test_util.h"
#include "tests/sparse_test_util.h"

namespace strata::images {
namespace {

using sparsetest::kGiB;
using sparsetest::kMiB;

TEST(SparseExportTest, SixtyFourGiBFileExportsAndImportsWithItsHoles) {
  imgtest::TempDir dir;
  const std::string tree = dir.Sub("tree");
  imgtest::MakeDirs(tree);
  const auto writes = sparsetest::SixtyFourGiBWrites();
  sparsetest::MakeSparseFile(tree + "/big", 64 * kGiB, writes);
  sparsetest::MakeSparseFile(tree + "/truncated", 8 * kGiB, {});
  imgtest::WriteFile(tree + "/small", "dense");

  auto first = ExportTreeDiff("", tree, dir.Sub("a.tar"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_LT(first->size, sparsetest::WrittenBytes(writes) + kMiB)
      << "the tar holds the written data, not 64 GiB";
  EXPECT_GT(first->size, sparsetest::WrittenBytes(writes));
  auto second = ExportTreeDiff("", tree, dir.Sub("b.tar"));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->diff_id, second->diff_id) << "deterministic";
  EXPECT_EQ(imgtest::Sha256SumFile(dir.Sub("a.tar")), imgtest::Sha256SumFile(dir.Sub("b.tar")));

  // Strata's own reader.
  const std::string imported = dir.Sub("imported");
  imgtest::MakeDirs(imported);
  auto extracted =
      ExtractLayer(dir.Sub("a.tar"), imported, drivers::WhiteoutStyle::kApply, first->diff_id);
  ASSERT_TRUE(extracted.ok()) << extracted.status();
  sparsetest::ExpectSparseCopy(imported + "/big", 64 * kGiB, writes);
  EXPECT_EQ(sparsetest::Extents(imported + "/big"), sparsetest::Extents(tree + "/big"));
  EXPECT_EQ(sparsetest::Stat(imported + "/truncated").st_size, 8 * kGiB);
  EXPECT_EQ(sparsetest::Stat(imported + "/truncated").st_blocks, 0);
  EXPECT_EQ(imgtest::ReadFile(imported + "/small"), "dense");

  // GNU tar lists the real names and sizes and extracts the holes as holes.
  std::string listing = imgtest::RunCommand("tar -tvf " + dir.Sub("a.tar"));
  EXPECT_NE(listing.find("68719476736"), std::string::npos) << listing;
  EXPECT_NE(listing.find(" big"), std::string::npos) << listing;
  EXPECT_EQ(listing.find("GNUSparseFile"), std::string::npos) << listing;
  const std::string gnu = dir.Sub("gnu");
  imgtest::MakeDirs(gnu);
  imgtest::RunCommand("tar -xf " + dir.Sub("a.tar") + " -C " + gnu);
  sparsetest::ExpectSparseCopy(gnu + "/big", 64 * kGiB, writes);
  EXPECT_EQ(sparsetest::Stat(gnu + "/truncated").st_size, 8 * kGiB);
  EXPECT_LE(sparsetest::AllocatedBytes(gnu + "/truncated"), 64 * 1024);
}

TEST(SparseExportTest, FilesWithoutHolesStayOrdinaryEntries) {
  imgtest::TempDir dir;
  const std::string tree = dir.Sub("tree");
  imgtest::MakeDirs(tree);
  sparsetest::MakeSparseFile(tree + "/zeros", kMiB, {{0, std::string(kMiB, '\0')}});
  auto exported = ExportTreeDiff("", tree, dir.Sub("a.tar"));
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_GE(exported->size, kMiB) << "allocated zeros are data";
  std::string listing = imgtest::RunCommand("tar -tvf " + dir.Sub("a.tar"));
  EXPECT_NE(listing.find("1048576"), std::string::npos) << listing;
  const std::string imported = dir.Sub("imported");
  imgtest::MakeDirs(imported);
  ASSERT_TRUE(ExtractLayer(dir.Sub("a.tar"), imported, drivers::WhiteoutStyle::kApply, "").ok());
  EXPECT_GE(sparsetest::AllocatedBytes(imported + "/zeros"), kMiB);
}

}  // namespace
}  // namespace strata::images
