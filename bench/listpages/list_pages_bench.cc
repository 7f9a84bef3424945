// bench_list_pages: what does paging ListVolumes cost against one unpaged listing? For 1,000
// volumes in a real SQLite store it times, interleaved in one run:
//   unpaged:      one read of every row (Metadata::ListVolumes);
//   keyset pages: 10 pages of 100 (Metadata::ListVolumesFrom, each page O(page));
//   full scans:   10 pages of 100 the way ListVolumes paged before (every page read every row
//                 and searched for its token),
// and prints the medians and the ratios to the unpaged read. No root needed.
//
//   bench_list_pages [--volumes N] [--iterations N]

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "node/metadata.h"

namespace strata {
namespace {

using Clock = std::chrono::steady_clock;

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

int Run(int volumes, int iterations) {
  char pattern[] = "/tmp/strata-bench-list-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return 1;
  const std::string dir = pattern;
  auto metadata = node::Metadata::Open(dir + "/strata.db", 0);
  if (!metadata.ok()) {
    std::fprintf(stderr, "%s\n", metadata.status().ToString().c_str());
    return 1;
  }
  absl::Status filled = (*metadata)->InTransaction([&]() -> absl::Status {
    for (int i = 0; i < volumes; ++i) {
      node::VolumeRecord volume;
      volume.id = absl::StrCat("vol-", absl::Hex(0x10000000 + i * 7919));
      volume.name = absl::StrCat("pvc-", i);
      volume.request_fingerprint = std::string(200, 'f');
      volume.state = i % 3 ? node::kVolumeReady : node::kVolumeStaged;
      volume.active_id = absl::StrCat(i);
      absl::Status put = (*metadata)->PutVolume(volume);
      if (!put.ok()) return put;
    }
    return absl::OkStatus();
  });
  if (!filled.ok()) return 1;
  const int page = std::max(1, volumes / 10);
  const std::vector<std::string> visible = {node::kVolumeReady, node::kVolumeStaged};
  std::vector<double> unpaged, keyset, scans;
  for (int i = 0; i < iterations; ++i) {
    auto start = Clock::now();
    size_t seen_all = (*metadata)->ListVolumes()->size();
    auto t1 = Clock::now();
    size_t seen_keyset = 0;
    std::string from;
    while (true) {
      std::vector<node::VolumeRecord> rows = *(*metadata)->ListVolumesFrom(from, visible, page + 1);
      size_t take = std::min<size_t>(rows.size(), page);
      seen_keyset += take;
      if (rows.size() <= static_cast<size_t>(page)) break;
      from = rows[page].id;
    }
    auto t2 = Clock::now();
    size_t seen_scan = 0;
    std::string token;
    while (true) {
      std::vector<node::VolumeRecord> all = *(*metadata)->ListVolumes();
      auto first = std::find_if(all.begin(), all.end(),
                                [&](const node::VolumeRecord& v) { return v.id >= token; });
      auto it = first;
      for (int n = 0; it != all.end() && n < page; ++it, ++n) ++seen_scan;
      if (it == all.end()) break;
      token = it->id;
    }
    auto t3 = Clock::now();
    if (seen_all != seen_keyset || seen_all != seen_scan)
      std::fprintf(stderr, "disagreement: %zu %zu %zu\n", seen_all, seen_keyset, seen_scan);
    unpaged.push_back(Millis(t1 - start));
    keyset.push_back(Millis(t2 - t1));
    scans.push_back(Millis(t3 - t2));
  }
  double u = Median(unpaged), k = Median(keyset), s = Median(scans);
  std::printf("%d volumes, pages of %d, median of %d runs\n", volumes, page, iterations);
  std::printf("  unpaged listing      %8.2f ms\n", u);
  std::printf("  keyset pages (now)   %8.2f ms  %.2fx unpaged\n", k, k / u);
  std::printf("  full-scan pages      %8.2f ms  %.2fx unpaged\n", s, s / u);
  metadata->reset();
  std::string command = "rm -rf " + dir;
  return system(command.c_str()) == 0 ? 0 : 1;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  int volumes = 1000, iterations = 21;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--volumes") == 0) volumes = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--iterations") == 0) iterations = std::atoi(argv[i + 1]);
  }
  return strata::Run(volumes, iterations);
}
