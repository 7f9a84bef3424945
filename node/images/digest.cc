#include "node/images/digest.h"

#include <cstdlib>

namespace strata::images {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  // Only allocation can fail here; there is nothing sensible to do without a hash.
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) std::abort();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* data, size_t size) {
  if (size > 0) EVP_DigestUpdate(ctx_, data, size);
}

std::string Sha256::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx_, md, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  out.reserve(7 + 2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

std::string Sha256Digest(const std::string& data) {
  Sha256 hash;
  hash.update(data);
  return hash.finish();
}

bool IsValidDigest(const std::string& digest) {
  static constexpr char kPrefix[] = "sha256:";
  if (digest.size() != 7 + 64 || digest.compare(0, 7, kPrefix) != 0) return false;
  for (size_t i = 7; i < digest.size(); ++i) {
    char c = digest[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string ChainId(const std::string& parent_chain_id, const std::string& diff_id) {
  if (parent_chain_id.empty()) return diff_id;
  return Sha256Digest(parent_chain_id + " " + diff_id);
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  out.reserve(diff_ids.size());
  std::string parent;
  for (const std::string& diff_id : diff_ids) {
    parent = ChainId(parent, diff_id);
    out.push_back(parent);
  }
  return out;
}

}  // namespace strata::images
