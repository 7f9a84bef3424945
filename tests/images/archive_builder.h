#pragma once
// Builds docker-save archives for the hostile-archive tests: any number of images, layers given
// as blob bytes (tar or compressed tar), configs built or given verbatim.

#include <map>
#include <string>
#include <vector>

namespace strata::images::imgtest {

struct SaveImage {
  std::vector<std::string> layer_blobs;  // base first: tar, tar+gzip or tar+zstd bytes
  // DiffIDs for the config, one per blob; empty: the blobs' own sha256 (uncompressed blobs).
  std::vector<std::string> diff_ids;
  std::vector<std::string> tags;  // RepoTags
  std::string config;             // verbatim config; empty: MinimalConfig(diff_ids)
};

// A linux/amd64 config naming `diff_ids`.
std::string MinimalConfig(const std::vector<std::string>& diff_ids);

// "[[[...]]]" nested `depth` deep.
std::string NestedArrays(int depth);

// Files of a docker-save archive (relative path -> bytes): manifest.json, "<hex>.json" configs
// and "<hex>.tar" layer blobs (named by their sha256, as docker 25+ writes them).
std::map<std::string, std::string> DockerSaveFiles(const std::vector<SaveImage>& images);

// The name DockerSaveFiles gives a layer blob / a config.
std::string BlobName(const std::string& blob);

// Writes `files` under the existing directory `root`.
void WriteTree(const std::string& root, const std::map<std::string, std::string>& files);
// An uncompressed tar of `files` (regular files only).
std::string TarOfFiles(const std::map<std::string, std::string>& files);

}  // namespace strata::images::imgtest
