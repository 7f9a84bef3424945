#pragma once
// Small file and mount-table helpers the end-to-end tests share.

#include <string>
#include <vector>

namespace strata::e2e {

std::string Slurp(const std::string& path);
void Spit(const std::string& path, const std::string& content);
// lstat succeeds (a dangling symlink exists).
bool Exists(const std::string& path);
// Names in a folder (without . and ..), sorted; empty when it does not exist.
std::vector<std::string> Entries(const std::string& dir);
// Mount points at `prefix` or below it (whole path components), from the kernel's table, in
// mount order.
std::vector<std::string> MountsUnder(const std::string& prefix);
// Detaches every mount at or below `prefix`, the last mounted first (test teardown).
void UnmountAllUnder(const std::string& prefix);

}  // namespace strata::e2e
