#include "tests/images/test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace strata::images::imgtest {

TempDir::TempDir() {
  char pattern[] = "/tmp/strata-images-test-XXXXXX";
  if (mkdtemp(pattern) == nullptr) std::abort();
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  // Make read-only directories deletable even without root.
  std::filesystem::remove_all(path_, ignored);
}

TarEntry File(const std::string& name, const std::string& data, mode_t mode) {
  TarEntry e;
  e.name = name;
  e.type = 'f';
  e.data = data;
  e.mode = mode;
  return e;
}

TarEntry Dir(const std::string& name, mode_t mode) {
  TarEntry e;
  e.name = name;
  e.type = 'd';
  e.mode = mode;
  return e;
}

TarEntry Symlink(const std::string& name, const std::string& target) {
  TarEntry e;
  e.name = name;
  e.type = 'l';
  e.link = target;
  e.mode = 0777;
  return e;
}

TarEntry Hardlink(const std::string& name, const std::string& target) {
  TarEntry e;
  e.name = name;
  e.type = 'h';
  e.link = target;
  return e;
}

namespace {
la_ssize_t AppendToString(archive*, void* client, const void* buffer, size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), length);
  return static_cast<la_ssize_t>(length);
}
}  // namespace

std::string BuildTar(const std::vector<TarEntry>& entries) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax(a);
  archive_write_set_bytes_in_last_block(a, 1);
  EXPECT_EQ(archive_write_open(a, &out, nullptr, AppendToString, nullptr), ARCHIVE_OK);
  for (const TarEntry& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_copy_pathname(e, t.name.c_str());
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, t.mtime, t.mtime_nsec);
    mode_t type = AE_IFREG;
    switch (t.type) {
      case 'd':
        type = AE_IFDIR;
        break;
      case 'l':
        type = AE_IFLNK;
        archive_entry_copy_symlink(e, t.link.c_str());
        break;
      case 'h':
        archive_entry_copy_hardlink(e, t.link.c_str());
        break;
      case 'c':
        type = AE_IFCHR;
        break;
      case 'b':
        type = AE_IFBLK;
        break;
      case 'p':
        type = AE_IFIFO;
        break;
      default:
        break;
    }
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, t.mode & 07777);
    if (t.type == 'c' || t.type == 'b')
      archive_entry_set_rdev(e, makedev(t.dev_major, t.dev_minor));
    archive_entry_set_size(e, t.type == 'f' ? static_cast<la_int64_t>(t.data.size()) : 0);
    for (const auto& [key, value] : t.xattrs) {
      archive_entry_xattr_add_entry(e, key.c_str(), value.data(), value.size());
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
    if (t.type == 'f' && !t.data.empty()) {
      EXPECT_EQ(archive_write_data(a, t.data.data(), t.data.size()),
                static_cast<la_ssize_t>(t.data.size()));
    }
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void MakeDirs(const std::string& path) { std::filesystem::create_directories(path); }

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen " << command;
    return out;
  }
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  int rc = pclose(pipe);
  EXPECT_EQ(rc, 0) << command << "\n" << out;
  return out;
}

std::string Sha256SumFile(const std::string& path) {
  std::string out = RunCommand("sha256sum '" + path + "'");
  return "sha256:" + out.substr(0, 64);
}

std::string Sha256SumData(const std::string& data) {
  TempDir dir;
  WriteFile(dir.Sub("data"), data);
  return Sha256SumFile(dir.Sub("data"));
}

std::string Compress(const std::string& data, const std::string& tool) {
  TempDir dir;
  WriteFile(dir.Sub("in"), data);
  RunCommand(tool + " -c '" + dir.Sub("in") + "' > '" + dir.Sub("out") + "'");
  return ReadFile(dir.Sub("out"));
}

namespace {
void Walk(const std::string& root, const std::string& rel, bool with_owner,
          std::map<std::string, std::string>* out) {
  const std::string dir_path = rel.empty() ? root : root + "/" + rel;
  DIR* dir = opendir(dir_path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (dirent* ent = readdir(dir)) {
    std::string name = ent->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  for (const std::string& name : names) {
    const std::string child = rel.empty() ? name : rel + "/" + name;
    const std::string path = root + "/" + child;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    std::string owner =
        with_owner ? " " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) : "";
    std::string desc;
    if (S_ISDIR(st.st_mode)) {
      desc = std::string("d ") + mode + owner;
    } else if (S_ISREG(st.st_mode)) {
      desc = std::string("f ") + mode + owner + " " + ReadFile(path);
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlink(path.c_str(), target, sizeof(target));
      desc = "l -> " + std::string(target, n > 0 ? static_cast<size_t>(n) : 0) + owner;
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      desc = std::string(S_ISCHR(st.st_mode) ? "c " : "b ") + mode + owner + " " +
             std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
    } else if (S_ISFIFO(st.st_mode)) {
      desc = std::string("p ") + mode + owner;
    } else {
      desc = "?";
    }
    (*out)[child] = desc;
    if (S_ISDIR(st.st_mode)) Walk(root, child, with_owner, out);
  }
}
}  // namespace

std::map<std::string, std::string> Snapshot(const std::string& root, bool with_owner) {
  std::map<std::string, std::string> out;
  Walk(root, "", with_owner, &out);
  return out;
}

}  // namespace strata::images::imgtest
